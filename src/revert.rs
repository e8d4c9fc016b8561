//! Undo: restores, for exactly the instances a run changed, the HttpTokens value they had
//! before, and nothing else. Instances changed since by someone else are left alone, and
//! regions where the account enforces IMDSv2 are reported once instead of failing per instance.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use aws_config::SdkConfig;
use futures_util::{StreamExt, stream};
use serde::Serialize;
use tabled::settings::Style;
use tabled::{Table, Tabled};
use tracing::info;

use crate::cli::RevertArgs;
use crate::ec2::Ec2;
use crate::error::Error;
use crate::exit::ExitStatus;
use crate::interrupt::Interrupt;
use crate::journal::{self, Run, RunHeader, RunOptions};
use crate::organization::OrgAccount;
use crate::output::Output;
use crate::pacer::Pacer;
use crate::plan::Change;
use crate::session::Session;
use crate::settings::Settings;
use crate::{apply, confirm, session, targets};

/// An instance the run may have changed, as its journal tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub account_id: String,
    pub region: String,
    pub instance_id: String,
    pub before: String,
    pub after: String,
}

/// What the revert will do, shown before the confirmation.
#[derive(Debug, Serialize)]
pub struct RevertPlan {
    pub kind: &'static str,
    pub journal: PathBuf,
    pub run_id: String,
    pub changes: Vec<Change>,
    pub left_alone: Vec<LeftAlone>,
    /// Instances an earlier revert of the same run already restored: nothing left to do.
    pub already_restored: Vec<LeftAlone>,
}

/// An instance by account, region and id.
type Key = (String, String, String);

/// An instance (or a whole account-region) the revert will not touch, and why.
#[derive(Debug, Clone, Serialize, Tabled)]
pub struct LeftAlone {
    #[tabled(rename = "account")]
    pub account_id: String,
    pub region: String,
    #[tabled(rename = "instance")]
    pub instance_id: String,
    pub reason: String,
}

/// Runs `imds-sweep revert JOURNAL`.
pub async fn run(
    settings: &Settings,
    args: &RevertArgs,
    interrupt: &Interrupt,
    out: Output,
) -> Result<ExitStatus, Error> {
    let path = &args.journal_file;
    let read_error = |message: String| Error::JournalRead { path: path.clone(), message };
    let runs = journal::read(path).map_err(|e| read_error(e.0))?;
    let run = pick(&runs, args.run_id.as_deref()).map_err(read_error)?;
    let candidates = candidates(run);
    if candidates.is_empty() {
        out.notice(&format!("Run {} changed no instance: nothing to revert.", run.run_id));
        return Ok(ExitStatus::Success);
    }
    let restored = restored_by_reverts(&runs, &run.run_id);

    let pacer = Pacer::new(settings.concurrency);
    let earlier = Earlier { run_id: &run.run_id, restored: &restored };
    let prepare = prepare(settings, &pacer, path.clone(), earlier, candidates);
    let Some(prepared) = interrupt.race(prepare).await else {
        return Ok(Interrupt::stopped_before_changes("before any change"));
    };
    let (session, plan, configs) = prepared?;
    out.report(|w| plan.write_text(w), &plan)?;
    let status = if plan.left_alone.is_empty() { ExitStatus::Success } else { ExitStatus::Partial };
    if plan.changes.is_empty() {
        out.notice("Nothing to revert.");
        return Ok(status);
    }
    if settings.dry_run {
        let count = crate::text::count(plan.changes.len(), "instance");
        out.notice(&format!("Dry run: {count} would be restored."));
        return Ok(status);
    }
    let question = format!(
        "Restore the HttpTokens value of {} as it was before run {}?",
        crate::text::count(plan.changes.len(), "instance"),
        run.run_id
    );
    if let Some(stop) = confirm::approve(settings.yes, question, interrupt).await? {
        return Ok(stop);
    }

    let accounts: Vec<&str> = configs.keys().map(String::as_str).collect();
    let mut regions: Vec<&str> = plan.changes.iter().map(|c| c.region.as_str()).collect();
    regions.sort_unstable();
    regions.dedup();
    let header = RunHeader {
        operation: "revert",
        reverts_run_id: Some(&run.run_id),
        mode: "revert",
        caller_account: &session.identity.account_id,
        accounts,
        regions,
        changes_planned: plan.changes.len(),
        options: RunOptions::of(settings),
    };
    // The undo is journalled beside the run it undoes unless --journal says otherwise.
    let mut settings = settings.clone();
    settings.journal.get_or_insert_with(|| path.clone());
    let context = apply::Context {
        settings: &settings,
        session: &session,
        configs: &configs,
        pacer: &pacer,
        interrupt,
        out,
    };
    apply::apply(context, header, plan.changes.clone(), status).await
}

