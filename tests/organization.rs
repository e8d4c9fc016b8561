//! End-to-end tests of organization mode: a seeded organization in the emulator, swept by the
//! real binary with the management account's credentials.

#![allow(clippy::unwrap_used)]

mod common;

use aws_credential_types::Credentials;
use aws_sdk_organizations::types::OrganizationFeatureSet;
use common::{ACCOUNT, Emulator, Home, PROFILE, Spec};
use serde_json::{Value, json};

/// An organization: the management account plus members in OUs, each with instances.
struct Org {
    production: String,
    payments: String,
    prod_web: Member,
    payments_app: Member,
    excluded: Member,
    closed: Member,
    denied: Member,
    sandbox: Member,
    /// An optional instance of the management account, in us-west-2.
    management_instance: String,
}

/// A member account with one optional instance in us-east-1 (and maybe more).
struct Member {
    id: String,
    credentials: Credentials,
    instance: String,
}

impl Member {
    fn tokens(&self, emulator: &Emulator) -> String {
        emulator.options_as(&self.credentials, "us-east-1", &self.instance).tokens
    }
}

fn organizations(emulator: &Emulator) -> aws_sdk_organizations::Client {
    aws_sdk_organizations::Client::new(&emulator.sdk_config())
}

fn create_ou(emulator: &Emulator, parent: &str, name: &str) -> String {
    let output = emulator
        .block_on(
            organizations(emulator)
                .create_organizational_unit()
                .parent_id(parent)
                .name(name)
                .send(),
        )
        .unwrap();
    output.organizational_unit().unwrap().id().unwrap().to_owned()
}

fn create_member(emulator: &Emulator, name: &str, root: &str, ou: Option<&str>) -> Member {
    let orgs = organizations(emulator);
    let created = emulator
        .block_on(
            orgs.create_account().account_name(name).email(format!("{name}@example.com")).send(),
        )
        .unwrap();
    let id = created.create_account_status().unwrap().account_id().unwrap().to_owned();
    if let Some(ou) = ou {
        emulator
            .block_on(
                orgs.move_account()
                    .account_id(&id)
                    .source_parent_id(root)
                    .destination_parent_id(ou)
                    .send(),
            )
            .unwrap();
    }
    let credentials = emulator.credentials_for(&id);
    let instance =
        emulator.launch_as(&credentials, "us-east-1", Spec::new("app", "running", "optional"));
    Member { id, credentials, instance }
}

fn seed(emulator: &Emulator) -> Org {
    let orgs = organizations(emulator);
    emulator
        .block_on(orgs.create_organization().feature_set(OrganizationFeatureSet::All).send())
        .unwrap();
    let roots = emulator.block_on(orgs.list_roots().send()).unwrap();
    let root = roots.roots()[0].id().unwrap().to_owned();
    let production = create_ou(emulator, &root, "Production");
    let payments = create_ou(emulator, &production, "Payments");
    let sandbox_ou = create_ou(emulator, &root, "Sandbox");

    let prod_web = create_member(emulator, "prod-web", &root, Some(&production));
    emulator.launch_as(&prod_web.credentials, "eu-west-1", Spec::new("eu", "stopped", "optional"));
    let payments_app = create_member(emulator, "payments", &root, Some(&payments));
    let excluded = create_member(emulator, "excluded", &root, None);
    let closed = create_member(emulator, "closed", &root, None);
    emulator.block_on(orgs.close_account().account_id(&closed.id).send()).unwrap();
    let denied = create_member(emulator, "denied", &root, None);
    let sandbox = create_member(emulator, "sandbox", &root, Some(&sandbox_ou));
    let management_instance =
        emulator.launch("us-west-2", Spec::new("mgmt", "running", "optional"));
    Org {
        production,
        payments,
        prod_web,
        payments_app,
        excluded,
        closed,
        denied,
        sandbox,
        management_instance,
    }
}

fn deny_assume_role(emulator: &Emulator, account: &str, role: &str) {
    emulator.fault(json!({
        "service": "sts", "action": "AssumeRole",
        "params": {"RoleArn": format!("arn:aws:iam::{account}:role/{role}")},
        "status": 403, "code": "AccessDenied",
        "message": "User is not authorized to perform: sts:AssumeRole"
    }));
}

