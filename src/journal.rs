//! The audit journal: one JSON line per event, appended and written through at once, so that
//! a crash never hides a change. It never holds credentials.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::aws_error::ApiError;
use crate::ec2::InstanceRecord;
use crate::plan::Change;

/// The journal format version, bumped when a field changes meaning.
pub const FORMAT_VERSION: u32 = 1;

/// An open journal file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    run_id: String,
    caller_arn: String,
}

/// The first line of a run: who ran what.
#[derive(Debug, Serialize)]
pub struct RunHeader<'a> {
    /// `enforce` for a sweep, `revert` for an undo.
    pub operation: &'a str,
    /// For a revert: the run it undoes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverts_run_id: Option<&'a str>,
    pub mode: &'a str,
    pub caller_account: &'a str,
    pub accounts: Vec<&'a str>,
    pub regions: Vec<&'a str>,
    pub changes_planned: usize,
    pub options: RunOptions<'a>,
}

/// The options a run was started with, for the audit trail.
#[derive(Debug, Serialize)]
pub struct RunOptions<'a> {
    pub profile: Option<&'a str>,
    pub role_name: &'a str,
    pub concurrency: usize,
    pub timeout_seconds: u64,
    pub wait_seconds: Option<u64>,
}

impl<'a> RunOptions<'a> {
    /// The options of `settings` worth recording.
    pub fn of(settings: &'a crate::settings::Settings) -> Self {
        RunOptions {
            profile: settings.profile.as_deref(),
            role_name: &settings.assume_role.role_name,
            concurrency: settings.concurrency,
            timeout_seconds: settings.timeout.as_secs(),
            wait_seconds: settings.wait.map(|w| w.as_secs()),
        }
    }
}

#[derive(Serialize)]
struct Record<'a, T: Serialize> {
    event: &'a str,
    time: String,
    run_id: &'a str,
    caller_arn: &'a str,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct Header<'a> {
    format_version: u32,
    tool_version: &'static str,
    #[serde(flatten)]
    run: &'a RunHeader<'a>,
}

#[derive(Serialize)]
struct Attempt<'a> {
    account_id: &'a str,
    region: &'a str,
    instance_id: &'a str,
    http_tokens_before: &'a str,
    http_tokens_after: &'a str,
}

#[derive(Serialize)]
struct ResultRecord<'a> {
    #[serde(flatten)]
    attempt: Attempt<'a>,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ApiError>,
}

impl Journal {
    /// Opens (creating it and its directory if needed) the journal for appending.
    pub fn open(path: &Path, run_id: &str, caller_arn: &str) -> std::io::Result<Journal> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Journal {
            path: path.to_owned(),
            file: Mutex::new(file),
            run_id: run_id.to_owned(),
            caller_arn: caller_arn.to_owned(),
        })
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records the start of a run.
    pub fn header(&self, run: &RunHeader<'_>) -> std::io::Result<()> {
        let header =
            Header { format_version: FORMAT_VERSION, tool_version: env!("CARGO_PKG_VERSION"), run };
        self.append("run", header, Durability::Flushed)
    }

    /// Records a change about to be attempted; written to disk (not only to the operating
    /// system) before the API call, so that not even a power loss hides a change.
    pub fn attempt(&self, change: &Change) -> std::io::Result<()> {
        self.append("attempt", attempt_of(change), Durability::OnDisk)
    }

    /// Records how an attempt ended: `applied`, `pending` or `failed` with the AWS error.
    pub fn outcome(
        &self,
        change: &Change,
        outcome: &str,
        error: Option<&ApiError>,
    ) -> std::io::Result<()> {
        let record = ResultRecord { attempt: attempt_of(change), outcome, error };
        self.append("result", record, Durability::Flushed)
    }

    /// Records what an instance holds after the run, as read back from EC2.
    pub fn verified(
        &self,
        change: &Change,
        current: Option<&InstanceRecord>,
    ) -> std::io::Result<()> {
        let found = Verified {
            account_id: &change.account_id,
            region: &change.region,
            instance_id: &change.instance_id,
            http_tokens: current
                .map_or("missing", |r| r.http_tokens.as_deref().unwrap_or("unknown")),
            metadata_state: current.and_then(|r| r.metadata_state.as_deref()),
        };
        self.append("verify", found, Durability::Flushed)
    }

    fn append(
        &self,
        event: &str,
        body: impl Serialize,
        durability: Durability,
    ) -> std::io::Result<()> {
        let record = Record {
            event,
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            run_id: &self.run_id,
            caller_arn: &self.caller_arn,
            body,
        };
        let mut line = serde_json::to_vec(&record)?;
        line.push(b'\n');
        // One write per record: with O_APPEND the line lands whole even if the process dies.
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(&line)?;
        match durability {
            Durability::Flushed => Ok(()),
            Durability::OnDisk => file.sync_data(),
        }
    }
}

/// How far a record must have gone when `append` returns. Every record reaches the operating
/// system (a `File` has no buffer of its own), so a crash of the process loses none; an
/// attempt also reaches the disk, since a lost attempt would hide a change that was made.
#[derive(Clone, Copy)]
enum Durability {
    Flushed,
    OnDisk,
}

#[derive(Serialize)]
struct Verified<'a> {
    account_id: &'a str,
    region: &'a str,
    instance_id: &'a str,
    /// The value read back, or `missing` when the instance no longer exists.
    http_tokens: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata_state: Option<&'a str>,
}

fn attempt_of(change: &Change) -> Attempt<'_> {
    Attempt {
        account_id: &change.account_id,
        region: &change.region,
        instance_id: &change.instance_id,
        http_tokens_before: &change.http_tokens_before,
        http_tokens_after: &change.http_tokens_after,
    }
}

