//! End-to-end tests of the single-account sweep: the real binary against the emulator.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{ACCOUNT, BAD_ACCESS_KEY, BAD_PROFILE, Emulator, Home, PROFILE, SECRET_KEY, Spec};
use serde_json::json;

/// Instances by name, with their region and id.
struct Fleet(BTreeMap<&'static str, (&'static str, String)>);

impl Fleet {
    fn region(&self, name: &str) -> &'static str {
        self.0[name].0
    }

    fn id(&self, name: &str) -> &str {
        &self.0[name].1
    }

    fn tokens(&self, emulator: &Emulator, name: &str) -> String {
        emulator.options(self.region(name), self.id(name)).tokens
    }
}

/// Three regions holding every kind of instance the classifier knows.
fn seed(emulator: &Emulator) -> Fleet {
    let specs = [
        ("us-east-1", Spec::new("web-1", "running", "optional")),
        ("us-east-1", Spec::new("batch-2", "stopped", "optional")),
        ("us-east-1", Spec::new("api-3", "running", "required")),
        ("us-east-1", Spec::new("old-4", "terminated", "optional")),
        ("us-east-1", Spec::new("dark-5", "running", "optional").endpoint_disabled()),
        ("us-east-1", Spec::new("sealed-6", "running", "required").endpoint_disabled()),
        ("us-east-1", Spec::new("hop-7", "running", "optional").hop_limit(2)),
        ("eu-west-1", Spec::new("eu-1", "running", "optional")),
        ("eu-west-1", Spec::new("eu-2", "running", "required")),
        ("ap-southeast-2", Spec::new("ap-1", "stopped", "optional")),
    ];
    Fleet(
        specs
            .into_iter()
            .map(|(region, spec)| (spec.name, (region, emulator.launch(region, spec))))
            .collect(),
    )
}

const TO_CHANGE: [&str; 6] = ["web-1", "batch-2", "dark-5", "hop-7", "eu-1", "ap-1"];

fn setup() -> (Emulator, Home, Fleet) {
    let emulator = Emulator::start();
    let home = Home::new(&emulator);
    let fleet = seed(&emulator);
    (emulator, home, fleet)
}

fn assert_untouched(emulator: &Emulator, fleet: &Fleet) {
    for name in TO_CHANGE {
        assert_eq!(fleet.tokens(emulator, name), "optional", "{name} must be unchanged");
    }
    assert_eq!(emulator.requests("ec2:ModifyInstanceMetadataOptions"), 0);
}

#[test]
fn yes_enforces_every_actionable_instance_and_keeps_other_options() {
    let (emulator, home, fleet) = setup();
    let journal = home.journal();
    let run = home.run(&["--profile", PROFILE, "--yes", "--journal", journal.to_str().unwrap()]);
    run.expect_code(0);

    for name in TO_CHANGE {
        assert_eq!(fleet.tokens(&emulator, name), "required", "{name}");
    }
    assert_eq!(
        fleet.tokens(&emulator, "old-4"),
        "optional",
        "terminated instances stay as they are"
    );
    let dark = emulator.options("us-east-1", fleet.id("dark-5"));
    assert_eq!(dark.endpoint, "disabled", "the metadata endpoint must stay disabled");
    assert_eq!(emulator.options("us-east-1", fleet.id("hop-7")).hop_limit, 2);
    assert_eq!(emulator.requests("ec2:ModifyInstanceMetadataOptions"), 6);

    let records = home.journal_records();
    assert_eq!(records[0]["event"], "run");
    assert_eq!(records[0]["caller_account"], ACCOUNT);
    assert_eq!(records[0]["format_version"], 1);
    assert_eq!(records[0]["options"]["concurrency"], 64);
    assert_eq!(records[0]["options"]["profile"], PROFILE);
    for name in TO_CHANGE {
        let results = common::result_for(&records, fleet.id(name));
        assert_eq!(results.len(), 1, "one result line for {name}");
        let result = results[0];
        assert_eq!(result["http_tokens_before"], "optional");
        assert_eq!(result["account_id"], ACCOUNT);
        assert_eq!(result["region"], fleet.region(name));
        assert!(result["caller_arn"].as_str().unwrap().contains(ACCOUNT));
        // AWS answers `pending` for a running instance and `applied` for a stopped one.
        let expected = if ["batch-2", "ap-1"].contains(&name) { "applied" } else { "pending" };
        assert_eq!(result["outcome"], expected, "{name}");
    }
    assert_eq!(records.iter().filter(|r| r["event"] == "result").count(), 6);
    assert!(run.stdout.contains("6 succeeded"), "{}", run.stdout);
    // The final report counts outcomes by region, with a subtotal for the account.
    let rows = common::table_rows(&run.stdout);
    for row in [
        [ACCOUNT, "ap-southeast-2", "1", "1", "0", "0", "0"],
        [ACCOUNT, "eu-west-1", "1", "0", "1", "0", "0"],
        [ACCOUNT, "us-east-1", "4", "1", "3", "0", "0"],
        [ACCOUNT, "all regions", "6", "2", "4", "0", "0"],
    ] {
        assert!(rows.contains(&row.map(str::to_owned).to_vec()), "{row:?} in {}", run.stdout);
    }
    assert!(run.stdout.contains(journal.to_str().unwrap()), "the journal is named");
}

