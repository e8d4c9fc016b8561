//! End-to-end tests of `imds-sweep revert`: exactly the instances a run changed go back to
//! their previous HttpTokens value, and nothing else moves.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Emulator, Home, PROFILE, Spec};
use serde_json::json;

struct Fleet {
    changed: Vec<(&'static str, String)>,
    required: String,
    dark: String,
    hops: String,
}

fn setup() -> (Emulator, Home, Fleet) {
    let emulator = Emulator::start();
    let home = Home::new(&emulator);
    let web = emulator.launch("us-east-1", Spec::new("web", "running", "optional"));
    let batch = emulator.launch("us-east-1", Spec::new("batch", "stopped", "optional"));
    let dark =
        emulator.launch("us-east-1", Spec::new("dark", "running", "optional").endpoint_disabled());
    let hops = emulator.launch("eu-west-1", Spec::new("hops", "running", "optional").hop_limit(2));
    let required = emulator.launch("eu-west-1", Spec::new("api", "running", "required"));
    let changed = vec![
        ("us-east-1", web),
        ("us-east-1", batch),
        ("us-east-1", dark.clone()),
        ("eu-west-1", hops.clone()),
    ];
    (emulator, home, Fleet { changed, required, dark, hops })
}

fn sweep(home: &Home) -> String {
    let journal = home.journal();
    let journal = journal.to_str().unwrap();
    home.run(&["--profile", PROFILE, "--yes", "--journal", journal]).expect_code(0);
    journal.to_owned()
}

#[test]
fn revert_restores_exactly_what_the_run_changed() {
    let (emulator, home, fleet) = setup();
    let journal = sweep(&home);
    // Someone else sets one changed instance back to optional after the run.
    let (region, touched) = &fleet.changed[0];
    emulator
        .block_on(
            emulator
                .ec2(region)
                .modify_instance_metadata_options()
                .instance_id(touched)
                .http_tokens(aws_sdk_ec2::types::HttpTokensState::Optional)
                .send(),
        )
        .unwrap();

    let run = home.run(&["revert", &journal, "--profile", PROFILE, "--yes"]);
    run.expect_code(4);
    assert!(run.stdout.contains("3 instances to restore, 1 left alone"), "{}", run.stdout);
    assert!(run.stdout.contains("changed since by someone else"), "{}", run.stdout);
    for (region, id) in &fleet.changed[1..] {
        assert_eq!(emulator.options(region, id).tokens, "optional", "{id} is restored");
    }
    assert_eq!(emulator.options("eu-west-1", &fleet.required).tokens, "required", "never changed");
    assert_eq!(emulator.options("us-east-1", &fleet.dark).endpoint, "disabled");
    assert_eq!(emulator.options("eu-west-1", &fleet.hops).hop_limit, 2);

    let records = home.journal_records();
    let revert_header = records.iter().rfind(|r| r["event"] == "run").unwrap();
    assert_eq!(revert_header["operation"], "revert");
    let reverted: Vec<_> = records
        .iter()
        .filter(|r| r["event"] == "result" && r["run_id"] == revert_header["run_id"])
        .collect();
    assert_eq!(reverted.len(), 3);
    assert!(
        reverted
            .iter()
            .all(|r| r["http_tokens_before"] == "required" && r["http_tokens_after"] == "optional")
    );
}

#[test]
fn revert_asks_first_and_a_dry_run_changes_nothing() {
    let (emulator, home, fleet) = setup();
    let journal = sweep(&home);
    emulator.control("DELETE", "requests", None);

    let run = home.run_in_terminal(&["revert", &journal, "--profile", PROFILE], "n\\n");
    run.expect_code(5);
    assert!(run.stderr.contains("Restore the HttpTokens value of 4 instances"), "{}", run.stderr);
    let run =
        home.run(&["revert", &journal, "--profile", PROFILE, "--dry-run", "--output", "json"]);
    run.expect_code(0);
    let plan = &run.json()[0];
    assert_eq!(plan["kind"], "revert_plan");
    assert_eq!(plan["changes"].as_array().unwrap().len(), 4);

    assert_eq!(emulator.requests("ec2:ModifyInstanceMetadataOptions"), 0);
    for (region, id) in &fleet.changed {
        assert_eq!(emulator.options(region, id).tokens, "required");
    }
}

#[test]
fn revert_where_the_account_enforces_imdsv2_says_so_once() {
    let (emulator, home, fleet) = setup();
    let journal = sweep(&home);
    emulator.control(
        "POST",
        "metadata-defaults",
        Some(json!({
            "account": common::ACCOUNT, "region": "us-east-1", "http_tokens": "required",
            "http_tokens_enforced": "enabled", "managed_by": "declarative-policy",
            "managed_exception_message": "IMDSv2 is mandatory"
        })),
    );
    emulator.control("DELETE", "requests", None);

    let run = home.run(&["revert", &journal, "--profile", PROFILE, "--yes"]);
    run.expect_code(4);
    assert_eq!(run.stdout.matches("enforces IMDSv2 in us-east-1").count(), 1, "{}", run.stdout);
    assert!(run.stdout.contains("IMDSv2 is mandatory"), "{}", run.stdout);
    assert_eq!(emulator.requests("ec2:ModifyInstanceMetadataOptions"), 1, "only eu-west-1");
    for (region, id) in &fleet.changed {
        let expected = if *region == "us-east-1" { "required" } else { "optional" };
        assert_eq!(emulator.options(region, id).tokens, expected, "{id}");
    }
}

/// A revert whose one change to the second instance fails; returns that instance.
fn revert_all_but_one(
    emulator: &Emulator,
    home: &Home,
    fleet: &Fleet,
    journal: &str,
) -> (&'static str, String) {
    let (region, stuck) = fleet.changed[1].clone();
    emulator.fault(json!({
        "service": "ec2", "action": "ModifyInstanceMetadataOptions", "params": {"InstanceId": stuck},
        "status": 400, "code": "UnauthorizedOperation", "message": "not now", "times": 1
    }));
    home.run(&["revert", journal, "--profile", PROFILE, "--yes"]).expect_code(4);
    assert_eq!(emulator.options(region, &stuck).tokens, "required", "its revert failed");
    (region, stuck)
}

#[test]
fn a_second_revert_finishes_what_the_first_left_and_repeats_nothing() {
    let (emulator, home, fleet) = setup();
    let journal = sweep(&home);
    revert_all_but_one(&emulator, &home, &fleet, &journal);
    emulator.control("DELETE", "requests", None);

    // The second revert undoes the same sweep again (not the first revert), restores the one
    // instance still to do, and counts the others as done rather than as changed by others.
    let second = home.run(&["revert", &journal, "--profile", PROFILE, "--yes"]);
    second.expect_code(0);
    assert!(
        second
            .stdout
            .contains("1 instance to restore, 0 left alone, 3 restored by an earlier revert"),
        "{}",
        second.stdout
    );
    assert_eq!(emulator.requests("ec2:ModifyInstanceMetadataOptions"), 1);
    for (region, id) in &fleet.changed {
        assert_eq!(emulator.options(region, id).tokens, "optional", "{id}");
    }

    let third = home.run(&["revert", &journal, "--profile", PROFILE, "--yes"]);
    third.expect_code(0);
    assert!(third.stdout.contains("Nothing to revert."), "{}", third.stdout);
    assert_eq!(emulator.requests("ec2:ModifyInstanceMetadataOptions"), 1, "nothing repeated");
}

#[test]
fn an_instance_enforced_again_after_an_earlier_revert_is_left_alone() {
    let (emulator, home, fleet) = setup();
    let journal = sweep(&home);
    let (region, stuck) = revert_all_but_one(&emulator, &home, &fleet, &journal);

    // Someone enforces a restored instance again: the run's value, but not the run's doing.
    let (enforced_region, enforced) = &fleet.changed[0];
    emulator
        .block_on(
            emulator
                .ec2(enforced_region)
                .modify_instance_metadata_options()
                .instance_id(enforced)
                .http_tokens(aws_sdk_ec2::types::HttpTokensState::Required)
                .send(),
        )
        .unwrap();
    emulator.control("DELETE", "requests", None);

    let second = home.run(&["revert", &journal, "--profile", PROFILE, "--yes"]);
    second.expect_code(4);
    assert!(
        second
            .stdout
            .contains("1 instance to restore, 1 left alone, 2 restored by an earlier revert"),
        "{}",
        second.stdout
    );
    assert!(second.stdout.contains("changed since by someone else"), "{}", second.stdout);
    assert_eq!(emulator.requests("ec2:ModifyInstanceMetadataOptions"), 1, "only the stuck one");
    assert_eq!(emulator.options(enforced_region, enforced).tokens, "required", "left alone");
    assert_eq!(emulator.options(region, &stuck).tokens, "optional", "finished");
}
