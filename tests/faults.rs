//! Fault injection: throttling, server errors, connection resets, lost answers and slow
//! responses. Whatever happens, the sweep finishes, every instance ends enforced or listed as
//! failed with its reason, the exit code tells success from partial, and the journal agrees
//! with the emulator.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use aws_credential_types::Credentials;
use common::{Emulator, Home, PROFILE, Spec};
use serde_json::{Value, json};

/// Optional instances across three regions, by id with their region.
fn seed(emulator: &Emulator, per_region: usize) -> BTreeMap<String, &'static str> {
    let mut fleet = BTreeMap::new();
    for region in ["us-east-1", "eu-west-1", "ap-southeast-2"] {
        for _ in 0..per_region {
            let id = emulator.launch(region, Spec::new("node", "running", "optional"));
            fleet.insert(id, region);
        }
    }
    fleet
}

/// What the journal says each instance holds now: a successful result sets the new value, a
/// read-back overrides whatever the calls answered.
fn journal_view(records: &[Value]) -> BTreeMap<String, String> {
    let mut view = BTreeMap::new();
    for record in records {
        let Some(id) = record["instance_id"].as_str() else { continue };
        match record["event"].as_str() {
            Some("result") if matches!(record["outcome"].as_str(), Some("applied" | "pending")) => {
                view.insert(id.to_owned(), "required".to_owned());
            }
            Some("verify") => {
                view.insert(id.to_owned(), record["http_tokens"].as_str().unwrap().to_owned());
            }
            _ => {}
        }
    }
    view
}

