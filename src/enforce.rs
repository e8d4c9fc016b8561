//! Enforcement: sets HttpTokens=required on every confirmed instance, journalling each
//! attempt before the call and its outcome after it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_config::SdkConfig;
use futures_util::StreamExt;
use futures_util::stream;
use serde::Serialize;
use tracing::{Instrument, info, info_span, warn};

use crate::aws_error::ApiError;
use crate::ec2::{ChangeState, Ec2};
use crate::interrupt::Interrupt;
use crate::journal::Journal;
use crate::plan::Change;

/// How one change ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ChangeResult {
    Applied,
    Pending,
    Failed(ApiError),
    /// Not tried: the run was interrupted or the journal could not be written first.
    NotAttempted,
}

/// A change with its result.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub change: Change,
    pub result: ChangeResult,
}

/// What enforcement needs besides the changes themselves.
pub struct Enforcer<'a> {
    /// Credentials per account id.
    pub accounts: &'a BTreeMap<String, SdkConfig>,
    pub journal: &'a Journal,
    pub interrupt: &'a Interrupt,
    /// Account-regions worked on at once; within one, changes go one at a time.
    pub concurrency: usize,
}

/// Why enforcement stopped early, if it did for a reason other than Ctrl-C.
#[derive(Debug)]
pub struct JournalFailure(pub std::io::Error);

impl Enforcer<'_> {
    /// Applies every change; returns the outcomes in the order of `changes`.
    pub async fn run(&self, changes: Vec<Change>) -> (Vec<Outcome>, Option<JournalFailure>) {
        let journal_broken = AtomicBool::new(false);
        let journal_error = std::sync::Mutex::new(None);
        let mut groups: BTreeMap<(String, String), Vec<Change>> = BTreeMap::new();
        for change in changes {
            let key = (change.account_id.clone(), change.region.clone());
            groups.entry(key).or_default().push(change);
        }

        let results: Vec<Vec<Outcome>> = stream::iter(groups)
            .map(|((account, region), changes)| {
                let span = info_span!("enforce", %account, %region);
                self.run_group(account, region, changes, &journal_broken, &journal_error)
                    .instrument(span)
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;

        let mut outcomes: Vec<Outcome> = results.into_iter().flatten().collect();
        outcomes.sort_by(|a, b| sort_key(&a.change).cmp(&sort_key(&b.change)));
        let error = journal_error
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        (outcomes, error.map(JournalFailure))
    }

    async fn run_group(
        &self,
        account: String,
        region: String,
        changes: Vec<Change>,
        journal_broken: &AtomicBool,
        journal_error: &std::sync::Mutex<Option<std::io::Error>>,
    ) -> Vec<Outcome> {
        let Some(config) = self.accounts.get(&account) else {
            return changes.into_iter().map(not_attempted).collect();
        };
        let ec2 = Ec2::new(config, &account, &region);
        let mut outcomes = Vec::with_capacity(changes.len());
        for change in changes {
            if self.interrupt.is_set() || journal_broken.load(Ordering::SeqCst) {
                outcomes.push(not_attempted(change));
                continue;
            }
            if let Err(e) = self.journal.attempt(&change) {
                journal_broken.store(true, Ordering::SeqCst);
                journal_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e);
                outcomes.push(not_attempted(change));
                continue;
            }
            let result = match ec2.require_tokens(&change.instance_id).await {
                Ok(ChangeState::Applied) => ChangeResult::Applied,
                Ok(ChangeState::Pending) => ChangeResult::Pending,
                Err(error) => ChangeResult::Failed(error),
            };
            log_result(&change, &result);
            if let Err(e) = self.record(&change, &result) {
                journal_broken.store(true, Ordering::SeqCst);
                journal_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e);
            }
            outcomes.push(Outcome { change, result });
        }
        outcomes
    }

    fn record(&self, change: &Change, result: &ChangeResult) -> std::io::Result<()> {
        match result {
            ChangeResult::Applied => self.journal.outcome(change, "applied", None),
            ChangeResult::Pending => self.journal.outcome(change, "pending", None),
            ChangeResult::Failed(error) => self.journal.outcome(change, "failed", Some(error)),
            ChangeResult::NotAttempted => Ok(()),
        }
    }
}

fn not_attempted(change: Change) -> Outcome {
    Outcome {
        change,
        result: ChangeResult::NotAttempted,
    }
}

fn sort_key(change: &Change) -> (&str, &str, &str) {
    (&change.account_id, &change.region, &change.instance_id)
}

fn log_result(change: &Change, result: &ChangeResult) {
    let instance = &change.instance_id;
    match result {
        ChangeResult::Failed(error) => warn!(%instance, %error, "modification failed"),
        other => info!(%instance, result = ?other, "HttpTokens set to required"),
    }
}