/// The run named by `--run-id`, or the last sweep of the journal that changed something (the
/// last sweep at all when none did).
fn pick<'a>(runs: &'a [Run], run_id: Option<&str>) -> Result<&'a Run, String> {
    if let Some(id) = run_id {
        return runs
            .iter()
            .find(|r| r.run_id == id)
            .ok_or_else(|| format!("holds no run {id}; its runs are {}", run_ids(runs)));
    }
    let mut sweeps = runs.iter().rev().filter(|r| r.operation == "enforce");
    let last = sweeps.clone().next();
    sweeps
        .find(|r| !candidates(r).is_empty())
        .or(last)
        .ok_or_else(|| "holds no sweep to revert (only reverts)".to_owned())
}

/// The instances that reverts of run `run_id` already set back, as their own records tell.
fn restored_by_reverts(runs: &[Run], run_id: &str) -> BTreeSet<Key> {
    runs.iter()
        .filter(|r| r.operation == "revert" && r.reverts.as_deref() == Some(run_id))
        .flat_map(candidates)
        .map(|c| (c.account_id, c.region, c.instance_id))
        .collect()
}

fn run_ids(runs: &[Run]) -> String {
    runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>().join(", ")
}

/// The instances the run changed or may have changed: a successful result, a read-back that
/// found the new value, or an attempt whose outcome was never recorded (the process died).
pub fn candidates(run: &Run) -> Vec<Candidate> {
    let mut attempts: BTreeMap<(String, String, String), Candidate> = BTreeMap::new();
    let mut changed: BTreeMap<(String, String, String), Option<bool>> = BTreeMap::new();
    for entry in &run.entries {
        let (Some(account), Some(region), Some(instance)) =
            (&entry.account_id, &entry.region, &entry.instance_id)
        else {
            continue;
        };
        let key = (account.clone(), region.clone(), instance.clone());
        match entry.event.as_str() {
            "attempt" => {
                let before = entry.http_tokens_before.clone().unwrap_or_default();
                let after = entry.http_tokens_after.clone().unwrap_or_default();
                let candidate = Candidate {
                    account_id: account.clone(),
                    region: region.clone(),
                    instance_id: instance.clone(),
                    before,
                    after,
                };
                attempts.entry(key.clone()).or_insert(candidate);
                changed.entry(key).or_insert(None);
            }
            "result" => {
                let succeeded = matches!(entry.outcome.as_deref(), Some("applied" | "pending"));
                let known = changed.entry(key).or_insert(None);
                *known = Some(known.unwrap_or(false) || succeeded);
            }
            "verify" => {
                let after = attempts.get(&key).map(|c| c.after.as_str());
                if entry.http_tokens.is_some() && entry.http_tokens.as_deref() == after {
                    changed.insert(key, Some(true));
                }
            }
            _ => {}
        }
    }
    attempts
        .into_iter()
        .filter(|(key, c)| c.before != c.after && changed.get(key) != Some(&Some(false)))
        .map(|(_, c)| c)
        .filter(|c| !c.before.is_empty())
        .collect()
}

/// The run to undo, and what earlier reverts of it already restored.
#[derive(Clone, Copy)]
struct Earlier<'a> {
    run_id: &'a str,
    restored: &'a BTreeSet<Key>,
}

/// What checking one account-region found.
#[derive(Default)]
struct Checked {
    changes: Vec<Change>,
    left_alone: Vec<LeftAlone>,
    already_restored: Vec<LeftAlone>,
}