/// Runs a full sweep under whatever faults are set and checks every guarantee.
fn sweep_and_check(
    emulator: &Emulator,
    home: &Home,
    fleet: &BTreeMap<String, &str>,
    extra: &[&str],
) {
    let journal = home.journal();
    let _ = std::fs::remove_file(&journal);
    let mut args = vec!["--profile", PROFILE, "--yes", "--output", "json"];
    args.extend(["--region", "us-east-1", "--region", "eu-west-1", "--region", "ap-southeast-2"]);
    args.extend(["--journal", journal.to_str().unwrap()]);
    args.extend(extra);
    let run = home.run(&args);
    assert!(run.code == 0 || run.code == 4, "the sweep finishes: {}\n{}", run.code, run.stderr);
    let documents = run.json();
    let result = documents.iter().find(|d| d["kind"] == "enforcement_report").unwrap();
    let failed: Vec<&str> = result["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["instance_id"].as_str().unwrap())
        .collect();
    for failure in result["failures"].as_array().unwrap() {
        assert!(failure["error"].as_str().is_some_and(|e| !e.is_empty()), "a reason: {failure}");
    }

    emulator.control("DELETE", "faults", None);
    let view = journal_view(&home.journal_records());
    let mut all_enforced = true;
    for (id, region) in fleet {
        let actual = emulator.options(region, id).tokens;
        all_enforced &= actual == "required";
        assert!(
            actual == "required" || failed.contains(&id.as_str()),
            "{id} is {actual} and not listed as failed"
        );
        let journalled = view.get(id).map_or("optional", String::as_str);
        assert_eq!(journalled, actual, "journal and emulator agree on {id}");
    }
    let expected_code = if all_enforced && failed.is_empty() { 0 } else { 4 };
    assert_eq!(run.code, expected_code, "exit code tells success from partial\n{}", run.stdout);
    let stats = emulator.control("GET", "stats", None);
    assert!(stats["faulted"].as_u64().unwrap() > 0, "the faults were exercised");
}

fn setup(per_region: usize) -> (Emulator, Home, BTreeMap<String, &'static str>) {
    let emulator = Emulator::start();
    let home = Home::new(&emulator);
    let fleet = seed(&emulator, per_region);
    emulator.control("POST", "seed", Some(json!({"seed": 7})));
    (emulator, home, fleet)
}

#[test]
fn thirty_percent_throttling_is_retried_through() {
    let (emulator, home, fleet) = setup(6);
    emulator.fault(json!({
        "service": "ec2", "probability": 0.3, "status": 503,
        "code": "RequestLimitExceeded", "message": "Request limit exceeded."
    }));
    sweep_and_check(&emulator, &home, &fleet, &[]);
}

#[test]
fn random_server_errors_are_retried_or_reported() {
    let (emulator, home, fleet) = setup(6);
    emulator.fault(
        json!({"service": "ec2", "probability": 0.15, "status": 500, "code": "InternalError"}),
    );
    emulator.fault(
        json!({"service": "ec2", "probability": 0.15, "status": 503, "code": "Unavailable"}),
    );
    sweep_and_check(&emulator, &home, &fleet, &[]);
}

#[test]
fn connection_resets_and_lost_answers_are_reconciled() {
    let (emulator, home, fleet) = setup(6);
    emulator.fault(json!({"service": "ec2", "action": "ModifyInstanceMetadataOptions", "probability": 0.25, "reset": true}));
    emulator.fault(json!({"service": "ec2", "action": "ModifyInstanceMetadataOptions", "probability": 0.25, "reset": true, "after": true}));
    sweep_and_check(&emulator, &home, &fleet, &[]);
}

#[test]
fn answers_slower_than_the_timeout_are_reconciled() {
    let (emulator, home, fleet) = setup(4);
    emulator.fault(json!({"service": "ec2", "action": "ModifyInstanceMetadataOptions", "probability": 0.3, "delay_ms": 2500}));
    sweep_and_check(&emulator, &home, &fleet, &["--timeout", "1"]);
}

#[test]
fn modifications_that_keep_failing_are_listed_and_the_run_is_partial() {
    let (emulator, home, fleet) = setup(2);
    let victim = fleet.keys().next().unwrap().clone();
    emulator.fault(json!({
        "service": "ec2", "action": "ModifyInstanceMetadataOptions", "params": {"InstanceId": victim},
        "status": 503, "code": "RequestLimitExceeded"
    }));
    sweep_and_check(&emulator, &home, &fleet, &[]);
    assert_eq!(emulator.options(fleet[&victim], &victim).tokens, "optional");
}

#[test]
fn interrupting_at_any_point_leaves_journal_and_emulator_in_agreement() {
    for (round, delay_ms) in [300_u64, 800, 1400, 2200].into_iter().enumerate() {
        let emulator = Emulator::start();
        let home = Home::new(&emulator);
        let mut fleet = BTreeMap::new();
        for region in ["us-east-1", "eu-west-1"] {
            for _ in 0..6 {
                fleet
                    .insert(emulator.launch(region, Spec::new("n", "running", "optional")), region);
            }
        }
        emulator.control("POST", "latency", Some(json!({"ms": 120, "jitter_ms": 20})));
        let journal = home.journal();
        let args = [
            "--profile",
            PROFILE,
            "--yes",
            "--concurrency",
            "2",
            "--region",
            "us-east-1",
            "--region",
            "eu-west-1",
        ];
        let child = home
            .command(&[&args[..], &["--journal", journal.to_str().unwrap()]].concat())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let code = output.status.code().unwrap();
        assert!(code == 130 || code == 0, "round {round}: exit {code}");
        emulator.control("POST", "latency", Some(json!({"ms": 0, "jitter_ms": 0})));

        let records = home.journal_records();
        let view = journal_view(&records);
        for (id, region) in &fleet {
            let actual = emulator.options(region, id).tokens;
            let journalled = view.get(id).map_or("optional", String::as_str);
            assert_eq!(journalled, actual, "round {round} (after {delay_ms} ms): {id}");
        }
        let attempts = records.iter().filter(|r| r["event"] == "attempt").count();
        let results = records.iter().filter(|r| r["event"] == "result").count();
        assert_eq!(attempts, results, "round {round}: every attempt has its outcome");
    }
}

#[test]
fn a_second_interrupt_exits_at_once_and_the_journal_still_names_every_change() {
    let emulator = Emulator::start();
    let home = Home::new(&emulator);
    let region = "us-east-1";
    let fleet: Vec<String> =
        (0..6).map(|_| emulator.launch(region, Spec::new("n", "running", "optional"))).collect();
    // Every modification is held up for three seconds, then made: calls are in flight when the
    // tool is told to stop, and they land after it has gone.
    let hold = Duration::from_millis(3000);
    emulator.fault(json!({
        "service": "ec2", "action": "ModifyInstanceMetadataOptions", "delay_ms": 3000
    }));
    let journal = home.journal();
    let mut child = home
        .command(&[
            "--profile",
            PROFILE,
            "--yes",
            "--region",
            region,
            "--journal",
            journal.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&journal).is_ok_and(|t| t.contains(r#""event":"attempt""#)) {
        assert!(started.elapsed() < Duration::from_secs(60), "no change was attempted");
        std::thread::sleep(Duration::from_millis(20));
    }
    let interrupt = || {
        std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
    };
    interrupt();
    std::thread::sleep(Duration::from_millis(200));
    let second = std::time::Instant::now();
    interrupt();
    let status = child.wait().unwrap();
    let waited = second.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(waited < hold / 2, "the second Ctrl-C waited {waited:?} for calls in flight");
    assert!(stderr.contains("interrupted again"), "{stderr}");

    // The calls the tool abandoned land now; each one it made is in the journal, outcome or not.
    std::thread::sleep(hold + Duration::from_millis(500));
    let records = home.journal_records();
    let attempted: Vec<&str> = records
        .iter()
        .filter(|r| r["event"] == "attempt")
        .map(|r| r["instance_id"].as_str().unwrap())
        .collect();
    let results = records.iter().filter(|r| r["event"] == "result").count();
    assert!(results < attempted.len(), "some calls were abandoned without an outcome");
    let mut changed = 0;
    for id in &fleet {
        if emulator.options(region, id).tokens == "required" {
            changed += 1;
            assert!(attempted.contains(&id.as_str()), "{id} was changed but not journalled");
        }
    }
    assert!(changed > 0, "the abandoned calls were made");

    // Undo puts back every change, including those whose outcome the tool never saw.
    emulator.control("DELETE", "faults", None);
    let run = home.run(&["revert", journal.to_str().unwrap(), "--profile", PROFILE, "--yes"]);
    run.expect_code(0);
    for id in &fleet {
        assert_eq!(emulator.options(region, id).tokens, "optional", "{id} after revert");
    }
}

#[test]
fn no_secret_or_session_token_reaches_any_output() {
    let (emulator, home, _fleet) = setup(2);
    let secret = "fixture-temporary-secret-Vb71";
    let token = "fixture-session-token-FQoGZXIvYXdzEJr";
    let credentials =
        Credentials::new("ASIAFIXTURETEMP00001", secret, Some(token.into()), None, "t");
    home.add_profile("temporary", &credentials, &emulator.url);
    let journal = home.journal();
    let args = ["--profile", "temporary", "--yes", "-vv", "--output", "json", "--journal"];
    let run = home.run(&[&args[..], &[journal.to_str().unwrap()]].concat());
    run.expect_code(0);
    let journal_text = std::fs::read_to_string(&journal).unwrap();
    for (name, text) in
        [("stdout", &run.stdout), ("stderr", &run.stderr), ("journal", &journal_text)]
    {
        assert!(!text.contains(secret), "the secret key leaked into {name}");
        assert!(!text.contains(token), "the session token leaked into {name}");
    }
    assert!(run.stderr.contains("will set HttpTokens=required"), "-vv was in effect");
}