fn setup() -> (Emulator, Home, Org) {
    let emulator = Emulator::start();
    let home = Home::new(&emulator);
    let org = seed(&emulator);
    emulator.control("DELETE", "requests", None);
    (emulator, home, org)
}

fn account_ids(report: &Value) -> Vec<String> {
    report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The scanned account `account` of a scan report.
fn scanned<'a>(report: &'a Value, account: &str) -> &'a Value {
    let accounts = report["accounts"].as_array().unwrap();
    accounts.iter().find(|a| a["account_id"] == account).unwrap()
}

fn skipped<'a>(report: &'a Value, account: &str) -> &'a Value {
    report["skipped_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["account_id"] == account)
        .unwrap_or(&Value::Null)
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[test]
fn an_organization_sweep_enforces_every_included_reachable_account_and_no_other() {
    let (emulator, home, org) = setup();
    deny_assume_role(&emulator, &org.denied.id, "OrganizationAccountAccessRole");
    deny_assume_role(&emulator, &org.sandbox.id, "OrganizationAccountAccessRole");
    let config = home.config_file(&format!(
        "[accounts]\nexclude = [\"{}\"]\n\n[[account]]\nid = \"{}\"\nrole_name = \"SecurityAuditRemediation\"\n",
        org.excluded.id, org.sandbox.id
    ));
    let journal = home.journal();
    let run = home.run(&[
        "--profile",
        PROFILE,
        "--config",
        &config,
        "--yes",
        "--output",
        "json",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    run.expect_code(4);

    for member in [&org.prod_web, &org.payments_app, &org.sandbox] {
        assert_eq!(member.tokens(&emulator), "required", "account {}", member.id);
    }
    assert_eq!(emulator.options("us-west-2", &org.management_instance).tokens, "required");
    for member in [&org.excluded, &org.closed, &org.denied] {
        assert_eq!(member.tokens(&emulator), "optional", "account {} must be untouched", member.id);
    }

    let documents = run.json();
    let report = &documents[0];
    assert_eq!(report["mode"]["mode"], "organization");
    let swept = sorted(vec![
        ACCOUNT.into(),
        org.prod_web.id.clone(),
        org.payments_app.id.clone(),
        org.sandbox.id.clone(),
    ]);
    assert_eq!(account_ids(report), swept, "accounts appear sorted by id");
    let totals = &report["totals"];
    assert_eq!(totals["accounts_scanned"], 4);
    assert_eq!(totals["accounts_skipped"], 3);
    assert_eq!(totals["to_change"], 5, "prod-web has two instances to change");
    assert_eq!(totals["instances"], 5);
    assert_eq!(totals["errors"], 1, "only the unreachable account is an error");

    assert_eq!(skipped(report, &org.excluded.id)["kind"], "excluded");
    let closed = skipped(report, &org.closed.id);
    assert_eq!(closed["kind"], "not_active");
    assert!(closed["reason"].as_str().unwrap().contains("SUSPENDED"));
    let denied = skipped(report, &org.denied.id);
    assert_eq!(denied["kind"], "unreachable");
    assert_eq!(denied["error"]["code"], "AccessDenied");
    assert!(
        denied["hint"].as_str().unwrap().contains(&format!(
            "arn:aws:iam::{}:role/OrganizationAccountAccessRole",
            org.denied.id
        ))
    );

    let sandbox = scanned(report, &org.sandbox.id);
    assert_eq!(
        sandbox["access"]["role_arn"],
        format!("arn:aws:iam::{}:role/SecurityAuditRemediation", org.sandbox.id)
    );
    let management = scanned(report, ACCOUNT);
    assert_eq!(management["access"]["type"], "caller_credentials");

    let result = &documents[1];
    assert_eq!(result["succeeded"], 5);
    assert_eq!(result["failed"], 0);
    let outcomes = result["accounts"].as_array().unwrap();
    let succeeded: Vec<(&str, u64)> = outcomes
        .iter()
        .map(|a| (a["account_id"].as_str().unwrap(), a["totals"]["succeeded"].as_u64().unwrap()))
        .collect();
    let mut expected = vec![
        (ACCOUNT, 1),
        (org.prod_web.id.as_str(), 2),
        (org.payments_app.id.as_str(), 1),
        (org.sandbox.id.as_str(), 1),
    ];
    expected.sort();
    assert_eq!(succeeded, expected, "the final report groups by account, sorted");
    let prod_web = outcomes.iter().find(|a| a["account_id"] == org.prod_web.id.as_str()).unwrap();
    let regions: Vec<(&str, u64)> = prod_web["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["region"].as_str().unwrap(), r["succeeded"].as_u64().unwrap()))
        .collect();
    assert_eq!(regions, [("eu-west-1", 1), ("us-east-1", 1)]);
    let records = home.journal_records();
    for member in [&org.prod_web, &org.payments_app, &org.sandbox] {
        let lines = common::result_for(&records, &member.instance);
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0]["account_id"],
            member.id.as_str(),
            "each journal line names the account"
        );
    }
    assert_eq!(records.iter().filter(|r| r["event"] == "result").count(), 5);
    assert_eq!(records[0]["mode"], "organization");
}

#[test]
fn the_text_report_groups_by_account_and_asks_once() {
    let (emulator, home, org) = setup();
    deny_assume_role(&emulator, &org.denied.id, "OrganizationAccountAccessRole");
    let run = home.run_in_terminal(&["--profile", PROFILE], "n\\n");
    run.expect_code(5);
    let out = &run.stdout;
    assert!(
        out.starts_with("Mode: organization (account 123456789012 is the management account of o-"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "Account {} prod-web (assumed role arn:aws:iam::{}:role/OrganizationAccountAccessRole)",
            org.prod_web.id, org.prod_web.id
        )),
        "{out}"
    );
    assert!(out.contains("Skipped accounts:"));
    assert!(
        out.contains(&format!("{} (closed): account state is SUSPENDED", org.closed.id)),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{} (denied): cannot assume OrganizationAccountAccessRole: AccessDenied",
            org.denied.id
        )),
        "{out}"
    );
    assert_eq!(run.stderr.matches("[y/N]").count(), 1, "one confirmation: {}", run.stderr);
    assert!(
        run.stderr.contains("6 instances in 5 accounts and 3 regions"),
        "{}\n{out}",
        run.stderr
    );
    assert_eq!(emulator.requests("ec2:ModifyInstanceMetadataOptions"), 0);
    assert_eq!(org.prod_web.tokens(&emulator), "optional");
}

