//! Enforcement: sets HttpTokens on every confirmed instance, journalling each attempt right
//! before its request leaves and its outcome right after. The [`Pacer`] decides how many
//! changes are in flight; Ctrl-C stops new ones while those in flight finish.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
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
use crate::pacer::Pacer;
use crate::plan::Change;
use crate::progress::Progress;

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
    pub pacer: &'a Arc<Pacer>,
    pub progress: &'a Progress,
}

/// Why enforcement stopped early, if it did for a reason other than Ctrl-C.
#[derive(Debug)]
pub struct JournalFailure(pub std::io::Error);

impl Enforcer<'_> {
    /// Applies every change; returns the outcomes sorted by account, region and instance.
    pub async fn run(&self, mut changes: Vec<Change>) -> (Vec<Outcome>, Option<JournalFailure>) {
        let broken = AtomicBool::new(false);
        let first_error = std::sync::Mutex::new(None);
        let mut clients: BTreeMap<(String, String), Ec2> = BTreeMap::new();
        for change in &changes {
            let key = (change.account_id.clone(), change.region.clone());
            if let (false, Some(config)) =
                (clients.contains_key(&key), self.accounts.get(&change.account_id))
            {
                let ec2 = Ec2::new(config, self.pacer, &change.account_id, &change.region);
                clients.insert(key, ec2);
            }
        }
        // Ctrl-C here leaves every change not attempted, as it would a moment later.
        let _ = self.interrupt.race(refresh_before(&mut changes, &clients, self.pacer)).await;

        // One stream for the whole sweep, its window twice the global cap: wide enough to keep
        // every place in flight busy, bounded whatever the size of the sweep, and spread over
        // as many account-regions (so token buckets) as it can hold.
        let (broken_ref, error_ref) = (&broken, &first_error);
        let clients = &clients;
        let mut outcomes: Vec<Outcome> = stream::iter(interleave(changes))
            .map(|change| {
                let key = (change.account_id.clone(), change.region.clone());
                let span = info_span!("enforce", account = %key.0, region = %key.1);
                self.apply_one(clients.get(&key), change, broken_ref, error_ref).instrument(span)
            })
            .buffer_unordered(self.pacer.global_cap() * 2)
            .collect()
            .await;

        outcomes.sort_by(|a, b| sort_key(&a.change).cmp(&sort_key(&b.change)));
        let error = first_error.into_inner().unwrap_or_else(|p| p.into_inner());
        (outcomes, error.map(JournalFailure))
    }

    async fn apply_one(
        &self,
        ec2: Option<&Ec2>,
        change: Change,
        broken: &AtomicBool,
        first_error: &std::sync::Mutex<Option<std::io::Error>>,
    ) -> Outcome {
        let Some(ec2) = ec2 else { return not_attempted(change) };
        let record_failure = |e: std::io::Error| {
            broken.store(true, Ordering::SeqCst);
            first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
        };
        let ready = || {
            if self.interrupt.is_set() || broken.load(Ordering::SeqCst) {
                return false;
            }
            match self.journal.attempt(&change) {
                Ok(()) => true,
                Err(e) => {
                    record_failure(e);
                    false
                }
            }
        };
        let sent = ec2.set_tokens_when(&change.instance_id, &change.http_tokens_after, ready).await;
        let result = match sent {
            None => return not_attempted(change),
            Some(Ok(ChangeState::Applied)) => ChangeResult::Applied,
            Some(Ok(ChangeState::Pending)) => ChangeResult::Pending,
            Some(Err(error)) => ChangeResult::Failed(error),
        };
        log_result(&change, &result);
        self.progress.changed(matches!(result, ChangeResult::Failed(_)));
        if let Err(e) = self.record(&change, &result) {
            record_failure(e);
        }
        Outcome { change, result }
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

/// Reads the instances again right before they are changed, so that each attempt journals the
/// value it replaces now rather than at the scan: the confirmation may have waited, and
/// someone may have changed an instance meanwhile. A revert then restores exactly what was
/// there; an instance already at the new value is journalled as such, so no revert touches it.
/// Where an account-region cannot be read, the scan's values stand.
async fn refresh_before(
    changes: &mut [Change],
    clients: &BTreeMap<(String, String), Ec2>,
    pacer: &Pacer,
) {
    let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (index, change) in changes.iter().enumerate() {
        let key = (change.account_id.clone(), change.region.clone());
        groups.entry(key).or_default().push(index);
    }
    let ids_of = |indices: &[usize]| -> Vec<String> {
        indices.iter().map(|&i| changes[i].instance_id.clone()).collect()
    };
    let reads: Vec<_> = stream::iter(groups)
        .filter_map(|(key, indices)| {
            let ec2 = clients.get(&key);
            let ids = ids_of(&indices);
            std::future::ready(
                ec2.map(|ec2| async move { (key, indices, ec2.instances_by_id(&ids).await) }),
            )
        })
        .buffer_unordered(pacer.global_cap())
        .collect()
        .await;
    for ((account, region), indices, read) in reads {
        let found = match read {
            Ok(records) => records,
            Err(error) => {
                warn!(%account, %region, %error, "cannot read instances again before changing");
                continue;
            }
        };
        for index in indices {
            let change = &mut changes[index];
            let Some(now) = found.get(&change.instance_id).and_then(|r| r.http_tokens.as_ref())
            else {
                continue;
            };
            if *now != change.http_tokens_before {
                info!(
                    instance = %change.instance_id, was = %change.http_tokens_before, now = %now,
                    "HttpTokens changed since the scan"
                );
                change.http_tokens_before.clone_from(now);
            }
        }
    }
}

/// The changes taken round-robin from each account-region in turn, each pair's in their
/// order. Grouped by pair instead, a window of them would hold one or two pairs at a time,
/// each bound by its bucket's 5 modifications a second, while every other pair waited.
fn interleave(changes: Vec<Change>) -> Vec<Change> {
    let total = changes.len();
    let mut pairs: BTreeMap<(String, String), VecDeque<Change>> = BTreeMap::new();
    for change in changes {
        let key = (change.account_id.clone(), change.region.clone());
        pairs.entry(key).or_default().push_back(change);
    }
    let mut order = Vec::with_capacity(total);
    while !pairs.is_empty() {
        pairs.retain(|_, queue| {
            order.extend(queue.pop_front());
            !queue.is_empty()
        });
    }
    order
}

fn not_attempted(change: Change) -> Outcome {
    Outcome { change, result: ChangeResult::NotAttempted }
}

fn sort_key(change: &Change) -> (&str, &str, &str) {
    (&change.account_id, &change.region, &change.instance_id)
}

fn log_result(change: &Change, result: &ChangeResult) {
    let instance = &change.instance_id;
    match result {
        ChangeResult::Failed(error) => warn!(%instance, %error, "modification failed"),
        other => {
            info!(%instance, result = ?other, tokens = %change.http_tokens_after, "HttpTokens set")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(account: &str, region: &str, instance: &str) -> Change {
        Change {
            account_id: account.into(),
            region: region.into(),
            instance_id: instance.into(),
            name: None,
            http_tokens_before: "optional".into(),
            http_tokens_after: "required".into(),
        }
    }

    #[test]
    fn changes_alternate_between_account_regions_until_each_runs_out() {
        let changes = vec![
            change("1", "eu-west-1", "i-a1"),
            change("1", "eu-west-1", "i-a2"),
            change("1", "eu-west-1", "i-a3"),
            change("1", "us-east-1", "i-b1"),
            change("2", "eu-west-1", "i-c1"),
            change("2", "eu-west-1", "i-c2"),
        ];
        let order: Vec<String> = interleave(changes).into_iter().map(|c| c.instance_id).collect();
        assert_eq!(order, ["i-a1", "i-b1", "i-c1", "i-a2", "i-c2", "i-a3"]);
        assert!(interleave(Vec::new()).is_empty());
    }
}
