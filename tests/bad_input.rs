//! Bad input of every kind gets one clear line naming what is wrong, a documented exit code,
//! and no panic or stack trace.

#![allow(clippy::unwrap_used)]

mod common;

use common::{BAD_ACCESS_KEY, BAD_PROFILE, Emulator, Home, PROFILE};
use serde_json::json;

/// One bad input: what to run, what the single stderr line must say, and the exit code.
struct Case {
    name: &'static str,
    args: Vec<String>,
    says: Vec<&'static str>,
    code: i32,
}

fn case(name: &'static str, args: &[&str], says: &[&'static str], code: i32) -> Case {
    Case { name, args: args.iter().map(|s| s.to_string()).collect(), says: says.to_vec(), code }
}

#[test]
fn every_bad_input_gets_one_line_and_its_exit_code() {
    let emulator = Emulator::start();
    let home = Home::new(&emulator);
    emulator.launch("us-east-1", common::Spec::new("web", "running", "optional"));
    emulator.fault(json!({
        "service": "sts", "action": "GetCallerIdentity", "access_key": BAD_ACCESS_KEY,
        "status": 403, "code": "ExpiredToken", "message": "The security token included in the request is expired"
    }));
    let file = |name: &str, text: &str| {
        let path = home.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let malformed = file("malformed.toml", "[regions\ninclude = []\n");
    let unknown_key = file("unknown.toml", "[regions]\ninclude = []\nexlude = []\n");
    let wrong_type = file("type.toml", "[accounts]\ninclude = \"111111111111\"\n");
    let bad_account = file("account.toml", "[accounts]\nexclude = [\"11111111111\"]\n");
    let bad_ou = file("ou.toml", "[organizational_units]\ninclude = [\"ou-x\"]\n");
    let excluded_typo = file("typo.toml", "[regions]\nexclude = [\"eu-wst-1\"]\n");
    let header = r#"{"event":"run","run_id":"r1","format_version":1,"time":"t","caller_arn":"a"}"#;
    let truncated = file("truncated.jsonl", &format!("{header}\n{{\"event\":\"attem"));
    let future =
        file("future.jsonl", &header.replace("\"format_version\":1", "\"format_version\":7"));
    let not_journal = file("notes.jsonl", "remember the milk\n");
    let missing = home.path().join("missing.jsonl").to_str().unwrap().to_owned();
    // A credential process that fails loudly, over several lines of its own.
    let mut config =
        std::fs::OpenOptions::new().append(true).open(home.path().join("config")).unwrap();
    std::io::Write::write_all(
        &mut config,
        format!(
            "\n[profile broken]\nregion = us-east-1\nendpoint_url = {}\ncredential_process = \
             /bin/sh -c \"echo first >&2; echo second >&2; exit 3\"\n",
            emulator.url
        )
        .as_bytes(),
    )
    .unwrap();

    let p = ["--profile", PROFILE];
    let cases = [
        case(
            "malformed TOML",
            &[&p[..], &["--config", &malformed]].concat(),
            &["malformed.toml", "line 1"],
            2,
        ),
        case(
            "unknown key",
            &[&p[..], &["--config", &unknown_key]].concat(),
            &["unknown.toml", "line 3", "exlude"],
            2,
        ),
        case(
            "wrong type",
            &[&p[..], &["--config", &wrong_type]].concat(),
            &["type.toml", "line 2"],
            2,
        ),
        case(
            "bad account id",
            &[&p[..], &["--config", &bad_account]].concat(),
            &["account.toml", "accounts.exclude", "12-digit"],
            2,
        ),
        case(
            "bad OU id",
            &[&p[..], &["--config", &bad_ou]].concat(),
            &["ou.toml", "organizational_units.include"],
            2,
        ),
        case(
            "missing config",
            &[&p[..], &["--config", "/nonexistent/x.toml"]].concat(),
            &["/nonexistent/x.toml"],
            2,
        ),
        case(
            "region that does not exist",
            &[&p[..], &["--region", "mars-north-1", "--dry-run"]].concat(),
            &["`mars-north-1`", "--region"],
            2,
        ),
        case(
            "misspelt excluded region",
            &[&p[..], &["--config", &excluded_typo, "--yes"]].concat(),
            &["`eu-wst-1`", "typo.toml, [regions] exclude"],
            2,
        ),
        case("malformed region", &[&p[..], &["--region", "eu-west"]].concat(), &["`eu-west`"], 2),
        case("nonexistent profile", &["--profile", "ghost"], &["`ghost`", "config"], 2),
        case("failing credential process", &["--profile", "broken"], &["`broken`"], 3),
        case("expired credentials", &["--profile", BAD_PROFILE], &["ExpiredToken", "revoked"], 3),
        case("no terminal without --yes", &p, &["not a terminal", "--yes"], 2),
        case(
            "missing journal",
            &[&["revert", missing.as_str()][..], &p[..]].concat(),
            &["missing.jsonl", "cannot be read"],
            2,
        ),
        case(
            "truncated journal",
            &[&["revert", truncated.as_str()][..], &p[..]].concat(),
            &["truncated.jsonl", "line 2", "truncated"],
            2,
        ),
        case(
            "journal of another version",
            &[&["revert", future.as_str()][..], &p[..]].concat(),
            &["future.jsonl", "version 7"],
            2,
        ),
        case(
            "not a journal",
            &[&["revert", not_journal.as_str()][..], &p[..]].concat(),
            &["notes.jsonl", "line 1"],
            2,
        ),
        case("unknown flag", &["--profil", PROFILE], &["--profil"], 2),
    ];

    for case in cases {
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let run = home.run(&args);
        let stderr = run.stderr.trim();
        assert_eq!(run.code, case.code, "{}: exit code\n{stderr}", case.name);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{}: {stderr}",
            case.name
        );
        for expected in &case.says {
            assert!(stderr.contains(expected), "{}: expected {expected:?} in\n{stderr}", case.name);
        }
        if case.name != "unknown flag" {
            assert_eq!(stderr.lines().count(), 1, "{}: one line on stderr\n{stderr}", case.name);
            assert!(
                stderr.lines().last().unwrap().starts_with("error:"),
                "{}: {stderr}",
                case.name
            );
        }
    }
    assert_eq!(emulator.requests("ec2:ModifyInstanceMetadataOptions"), 0, "nothing was changed");
}