#[test]
fn json_report_counts_every_instance_and_dry_run_changes_nothing() {
    let (emulator, home, fleet) = setup();
    let run = home.run(&["--profile", PROFILE, "--dry-run", "--output", "json"]);
    run.expect_code(0);
    let documents = run.json();
    assert_eq!(documents.len(), 1, "a dry run prints only the scan report");
    let report = &documents[0];
    assert_eq!(report["kind"], "scan_report");
    assert_eq!(report["mode"]["mode"], "single_account");
    assert_eq!(report["caller"]["account_id"], ACCOUNT);
    assert_eq!(
        report["totals"],
        json!({
            "accounts_scanned": 1, "accounts_skipped": 0, "regions_scanned": 20, "regions_skipped": 0, "instances": 10, "enforced": 2,
            "needs_enforcement": 5, "imds_disabled": 2, "not_actionable": 1, "to_change": 6,
            "errors": 0
        })
    );
    let account = &report["accounts"][0];
    assert_eq!(account["account_id"], ACCOUNT);
    let us_east =
        account["regions"].as_array().unwrap().iter().find(|r| r["region"] == "us-east-1").unwrap();
    let dark =
        us_east["instances"].as_array().unwrap().iter().find(|i| i["name"] == "dark-5").unwrap();
    assert_eq!(dark["status"], "imds_disabled");
    assert_eq!(dark["change"], true);
    assert_eq!(dark["http_endpoint"], "disabled");
    assert_untouched(&emulator, &fleet);
    assert!(!home.journal().exists());
}

#[test]
fn text_report_shows_tables_and_summary() {
    let (_emulator, home, fleet) = setup();
    let run = home.run(&["--profile", PROFILE, "--dry-run"]);
    run.expect_code(0);
    let out = &run.stdout;
    assert!(out.starts_with("Mode: single account"), "the mode comes first:\n{out}");
    assert!(out.contains(&format!("account {ACCOUNT}")));
    assert!(out.contains("us-east-1: 7 instances, 4 to change"), "{out}");
    let subtotal = "10 instances, 2 already enforced, 6 to change, 2 left alone";
    assert!(out.contains(&format!("Account {ACCOUNT}: {subtotal}")), "{out}");
    assert!(out.contains(fleet.id("web-1")) && out.contains("needs-enforcement"));
    assert!(out.contains("Dry run: 6 instances would be changed"), "{out}");
}