#[test]
fn ou_filters_include_nested_ous_and_exclusion_wins() {
    let (_emulator, home, org) = setup();
    let config =
        home.config_file(&format!("[organizational_units]\ninclude = [\"{}\"]\n", org.production));
    let run =
        home.run(&["--profile", PROFILE, "--config", &config, "--dry-run", "--output", "json"]);
    run.expect_code(0);
    let report = &run.json()[0];
    assert_eq!(
        account_ids(report),
        sorted(vec![org.prod_web.id.clone(), org.payments_app.id.clone()])
    );

    let config = home.config_file(&format!(
        "[organizational_units]\ninclude = [\"{}\"]\nexclude = [\"{}\"]\n",
        org.production, org.payments
    ));
    let run =
        home.run(&["--profile", PROFILE, "--config", &config, "--dry-run", "--output", "json"]);
    run.expect_code(0);
    let report = &run.json()[0];
    assert_eq!(account_ids(report), [org.prod_web.id.as_str()]);
    assert_eq!(skipped(report, &org.payments_app.id)["kind"], "excluded");
}

#[test]
fn an_included_account_outside_the_organization_is_reported() {
    let (_emulator, home, org) = setup();
    let config = home.config_file(&format!(
        "[accounts]\ninclude = [\"{}\", \"999999999999\"]\n",
        org.prod_web.id
    ));
    let run =
        home.run(&["--profile", PROFILE, "--config", &config, "--dry-run", "--output", "json"]);
    run.expect_code(4);
    let report = &run.json()[0];
    assert_eq!(account_ids(report), [org.prod_web.id.as_str()]);
    assert_eq!(skipped(report, "999999999999")["kind"], "not_in_organization");
}

