//! Verification after enforcement: every instance the sweep tried to change is read back, so
//! the report and the journal say what EC2 holds, not what the calls answered. A call that
//! failed (a timeout, a lost answer) may still have taken effect, and is recorded as such.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use futures_util::{StreamExt, stream};
use serde::Serialize;
use tracing::{info, warn};

use crate::ec2::{Ec2, InstanceRecord};
use crate::enforce::{ChangeResult, Outcome};
use crate::journal::Journal;
use crate::pacer::Pacer;

/// How often `--wait` polls instances whose change is still pending.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What verification found besides the instances that are as intended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// Instances read back with the intended HttpTokens.
    pub verified: usize,
    /// Instances whose call failed but whose HttpTokens is as intended: counted as succeeded.
    pub recovered: usize,
    /// Instances that do not hold the intended value after a successful call, or are gone.
    pub mismatches: Vec<Mismatch>,
    /// Running instances still reporting `pending` when `--wait` gave up.
    pub still_pending: Vec<PendingChange>,
    /// Account-regions that could not be read back, with the error.
    pub unreadable: Vec<String>,
}

/// A running instance whose change EC2 had not applied when `--wait` gave up.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PendingChange {
    pub account_id: String,
    pub region: String,
    pub instance_id: String,
}

/// An instance not in the state the sweep meant to leave it in.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub account_id: String,
    pub region: String,
    pub instance_id: String,
    pub found: String,
}

/// Reads back every attempted change, updates `outcomes` where a failed call took effect,
/// and journals what was found. With `wait`, polls pending changes until applied.
pub async fn verify(
    outcomes: &mut [Outcome],
    configs: &BTreeMap<String, SdkConfig>,
    pacer: &Arc<Pacer>,
    journal: &Journal,
    wait: Option<Duration>,
) -> Verification {
    let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (index, outcome) in outcomes.iter().enumerate() {
        if !matches!(outcome.result, ChangeResult::NotAttempted) {
            let change = &outcome.change;
            groups
                .entry((change.account_id.clone(), change.region.clone()))
                .or_default()
                .push(index);
        }
    }

    // Read the account-regions back as many at a time as calls may be in flight (each has one
    // at a time, and holds a client), then check in order. With --wait they all poll against one deadline, so that a sweep of many
    // pairs waits --wait-timeout in all, not that long for each batch of pairs.
    let deadline = wait.map(|w| Instant::now() + w);
    let reads: Vec<_> = stream::iter(groups)
        .map(|((account, region), indices)| {
            let ids: Vec<String> =
                indices.iter().map(|&i| outcomes[i].change.instance_id.clone()).collect();
            let config = configs.get(&account);
            async move {
                let found = match config {
                    Some(config) => {
                        let ec2 = Ec2::new(config, pacer, &account, &region);
                        Some(read_back(&ec2, &ids, deadline).await)
                    }
                    None => None,
                };
                (account, region, indices, found)
            }
        })
        .buffer_unordered(pacer.global_cap())
        .collect()
        .await;

    let mut verification = Verification::default();
    for (account, region, indices, found) in reads {
        let found = match found {
            Some(Ok(found)) => found,
            Some(Err(error)) => {
                warn!(%account, %region, %error, "cannot read instances back");
                verification.unreadable.push(format!("{account} {region}: {error}"));
                continue;
            }
            None => continue,
        };
        for index in indices {
            let outcome = &mut outcomes[index];
            let current = found.get(&outcome.change.instance_id);
            check(outcome, current, wait.is_some(), &mut verification);
            if let Err(e) = journal.verified(&outcome.change, current) {
                warn!(error = %e, "cannot journal a verification");
            }
        }
    }
    verification.mismatches.sort_by(|a, b| {
        (&a.account_id, &a.region, &a.instance_id).cmp(&(&b.account_id, &b.region, &b.instance_id))
    });
    verification.unreadable.sort();
    verification.still_pending.sort();
    verification
}

/// Reads the instances; with a deadline, again until none of the running ones is pending.
async fn read_back(
    ec2: &Ec2,
    ids: &[String],
    deadline: Option<Instant>,
) -> Result<BTreeMap<String, InstanceRecord>, crate::aws_error::ApiError> {
    loop {
        let found = ec2.instances_by_id(ids).await?;
        let pending = found.values().filter(|r| is_pending(r)).count();
        match deadline {
            Some(deadline) if pending > 0 && Instant::now() < deadline => {
                info!(pending, "waiting for metadata changes to be applied");
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            _ => return Ok(found),
        }
    }
}

fn is_pending(record: &InstanceRecord) -> bool {
    record.state == "running" && record.metadata_state.as_deref() == Some("pending")
}

fn check(
    outcome: &mut Outcome,
    current: Option<&InstanceRecord>,
    waited: bool,
    verification: &mut Verification,
) {
    let change = &outcome.change;
    let intended = Some(change.http_tokens_after.as_str());
    let holds = current.is_some_and(|r| r.http_tokens.as_deref() == intended);
    let succeeded = matches!(outcome.result, ChangeResult::Applied | ChangeResult::Pending);
    match (succeeded, holds) {
        (true, true) => verification.verified += 1,
        (false, true) => {
            info!(instance = %change.instance_id, "a failed call took effect after all");
            outcome.result = ChangeResult::Applied;
            verification.recovered += 1;
            verification.verified += 1;
        }
        (true, false) => verification.mismatches.push(Mismatch {
            account_id: change.account_id.clone(),
            region: change.region.clone(),
            instance_id: change.instance_id.clone(),
            found: current
                .map(|r| format!("HttpTokens={}", r.http_tokens.as_deref().unwrap_or("unknown")))
                .unwrap_or_else(|| "the instance no longer exists".into()),
        }),
        (false, false) => {}
    }
    // Without --wait, pending is the normal state right after a change.
    if waited && succeeded && current.is_some_and(is_pending) {
        verification.still_pending.push(PendingChange {
            account_id: change.account_id.clone(),
            region: change.region.clone(),
            instance_id: change.instance_id.clone(),
        });
    }
}