/// Opens the session, enters each account, and checks every candidate against EC2 now.
async fn prepare(
    settings: &Settings,
    pacer: &Arc<Pacer>,
    journal: PathBuf,
    earlier: Earlier<'_>,
    candidates: Vec<Candidate>,
) -> Result<(Session, RevertPlan, BTreeMap<String, SdkConfig>), Error> {
    let session = session::open(settings.profile.as_deref(), settings.timeout).await?;
    let mut groups: BTreeMap<(String, String), Vec<Candidate>> = BTreeMap::new();
    for candidate in candidates {
        let key = (candidate.account_id.clone(), candidate.region.clone());
        groups.entry(key).or_default().push(candidate);
    }

    // Every account is entered at once (as far as the pacer allows), as a sweep does.
    let accounts: BTreeSet<String> = groups.keys().map(|(a, _)| a.clone()).collect();
    let session_ref = &session;
    let entered: Vec<_> = stream::iter(accounts)
        .map(|account| {
            let org_account = OrgAccount { id: account, name: None, state: "ACTIVE".into() };
            pacer.run_global(targets::enter(settings, session_ref, org_account, None))
        })
        .buffer_unordered(settings.concurrency)
        .collect()
        .await;
    let mut configs = BTreeMap::new();
    let mut left_alone = Vec::new();
    for result in entered {
        match result {
            Ok(target) => {
                configs.insert(target.account_id, target.config);
            }
            Err(skipped) => {
                let reason = format!("account unreachable: {}", skipped.reason);
                let account = &skipped.account_id;
                for ((_, region), members) in groups.iter().filter(|((a, _), _)| a == account) {
                    left_alone.extend(members.iter().map(|c| leave(c, region, &reason)));
                }
            }
        }
    }

    let checks: Vec<_> = stream::iter(groups)
        .filter(|((account, _), _)| std::future::ready(configs.contains_key(account)))
        .map(|((account, region), members)| {
            let config = &configs[&account];
            let restored = earlier.restored;
            async move { check_group(config, pacer, (&account, &region), members, restored).await }
        })
        .buffer_unordered(settings.concurrency)
        .collect()
        .await;
    let mut changes = Vec::new();
    let mut already_restored = Vec::new();
    for checked in checks {
        changes.extend(checked.changes);
        left_alone.extend(checked.left_alone);
        already_restored.extend(checked.already_restored);
    }
    changes.sort_by(|a: &Change, b| {
        (&a.account_id, &a.region, &a.instance_id).cmp(&(&b.account_id, &b.region, &b.instance_id))
    });
    for list in [&mut left_alone, &mut already_restored] {
        list.sort_by(|a, b| {
            (&a.account_id, &a.region, &a.instance_id).cmp(&(
                &b.account_id,
                &b.region,
                &b.instance_id,
            ))
        });
    }
    let plan = RevertPlan {
        kind: "revert_plan",
        journal,
        run_id: earlier.run_id.to_owned(),
        changes,
        left_alone,
        already_restored,
    };
    Ok((session, plan, configs))
}