#[test]
fn a_member_account_profile_alone_sweeps_only_that_account() {
    let (emulator, home, org) = setup();
    home.add_profile("member", &org.prod_web.credentials, &emulator.url);
    let run = home.run(&["--profile", "member", "--dry-run", "--output", "json"]);
    run.expect_code(0);
    let report = &run.json()[0];
    assert_eq!(report["mode"]["mode"], "single_account");
    assert!(
        report["mode"]["reason"].as_str().unwrap().contains("may not list"),
        "{}",
        report["mode"]
    );
    assert_eq!(account_ids(report), [org.prod_web.id.as_str()]);
    assert_eq!(report["totals"]["to_change"], 2);

    let run = home.run(&["--profile", "member", "--organization", "--dry-run"]);
    run.expect_code(3);
    assert!(
        run.stderr.contains("organization mode is not possible")
            && run.stderr.contains("may not list"),
        "{}",
        run.stderr
    );
}

#[test]
fn single_account_mode_can_be_forced_with_organization_credentials() {
    let (_emulator, home, org) = setup();
    let run =
        home.run(&["--profile", PROFILE, "--single-account", "--dry-run", "--output", "json"]);
    run.expect_code(0);
    let report = &run.json()[0];
    assert_eq!(report["mode"]["mode"], "single_account");
    assert_eq!(account_ids(report), [ACCOUNT]);
    assert!(!account_ids(report).contains(&org.prod_web.id));
}

#[test]
fn organization_mode_outside_an_organization_is_an_error() {
    let emulator = Emulator::start();
    let home = Home::new(&emulator);
    let run = home.run(&["--profile", PROFILE, "--organization", "--dry-run"]);
    run.expect_code(3);
    assert!(run.stderr.contains("not in an organization"), "{}", run.stderr);
    assert_eq!(run.stderr.trim().lines().count(), 1);

    let config = home.config_file("mode = \"organization\"\n");
    let run = home.run(&["--profile", PROFILE, "--config", &config, "--dry-run"]);
    run.expect_code(3);
}

#[test]
fn an_unknown_ou_is_a_configuration_error() {
    let (_emulator, home, _org) = setup();
    let config = home.config_file("[organizational_units]\ninclude = [\"ou-zzzz-zzzzzzzz\"]\n");
    let run = home.run(&["--profile", PROFILE, "--config", &config, "--dry-run"]);
    run.expect_code(2);
    assert!(run.stderr.contains("ou-zzzz-zzzzzzzz"), "{}", run.stderr);
}

#[test]
fn a_delegated_administrator_sweeps_the_organization_and_is_told_about_the_management_role() {
    let (emulator, home, org) = setup();
    let orgs = organizations(&emulator);
    emulator
        .block_on(
            orgs.register_delegated_administrator()
                .account_id(&org.prod_web.id)
                .service_principal("ssm.amazonaws.com")
                .send(),
        )
        .unwrap();
    deny_assume_role(&emulator, ACCOUNT, "OrganizationAccountAccessRole");
    home.add_profile("delegated", &org.prod_web.credentials, &emulator.url);

    let run = home.run(&["--profile", "delegated", "--yes", "--output", "json"]);
    run.expect_code(4);
    let report = &run.json()[0];
    assert_eq!(report["mode"]["mode"], "organization");
    let reason = report["mode"]["reason"].as_str().unwrap();
    assert!(reason.contains("delegated administrator"), "{reason}");
    let own = scanned(report, &org.prod_web.id);
    assert_eq!(own["access"]["type"], "caller_credentials");

    let management = skipped(report, ACCOUNT);
    assert_eq!(management["kind"], "unreachable");
    let hint = management["hint"].as_str().unwrap();
    assert!(hint.contains("the management account has no OrganizationAccountAccessRole"), "{hint}");
    assert_eq!(emulator.options("us-west-2", &org.management_instance).tokens, "optional");
    for member in [&org.prod_web, &org.payments_app, &org.excluded, &org.denied, &org.sandbox] {
        assert_eq!(member.tokens(&emulator), "required", "account {}", member.id);
    }
    assert_eq!(org.closed.tokens(&emulator), "optional", "a suspended account is left alone");
}

#[test]
fn concurrency_one_keeps_one_call_in_flight_and_the_default_many() {
    let (emulator, home, _org) = setup();
    // A little latency, so that calls sent together are seen together.
    emulator.control("POST", "latency", Some(json!({"ms": 20, "jitter_ms": 0})));
    let peak = |args: &[&str]| {
        emulator.control("DELETE", "requests", None);
        let mut all = vec!["--profile", PROFILE, "--dry-run", "--output", "json"];
        all.extend_from_slice(args);
        home.run(&all).expect_code(0);
        emulator.control("GET", "stats", None)["in_flight_peak"].as_u64().unwrap()
    };
    assert_eq!(peak(&["--concurrency", "1"]), 1);
    assert!(peak(&[]) > 8, "the default sweeps many account-regions at once");
}

