//! The audit journal: one JSON line per event, appended and written through at once, so that
//! a crash never hides a change. It never holds credentials.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use crate::aws_error::ApiError;
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
    pub mode: &'a str,
    pub caller_account: &'a str,
    pub accounts: Vec<&'a str>,
    pub regions: Vec<&'a str>,
    pub changes_planned: usize,
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
    http_tokens_after: &'static str,
}

#[derive(Serialize)]
struct Result<'a> {
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
        let header = Header {
            format_version: FORMAT_VERSION,
            tool_version: env!("CARGO_PKG_VERSION"),
            run,
        };
        self.append("run", header)
    }

    /// Records a change about to be attempted; written before the API call.
    pub fn attempt(&self, change: &Change) -> std::io::Result<()> {
        self.append("attempt", attempt_of(change))
    }

    /// Records how an attempt ended: `applied`, `pending` or `failed` with the AWS error.
    pub fn outcome(
        &self,
        change: &Change,
        outcome: &str,
        error: Option<&ApiError>,
    ) -> std::io::Result<()> {
        self.append(
            "result",
            Result {
                attempt: attempt_of(change),
                outcome,
                error,
            },
        )
    }

    fn append(&self, event: &str, body: impl Serialize) -> std::io::Result<()> {
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
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(&line)?;
        file.flush()
    }
}

fn attempt_of(change: &Change) -> Attempt<'_> {
    Attempt {
        account_id: &change.account_id,
        region: &change.region,
        instance_id: &change.instance_id,
        http_tokens_before: &change.http_tokens_before,
        http_tokens_after: "required",
    }
}

/// A new journal file under the user's state directory, named by time and run id.
pub fn default_path(run_id: &str) -> Option<PathBuf> {
    let base = dirs::state_dir().or_else(dirs::data_local_dir)?;
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(':', "");
    Some(
        base.join("imds-sweep")
            .join(format!("journal-{stamp}-{run_id}.jsonl")),
    )
}

/// A short identifier for this run, unique enough to tell runs apart in one journal.
pub fn new_run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:012x}",
        (nanos as u64) ^ (u64::from(std::process::id()) << 40)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        journal.attempt(&change).expect("attempt");
        journal.outcome(&change, "pending", None).expect("outcome");

        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "attempt");
        assert_eq!(lines[1]["event"], "result");
        assert_eq!(lines[1]["outcome"], "pending");
        assert_eq!(lines[1]["http_tokens_before"], "optional");
        assert_eq!(
            lines[1]["caller_arn"],
            "arn:aws:iam::123456789012:user/alice"
        );
        assert_eq!(lines[1]["instance_id"], "i-1");
    }
}