#[test]
fn declined_prompt_changes_nothing() {
    let (emulator, home, fleet) = setup();
    let run = home.run_in_terminal(&["--profile", PROFILE], "n\\n");
    run.expect_code(5);
    assert!(run.stderr.contains("[y/N]"), "the prompt is on stderr: {}", run.stderr);
    assert!(run.stderr.contains("6 instances in 1 account and 3 regions"), "{}", run.stderr);
    assert_untouched(&emulator, &fleet);
}

#[test]
fn accepted_prompt_applies() {
    let (emulator, home, fleet) = setup();
    let journal = home.journal();
    let run = home
        .run_in_terminal(&["--profile", PROFILE, "--journal", journal.to_str().unwrap()], "y\\n");
    run.expect_code(0);
    for name in TO_CHANGE {
        assert_eq!(fleet.tokens(&emulator, name), "required", "{name}");
    }
}

#[test]
fn without_a_terminal_or_yes_nothing_is_applied() {
    let (emulator, home, fleet) = setup();
    let run = home.run(&["--profile", PROFILE]);
    run.expect_code(2);
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    assert_untouched(&emulator, &fleet);
}

#[test]
fn nothing_to_change_exits_zero_without_prompting() {
    let emulator = Emulator::start();
    let home = Home::new(&emulator);
    emulator.launch("us-east-1", Spec::new("ok-1", "running", "required"));
    let run = home.run(&["--profile", PROFILE]);
    run.expect_code(0);
    assert!(run.stdout.contains("Nothing to change"), "{}", run.stdout);
}

#[test]
fn unknown_profile_is_named_with_the_files_read() {
    let emulator = Emulator::start();
    let home = Home::new(&emulator);
    let run = home.run(&["--profile", "ghost"]);
    run.expect_code(2);
    let line = run.stderr.trim();
    assert_eq!(line.lines().count(), 1, "one line: {line}");
    assert!(
        line.contains("`ghost`") && line.contains(home.path().join("config").to_str().unwrap()),
        "{line}"
    );
    assert_eq!(emulator.requests("sts:GetCallerIdentity"), 0);
}

#[test]
fn rejected_and_expired_credentials_are_fatal() {
    let emulator = Emulator::start();
    let home = Home::new(&emulator);
    for (code, profile) in [("InvalidClientTokenId", BAD_PROFILE), ("ExpiredToken", BAD_PROFILE)] {
        emulator.control("DELETE", "faults", None);
        emulator.fault(json!({
            "service": "sts", "action": "GetCallerIdentity", "access_key": BAD_ACCESS_KEY,
            "status": 403, "code": code, "message": "The security token is not valid"
        }));
        let run = home.run(&["--profile", profile]);
        run.expect_code(3);
        assert!(run.stderr.contains(code) && run.stderr.contains("rejected"), "{}", run.stderr);
        assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    }
    assert_eq!(emulator.requests("ec2:DescribeRegions"), 0);
}

#[test]
fn a_profile_without_credentials_is_fatal() {
    let emulator = Emulator::start();
    let home = Home::new(&emulator);
    let run = home.run(&["--profile", "empty"]);
    run.expect_code(3);
    assert!(run.stderr.contains("`empty`"), "{}", run.stderr);
    assert_eq!(emulator.requests("sts:GetCallerIdentity"), 0);
}