#[test]
fn an_organization_sweep_is_reverted_in_every_account_and_an_unreachable_one_later() {
    let (emulator, home, org) = setup();
    let journal = home.journal();
    let journal = journal.to_str().unwrap();
    home.run(&["--profile", PROFILE, "--yes", "--journal", journal]).expect_code(0);
    let members = [&org.prod_web, &org.payments_app, &org.excluded, &org.denied, &org.sandbox];
    for member in members {
        assert_eq!(member.tokens(&emulator), "required", "account {}", member.id);
    }

    // The revert enters every member account again; one of them now refuses.
    deny_assume_role(&emulator, &org.payments_app.id, "OrganizationAccountAccessRole");
    let first = home.run(&["revert", journal, "--profile", PROFILE, "--yes"]);
    first.expect_code(4);
    assert!(first.stdout.contains("6 instances to restore, 1 left alone"), "{}", first.stdout);
    assert!(first.stdout.contains("account unreachable"), "{}", first.stdout);
    assert_eq!(org.payments_app.tokens(&emulator), "required", "its account was unreachable");
    for member in [&org.prod_web, &org.excluded, &org.denied, &org.sandbox] {
        assert_eq!(member.tokens(&emulator), "optional", "account {} restored", member.id);
    }
    assert_eq!(emulator.options("us-west-2", &org.management_instance).tokens, "optional");
    assert_eq!(org.closed.tokens(&emulator), "optional", "never touched");

    emulator.control("DELETE", "faults", None);
    let second = home.run(&["revert", journal, "--profile", PROFILE, "--yes"]);
    second.expect_code(0);
    assert!(
        second
            .stdout
            .contains("1 instance to restore, 0 left alone, 6 restored by an earlier revert"),
        "{}",
        second.stdout
    );
    assert_eq!(org.payments_app.tokens(&emulator), "optional");
    let records = home.journal_records();
    let restored_accounts: std::collections::BTreeSet<&str> = records
        .iter()
        .filter(|r| r["event"] == "result" && r["http_tokens_after"] == "optional")
        .map(|r| r["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(restored_accounts.len(), 6, "the management account and five members");
}

#[test]
fn a_single_account_sweep_honours_the_config_account_lists() {
    let (emulator, home, org) = setup();
    let config = home.config_file(&format!("[accounts]\nexclude = [\"{ACCOUNT}\"]\n"));
    let run = home.run(&[
        "--profile",
        PROFILE,
        "--single-account",
        "--config",
        &config,
        "--yes",
        "--output",
        "json",
    ]);
    run.expect_code(0);
    let report = &run.json()[0];
    assert!(account_ids(report).is_empty(), "the excluded caller account is not swept");
    assert_eq!(skipped(report, ACCOUNT)["kind"], "excluded");
    assert_eq!(emulator.options("us-west-2", &org.management_instance).tokens, "optional");

    // A member falls back to single-account mode, where OU lists cannot be checked.
    home.add_profile("member", &org.prod_web.credentials, &emulator.url);
    let config =
        home.config_file(&format!("[organizational_units]\nexclude = [\"{}\"]\n", org.production));
    let run = home.run(&["--profile", "member", "--config", &config, "--yes"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("[organizational_units] needs organization mode")
            && run.stderr.contains("imds-sweep.toml"),
        "{}",
        run.stderr
    );
    assert_eq!(org.prod_web.tokens(&emulator), "optional", "nothing changed");
}

#[test]
fn an_excluded_id_outside_the_organization_is_a_configuration_error() {
    let (emulator, home, org) = setup();
    let config = home.config_file(&format!(
        "[accounts]\nexclude = [\"{}\", \"999999999999\"]\n",
        org.excluded.id
    ));
    let run = home.run(&["--profile", PROFILE, "--config", &config, "--yes"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("`accounts.exclude` names 999999999999") && run.stderr.contains("o-"),
        "{}",
        run.stderr
    );
    assert_eq!(emulator.requests("ec2:ModifyInstanceMetadataOptions"), 0, "nothing changed");
    assert_eq!(org.prod_web.tokens(&emulator), "optional");
}