/// Checks one account-region: IMDSv2 enforcement first, then each instance's current value.
/// `restored` names the instances that an earlier revert of the same run set back.
async fn check_group(
    config: &SdkConfig,
    pacer: &Arc<Pacer>,
    (account, region): (&str, &str),
    members: Vec<Candidate>,
    restored: &BTreeSet<Key>,
) -> Checked {
    let ec2 = Ec2::new(config, pacer, account, region);
    match ec2.metadata_defaults().await {
        Ok(defaults) if defaults.tokens_enforced || defaults.managed_by_policy => {
            let how = if defaults.managed_by_policy {
                "a declarative policy manages its IMDS defaults"
            } else {
                "its IMDS defaults enforce HttpTokens=required"
            };
            let detail = defaults.message.map(|m| format!(" ({})", crate::text::one_line(&m)));
            let reason = format!(
                "account {account} enforces IMDSv2 in {region}: {how}{}; instances cannot be set \
                 back to optional there",
                detail.unwrap_or_default()
            );
            let left_alone = members.iter().map(|c| leave(c, region, &reason)).collect();
            return Checked { left_alone, ..Checked::default() };
        }
        Ok(_) => {}
        Err(error) => info!(%account, %region, %error, "cannot read IMDS defaults; going on"),
    }

    let ids: Vec<String> = members.iter().map(|c| c.instance_id.clone()).collect();
    let current = match ec2.instances_by_id(&ids).await {
        Ok(records) => records,
        Err(error) => {
            let reason = format!("cannot read the instances: {error}");
            let left_alone = members.iter().map(|c| leave(c, region, &reason)).collect();
            return Checked { left_alone, ..Checked::default() };
        }
    };
    let mut checked = Checked::default();
    for candidate in members {
        let now = current.get(&candidate.instance_id).and_then(|r| r.http_tokens.clone());
        let key = (candidate.account_id.clone(), region.to_owned(), candidate.instance_id.clone());
        match now {
            None if !current.contains_key(&candidate.instance_id) => {
                checked.left_alone.push(leave(&candidate, region, "the instance no longer exists"));
            }
            // Restored once: never touched again. A value other than the restored one was
            // set by someone since, even when it equals what the run had set.
            Some(value) if restored.contains(&key) => {
                if value == candidate.before {
                    let reason = format!("already {value} again: restored by an earlier revert");
                    checked.already_restored.push(leave(&candidate, region, &reason));
                } else {
                    let reason = format!(
                        "HttpTokens is now {value}, not the {} an earlier revert restored: \
                         changed since by someone else",
                        candidate.before
                    );
                    checked.left_alone.push(leave(&candidate, region, &reason));
                }
            }
            Some(value) if value == candidate.after => checked.changes.push(Change {
                account_id: candidate.account_id,
                region: candidate.region,
                instance_id: candidate.instance_id,
                name: None,
                http_tokens_before: candidate.after,
                http_tokens_after: candidate.before,
            }),
            other => {
                let value = other.unwrap_or_else(|| "unknown".into());
                let reason = format!(
                    "HttpTokens is now {value}, not the {} the run set: changed since by \
                     someone else",
                    candidate.after
                );
                checked.left_alone.push(leave(&candidate, region, &reason));
            }
        }
    }
    checked
}

fn leave(candidate: &Candidate, region: &str, reason: &str) -> LeftAlone {
    LeftAlone {
        account_id: candidate.account_id.clone(),
        region: region.to_owned(),
        instance_id: candidate.instance_id.clone(),
        reason: reason.to_owned(),
    }
}

#[derive(Tabled)]
struct RestoreRow<'a> {
    account: &'a str,
    region: &'a str,
    instance: &'a str,
    #[tabled(rename = "http tokens now")]
    now: &'a str,
    #[tabled(rename = "restore to")]
    restore: &'a str,
}

impl RevertPlan {
    /// The plan for people: what will be restored, and what is left alone and why.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        write!(
            out,
            "Revert of run {} ({}): {} to restore, {} left alone",
            self.run_id,
            self.journal.display(),
            crate::text::count(self.changes.len(), "instance"),
            self.left_alone.len()
        )?;
        match self.already_restored.len() {
            0 => writeln!(out)?,
            n => writeln!(out, ", {n} restored by an earlier revert")?,
        }
        if !self.changes.is_empty() {
            let rows = self.changes.iter().map(|c| RestoreRow {
                account: &c.account_id,
                region: &c.region,
                instance: &c.instance_id,
                now: &c.http_tokens_before,
                restore: &c.http_tokens_after,
            });
            writeln!(out, "{}", Table::new(rows).with(Style::sharp()))?;
        }
        if !self.left_alone.is_empty() {
            writeln!(out, "Left alone:")?;
            writeln!(out, "{}", Table::new(grouped(&self.left_alone)).with(Style::sharp()))?;
        }
        Ok(())
    }
}