/// One record as read back from a journal; fields absent from an event are `None`.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub event: String,
    pub run_id: String,
    pub format_version: Option<u32>,
    pub operation: Option<String>,
    /// On the header of a revert: the run it undoes.
    pub reverts_run_id: Option<String>,
    pub account_id: Option<String>,
    pub region: Option<String>,
    pub instance_id: Option<String>,
    pub http_tokens_before: Option<String>,
    pub http_tokens_after: Option<String>,
    pub outcome: Option<String>,
    /// On `verify` records: the value read back.
    pub http_tokens: Option<String>,
}

/// The records of one run, header first.
#[derive(Debug, Clone)]
pub struct Run {
    pub run_id: String,
    pub operation: String,
    /// For a revert: the run it undoes.
    pub reverts: Option<String>,
    pub entries: Vec<Entry>,
}

/// Why a journal cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(pub String);

/// Reads every run of a journal file.
pub fn read(path: &Path) -> Result<Vec<Run>, ReadError> {
    let bytes = std::fs::read(path).map_err(|e| ReadError(format!("cannot be read ({e})")))?;
    parse(&bytes)
}

/// Parses journal bytes; any line that is not a record of this format is an error naming it.
pub fn parse(bytes: &[u8]) -> Result<Vec<Run>, ReadError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ReadError("is not UTF-8 text, so not an imds-sweep journal".into()))?;
    let mut runs: Vec<Run> = Vec::new();
    for (index, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let number = index + 1;
        let entry: Entry = serde_json::from_str(line).map_err(|e| {
            let what = if e.is_eof() {
                "is cut short (the file is truncated)"
            } else {
                "is not a journal record"
            };
            ReadError(format!("line {number} {what}"))
        })?;
        if entry.event == "run" {
            match entry.format_version {
                Some(FORMAT_VERSION) => {}
                other => {
                    let found = other
                        .map_or_else(|| "without a version".to_owned(), |v| format!("version {v}"));
                    return Err(ReadError(format!(
                        "line {number}: journal format {found} is not the one this imds-sweep \
                         reads (version {FORMAT_VERSION}); use the imds-sweep that wrote it"
                    )));
                }
            }
            let operation = entry.operation.clone().unwrap_or_else(|| "enforce".into());
            let run_id = entry.run_id.clone();
            let reverts = entry.reverts_run_id.clone();
            runs.push(Run { run_id, operation, reverts, entries: vec![entry] });
            continue;
        }
        match runs.iter_mut().rev().find(|r| r.run_id == entry.run_id) {
            Some(run) => run.entries.push(entry),
            None => {
                return Err(ReadError(format!(
                    "line {number} belongs to no run (its header is missing)"
                )));
            }
        }
    }
    if runs.is_empty() {
        return Err(ReadError("holds no run".into()));
    }
    Ok(runs)
}

/// A new journal file under the user's state directory, named by time and run id.
pub fn default_path(run_id: &str) -> Option<PathBuf> {
    let base = dirs::state_dir().or_else(dirs::data_local_dir)?;
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string().replace(':', "");
    Some(base.join("imds-sweep").join(format!("journal-{stamp}-{run_id}.jsonl")))
}

/// A short identifier for this run, unique enough to tell runs apart in one journal.
pub fn new_run_id() -> String {
    let nanos =
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:012x}", (nanos as u64) ^ (u64::from(std::process::id()) << 40))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_reader(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            if let Err(e) = parse(&bytes) {
                proptest::prop_assert!(!e.0.contains('\n'));
            }
        }

        #[test]
        fn json_shaped_lines_never_panic_the_reader(text in "(\\{|\\}|\"event\"|\"run\"|\"run_id\"|\"format_version\"|:|,|1|\"r\"|\"attempt\"|\n){0,80}") {
            if let Err(e) = parse(text.as_bytes()) {
                proptest::prop_assert!(!e.0.contains('\n'));
            }
        }
    }

    #[test]
    fn damaged_journals_are_refused_with_the_line() {
        let header = r#"{"event":"run","run_id":"r1","format_version":1}"#;
        let attempt = r#"{"event":"attempt","run_id":"r1","instance_id":"i-1"}"#;
        let ok = format!("{header}\n{attempt}\n");
        let runs = parse(ok.as_bytes()).expect("valid");
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].entries.len(), 2);
        assert_eq!(runs[0].operation, "enforce");

        let truncated = format!("{header}\n{}", &attempt[..20]);
        assert!(parse(truncated.as_bytes()).expect_err("truncated").0.contains("line 2"));
        let future = header.replace("\"format_version\":1", "\"format_version\":9");
        assert!(parse(future.as_bytes()).expect_err("version").0.contains("version 9"));
        assert!(parse(attempt.as_bytes()).expect_err("orphan").0.contains("no run"));
        assert!(parse(b"").is_err());
        assert!(parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn records_are_json_lines_with_the_change_and_no_secrets() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested").join("journal.jsonl");
        let journal =
            Journal::open(&path, "run1", "arn:aws:iam::123456789012:user/alice").expect("open");
        let change = Change {
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
            instance_id: "i-1".into(),
            name: None,
            http_tokens_before: "optional".into(),
            http_tokens_after: "required".into(),
        };
        journal.attempt(&change).expect("attempt");
        journal.outcome(&change, "pending", None).expect("outcome");

        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "attempt");
        assert_eq!(lines[1]["event"], "result");
        assert_eq!(lines[1]["outcome"], "pending");
        assert_eq!(lines[1]["http_tokens_before"], "optional");
        assert_eq!(lines[1]["caller_arn"], "arn:aws:iam::123456789012:user/alice");
        assert_eq!(lines[1]["instance_id"], "i-1");
    }
}