#[test]
fn denied_describe_regions_is_fatal() {
    let emulator = Emulator::start();
    let home = Home::new(&emulator);
    emulator.fault(json!({"service": "ec2", "action": "DescribeRegions", "status": 403, "code": "UnauthorizedOperation"}));
    let run = home.run(&["--profile", PROFILE, "--yes"]);
    run.expect_code(3);
    assert!(
        run.stderr.contains("DescribeRegions") && run.stderr.contains("UnauthorizedOperation"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_denied_region_is_skipped_and_the_rest_is_enforced() {
    let (emulator, home, fleet) = setup();
    emulator.fault(json!({
        "service": "ec2", "action": "DescribeInstances", "region": "eu-west-1",
        "status": 403, "code": "UnauthorizedOperation", "message": "denied by an SCP"
    }));
    let journal = home.journal();
    let run = home.run(&["--profile", PROFILE, "--yes", "--journal", journal.to_str().unwrap()]);
    run.expect_code(4);
    assert!(
        run.stdout.contains("eu-west-1: DescribeInstances failed: UnauthorizedOperation"),
        "{}",
        run.stdout
    );
    emulator.control("DELETE", "faults", None);
    assert_eq!(fleet.tokens(&emulator, "eu-1"), "optional");
    assert_eq!(fleet.tokens(&emulator, "web-1"), "required");
    assert_eq!(fleet.tokens(&emulator, "ap-1"), "required");
}

#[test]
fn a_failed_modification_is_reported_and_journalled() {
    let (emulator, home, fleet) = setup();
    let victim = fleet.id("batch-2").to_owned();
    emulator.fault(json!({
        "service": "ec2", "action": "ModifyInstanceMetadataOptions", "params": {"InstanceId": victim},
        "status": 400, "code": "InvalidInstanceID.NotFound", "message": "The instance ID does not exist"
    }));
    let journal = home.journal();
    let run = home.run(&[
        "--profile",
        PROFILE,
        "--yes",
        "--output",
        "json",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    run.expect_code(4);
    assert!(run.stderr.contains("modification failed"), "{}", run.stderr);
    assert!(!run.stderr.contains('\u{1b}'), "no colour off a terminal: {:?}", run.stderr);
    let documents = run.json();
    let result = &documents[1];
    assert_eq!(result["kind"], "enforcement_report");
    assert_eq!(result["succeeded"], 5);
    assert_eq!(result["failed"], 1);
    let failure = &result["failures"][0];
    assert_eq!(failure["instance_id"], victim.as_str());
    assert_eq!(failure["region"], "us-east-1");
    assert_eq!(failure["account_id"], ACCOUNT);
    assert_eq!(failure["hint"], "the instance may have been terminated");

    let records = home.journal_records();
    let results = common::result_for(&records, &victim);
    assert_eq!(results[0]["outcome"], "failed");
    assert_eq!(results[0]["error"]["code"], "InvalidInstanceID.NotFound");
    assert_eq!(fleet.tokens(&emulator, "batch-2"), "optional");
}

#[test]
fn region_flags_restrict_the_sweep() {
    let (emulator, home, fleet) = setup();
    let journal = home.journal();
    let run = home.run(&[
        "--profile",
        PROFILE,
        "--region",
        "eu-west-1",
        "--yes",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    run.expect_code(0);
    let reads = emulator.requests("ec2:DescribeInstances");
    assert_eq!(reads, 3, "one region scanned, read again before the change, read back");
    assert_eq!(fleet.tokens(&emulator, "eu-1"), "required");
    assert_eq!(fleet.tokens(&emulator, "web-1"), "optional");

    let run = home.run(&["--profile", PROFILE, "--region", "mars-north-1", "--yes"]);
    run.expect_code(2);
    assert!(run.stderr.contains("`mars-north-1`"), "{}", run.stderr);
}

#[test]
fn a_region_not_enabled_is_reported_as_skipped() {
    let (_emulator, home, _fleet) = setup();
    let run = home.run(&["--profile", PROFILE, "--region", "ap-east-1", "--dry-run"]);
    run.expect_code(4);
    assert!(run.stdout.contains("ap-east-1: not enabled for this account"), "{}", run.stdout);
}

#[test]
fn every_page_of_a_large_region_is_swept() {
    let emulator = Emulator::start();
    let home = Home::new(&emulator);
    // The scan asks for pages of 1000, as AWS recommends; the emulator answers 100 reservations
    // at a time (AWS may return fewer than asked), and each launch is one reservation.
    emulator.control("POST", "page-size", Some(json!({"max": 100})));
    emulator.fault(json!({
        "service": "ec2", "action": "DescribeInstances", "params": {"MaxResults": "1000"}
    }));
    let ids: Vec<String> = (0..105)
        .map(|_| emulator.launch("eu-north-1", Spec::new("bulk", "running", "optional")))
        .collect();
    let journal = home.journal();
    let run = home.run(&[
        "--profile",
        PROFILE,
        "--region",
        "eu-north-1",
        "--yes",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    run.expect_code(0);
    assert_eq!(
        emulator.requests("ec2:DescribeInstances"),
        6,
        "two pages to scan, two to read again before the changes, two to read back"
    );
    let probe = &emulator.control("GET", "faults", None)[0];
    assert_eq!(probe["hits"], 2, "both scan pages asked for 1000 instances");
    for id in &ids {
        assert_eq!(emulator.options("eu-north-1", id).tokens, "required", "{id}");
    }
    let records = home.journal_records();
    assert_eq!(records.iter().filter(|r| r["event"] == "result").count(), 105);
}

#[test]
fn the_default_journal_lives_under_the_state_directory() {
    let (_emulator, home, _fleet) = setup();
    let run = home.run(&["--profile", PROFILE, "--yes"]);
    run.expect_code(0);
    let dir = home.path().join("state/imds-sweep");
    let files: Vec<_> = std::fs::read_dir(&dir).expect("journal directory").collect();
    assert_eq!(files.len(), 1);
    let path = files[0].as_ref().unwrap().path();
    assert!(run.stdout.contains(path.to_str().unwrap()), "{}", run.stdout);
    let records = common::read_json_lines(&path);
    assert_eq!(records.iter().filter(|r| r["event"] == "result").count(), 6);
}

#[test]
fn no_secret_reaches_any_output() {
    let (_emulator, home, _fleet) = setup();
    let journal = home.journal();
    let run =
        home.run(&["--profile", PROFILE, "--yes", "-vv", "--journal", journal.to_str().unwrap()]);
    run.expect_code(0);
    let journal_text = std::fs::read_to_string(&journal).unwrap();
    for (name, text) in
        [("stdout", &run.stdout), ("stderr", &run.stderr), ("journal", &journal_text)]
    {
        assert!(!text.contains(SECRET_KEY), "the secret key leaked into {name}");
    }
    assert!(run.stderr.contains("will set HttpTokens=required"), "-vv explains decisions");
}

#[test]
fn ctrl_c_during_the_scan_changes_nothing() {
    let (emulator, home, fleet) = setup();
    emulator.fault(json!({"service": "ec2", "action": "DescribeInstances", "delay_ms": 5000}));
    let child = home
        .command(&["--profile", PROFILE, "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let started = std::time::Instant::now();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "exits at once");
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing was changed"));
    assert_untouched(&emulator, &fleet);
}

#[test]
fn ctrl_c_during_enforcement_journals_what_was_applied() {
    let (emulator, home, fleet) = setup();
    emulator.fault(
        json!({"service": "ec2", "action": "ModifyInstanceMetadataOptions", "delay_ms": 700}),
    );
    let journal = home.journal();
    // One call at a time, so that the interrupt finds changes not yet started.
    let args = ["--profile", PROFILE, "--yes", "--concurrency", "1"];
    let child = home
        .command(&[&args[..], &["--journal", journal.to_str().unwrap()]].concat())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first change has been attempted, then interrupt.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while home.journal_records().iter().all(|r| r["event"] != "attempt") {
        assert!(std::time::Instant::now() < deadline, "no change was attempted");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", String::from_utf8_lossy(&output.stderr));

    let records = home.journal_records();
    let changed: Vec<&str> =
        TO_CHANGE.iter().copied().filter(|n| fleet.tokens(&emulator, n) == "required").collect();
    assert!(changed.len() < TO_CHANGE.len(), "the interrupt stopped new changes");
    for name in TO_CHANGE {
        let journalled = common::result_for(&records, fleet.id(name)).len();
        let expected = usize::from(changed.contains(&name));
        assert_eq!(journalled, expected, "journal and emulator agree on {name}");
    }
    assert!(String::from_utf8_lossy(&output.stdout).contains("Interrupted after"));
}

#[test]
fn wait_waits_for_pending_changes_to_be_applied() {
    let (emulator, home, fleet) = setup();
    emulator.control("POST", "pending", Some(json!({"seconds": 3.0})));
    let started = std::time::Instant::now();
    let run = home.run(&[
        "--profile",
        PROFILE,
        "--yes",
        "--region",
        "us-east-1",
        "--output",
        "json",
        "--wait",
    ]);
    run.expect_code(0);
    assert!(started.elapsed() >= std::time::Duration::from_secs(3), "it waited");
    let result = &run.json()[1];
    assert_eq!(result["verification"]["still_pending"], json!([]));
    assert_eq!(result["verification"]["verified"], 4);
    let records = home.journal_records_in(&home.path().join("state/imds-sweep"));
    let web = fleet.id("web-1");
    let verify =
        records.iter().find(|r| r["event"] == "verify" && r["instance_id"] == web).unwrap();
    assert_eq!(verify["metadata_state"], "applied");

    emulator.control("POST", "pending", Some(json!({"seconds": 60.0})));
    let (_, id) = (fleet.region("api-3"), fleet.id("api-3"));
    emulator
        .block_on(
            emulator
                .ec2("us-east-1")
                .modify_instance_metadata_options()
                .instance_id(id)
                .http_tokens(aws_sdk_ec2::types::HttpTokensState::Optional)
                .send(),
        )
        .unwrap();
    let args =
        ["--profile", PROFILE, "--yes", "--region", "us-east-1", "--wait", "--wait-timeout", "2"];
    let run = home.run(&args);
    run.expect_code(4);
    let line = format!("still pending: {ACCOUNT} us-east-1 {id}");
    assert!(run.stdout.contains(&line), "{}", run.stdout);
}

#[test]
fn an_instance_changed_after_the_scan_is_journalled_with_the_value_it_had_then() {
    let (emulator, home, fleet) = setup();
    // The read right before enforcement (by instance id) is held back for three seconds,
    // time enough for someone else to enforce web-1 between the scan and the change.
    emulator.fault(json!({
        "service": "ec2", "action": "DescribeInstances",
        "params": {"Filter.1.Name": "instance-id"}, "delay_ms": 3000, "times": 1
    }));
    let journal = home.journal();
    let journal = journal.to_str().unwrap();
    let args = ["--profile", PROFILE, "--region", "us-east-1", "--yes", "--journal", journal];
    std::thread::scope(|scope| {
        let sweep = scope.spawn(|| home.run(&args));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while emulator.control("GET", "stats", None)["faulted"].as_u64() == Some(0) {
            assert!(std::time::Instant::now() < deadline, "the read before enforcing never came");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        emulator
            .block_on(
                emulator
                    .ec2("us-east-1")
                    .modify_instance_metadata_options()
                    .instance_id(fleet.id("web-1"))
                    .http_tokens(aws_sdk_ec2::types::HttpTokensState::Required)
                    .send(),
            )
            .unwrap();
        sweep.join().unwrap().expect_code(0);
    });

    let records = home.journal_records();
    let before = |name: &str| {
        let attempt = records
            .iter()
            .find(|r| r["event"] == "attempt" && r["instance_id"] == fleet.id(name))
            .unwrap();
        attempt["http_tokens_before"].as_str().unwrap().to_owned()
    };
    assert_eq!(before("web-1"), "required", "the value right before the change");
    assert_eq!(before("batch-2"), "optional");

    // So the undo leaves web-1 as someone else set it, and restores the rest.
    home.run(&["revert", journal, "--profile", PROFILE, "--yes"]).expect_code(0);
    assert_eq!(fleet.tokens(&emulator, "web-1"), "required");
    for name in ["batch-2", "dark-5", "hop-7"] {
        assert_eq!(fleet.tokens(&emulator, name), "optional", "{name} restored");
    }
}