/// The instances left alone for one reason in one account-region: one row, the reason once,
/// however many instances an unreachable account or an enforcing region holds.
fn grouped(left_alone: &[LeftAlone]) -> Vec<LeftAlone> {
    let mut groups: Vec<LeftAlone> = Vec::new();
    for entry in left_alone {
        let same = |g: &&mut LeftAlone| {
            (&g.account_id, &g.region, &g.reason)
                == (&entry.account_id, &entry.region, &entry.reason)
        };
        match groups.iter_mut().find(|g| same(g)) {
            Some(group) => {
                group.instance_id.push('\n');
                group.instance_id.push_str(&entry.instance_id);
            }
            None => groups.push(entry.clone()),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> Run {
        let mut text = String::from(r#"{"event":"run","run_id":"r","format_version":1}"#);
        for line in lines {
            text.push('\n');
            text.push_str(line);
        }
        journal::parse(text.as_bytes()).expect("valid journal").remove(0)
    }

    fn attempt(instance: &str) -> String {
        format!(
            r#"{{"event":"attempt","run_id":"r","account_id":"1","region":"r1","instance_id":"{instance}","http_tokens_before":"optional","http_tokens_after":"required"}}"#
        )
    }

    fn result(instance: &str, outcome: &str) -> String {
        format!(
            r#"{{"event":"result","run_id":"r","account_id":"1","region":"r1","instance_id":"{instance}","outcome":"{outcome}"}}"#
        )
    }

    fn verify(instance: &str, tokens: &str) -> String {
        format!(
            r#"{{"event":"verify","run_id":"r","account_id":"1","region":"r1","instance_id":"{instance}","http_tokens":"{tokens}"}}"#
        )
    }

    fn ids(candidates: &[Candidate]) -> Vec<&str> {
        candidates.iter().map(|c| c.instance_id.as_str()).collect()
    }

    #[test]
    fn only_changes_that_happened_or_may_have_happened_are_candidates() {
        let lines = [
            attempt("i-applied"),
            result("i-applied", "applied"),
            attempt("i-pending"),
            result("i-pending", "pending"),
            attempt("i-failed"),
            result("i-failed", "failed"),
            attempt("i-recovered"),
            result("i-recovered", "failed"),
            verify("i-recovered", "required"),
            attempt("i-crashed"),
        ];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let found = candidates(&run(&lines));
        assert_eq!(ids(&found), ["i-applied", "i-crashed", "i-pending", "i-recovered"]);
        assert!(found.iter().all(|c| c.before == "optional" && c.after == "required"));
    }

    #[test]
    fn the_last_sweep_is_picked_unless_a_run_is_named() {
        let text = concat!(
            r#"{"event":"run","run_id":"a","format_version":1}"#,
            "\n",
            r#"{"event":"run","run_id":"b","format_version":1,"operation":"enforce"}"#,
            "\n",
            r#"{"event":"run","run_id":"c","format_version":1,"operation":"revert"}"#,
        );
        let runs = journal::parse(text.as_bytes()).expect("valid");
        assert_eq!(pick(&runs, None).expect("found").run_id, "b");
        assert_eq!(pick(&runs, Some("a")).expect("found").run_id, "a");
        assert!(pick(&runs, Some("zz")).expect_err("missing").contains("a, b, c"));

        // A later sweep that changed nothing (interrupted before its first change) is passed
        // over for the last one that did.
        let text = [
            r#"{"event":"run","run_id":"r","format_version":1}"#.to_owned(),
            attempt("i-1"),
            result("i-1", "applied"),
            r#"{"event":"run","run_id":"idle","format_version":1}"#.to_owned(),
        ]
        .join("\n");
        let runs = journal::parse(text.as_bytes()).expect("valid");
        assert_eq!(pick(&runs, None).expect("found").run_id, "r");
    }

    #[test]
    fn what_earlier_reverts_of_the_run_restored_is_known() {
        let undo = |run_id: &str, of: &str, instance: &str, outcome: &str| {
            [
                format!(
                    r#"{{"event":"run","run_id":"{run_id}","format_version":1,"operation":"revert","reverts_run_id":"{of}"}}"#
                ),
                attempt(instance).replace(r#""run_id":"r""#, &format!(r#""run_id":"{run_id}""#)),
                result(instance, outcome).replace(r#""run_id":"r""#, &format!(r#""run_id":"{run_id}""#)),
            ]
            .join("\n")
        };
        let text = [
            r#"{"event":"run","run_id":"r","format_version":1}"#.to_owned(),
            undo("u1", "r", "i-done", "applied"),
            undo("u2", "r", "i-failed", "failed"),
            undo("u3", "other", "i-other", "applied"),
        ]
        .join("\n");
        let runs = journal::parse(text.as_bytes()).expect("valid");
        let restored = restored_by_reverts(&runs, "r");
        let ids: Vec<&str> = restored.iter().map(|(_, _, i)| i.as_str()).collect();
        assert_eq!(ids, ["i-done"]);
    }
}
