//! imds-sweep enforces IMDSv2 (`HttpTokens=required`) on the EC2 instances of an AWS
//! Organization or of one account, and can undo a sweep from its journal.
//!
//! The pipeline, one module per step: [`settings`] resolves what the user asked for,
//! [`session`] validates the caller, [`mode`] decides between organization and single-account
//! sweeps, [`targets`] picks and enters accounts ([`accounts`], [`assume`]), [`scan`] reads
//! every region through [`ec2`], [`plan`] classifies instances, [`report`] shows the result,
//! [`confirm`] asks once, and [`apply`] enforces ([`enforce`]), reads back ([`verify`]) and
//! records every change ([`journal`]). [`revert`] undoes a run from its journal.

pub mod accounts;
pub mod apply;
pub mod assume;
pub mod aws_error;
pub mod cli;
pub mod confirm;
pub mod ec2;
pub mod enforce;
pub mod error;
pub mod exit;
pub mod interrupt;
pub mod journal;
pub mod logging;
pub mod mode;
pub mod organization;
pub mod output;
pub mod pacer;
pub mod plan;
pub mod progress;
pub mod regions;
pub mod report;
pub mod revert;
pub mod scan;
pub mod session;
pub mod settings;
pub mod targets;
pub mod text;
pub mod verify;

use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;

use aws_config::SdkConfig;

use crate::accounts::{SkipKind, SkippedAccount};
use crate::cli::{Cli, Command};
use crate::error::Error;
use crate::exit::ExitStatus;
use crate::interrupt::Interrupt;
use crate::journal::{RunHeader, RunOptions};
use crate::mode::ModeKind;
use crate::organization::Organizations;
use crate::output::Output;
use crate::pacer::Pacer;
use crate::progress::{Display, Progress};
use crate::report::ScanReport;
use crate::scan::{AccountScan, AccountTarget, ScanError, ScanPace};
use crate::session::Session;
use crate::settings::Settings;

/// Runs what the command line asks for and says how it ended.
pub async fn run(cli: Cli) -> Result<ExitStatus, Error> {
    let settings = Settings::resolve(&cli)?;
    let interrupt = Interrupt::install();
    let out = Output { format: settings.output, quiet: cli.quiet };
    match &cli.command {
        Some(Command::Revert(args)) => revert::run(&settings, args, &interrupt, out).await,
        None => sweep(&settings, &interrupt, out).await,
    }
}

/// One sweep: scan, report, confirm, apply.
async fn sweep(
    settings: &Settings,
    interrupt: &Interrupt,
    out: Output,
) -> Result<ExitStatus, Error> {
    let Some(prepared) = interrupt.race(prepare(settings, out)).await else {
        return Ok(Interrupt::stopped_before_changes("before any change"));
    };
    let Prepared { session, report, configs, pacer } = prepared?;
    out.report(|w| report.write_text(w), &report)?;
    let scan_status = if report.is_partial() { ExitStatus::Partial } else { ExitStatus::Success };

    let changes = report.changes();
    if changes.is_empty() {
        out.notice(nothing_to_change(&report));
        return Ok(scan_status);
    }
    if settings.dry_run {
        let count = text::count(changes.len(), "instance");
        out.notice(&format!("Dry run: {count} would be changed; nothing was modified."));
        return Ok(scan_status);
    }
    let question = format!(
        "Set HttpTokens=required on {} in {} and {}?",
        text::count(changes.len(), "instance"),
        text::count(report.accounts_with_changes(), "account"),
        text::count(report.regions_with_changes(), "region")
    );
    if let Some(stop) = confirm::approve(settings.yes, question, interrupt).await? {
        return Ok(stop);
    }

    let context = apply::Context {
        settings,
        session: &session,
        configs: &configs,
        pacer: &pacer,
        interrupt,
        out,
    };
    let header = run_header(&report, changes.len(), settings);
    apply::apply(context, header, changes, scan_status).await
}

/// The caller's session, the scan report, and the credentials of every scanned account.
struct Prepared {
    session: Session,
    report: ScanReport,
    configs: BTreeMap<String, SdkConfig>,
    pacer: Arc<Pacer>,
}

/// Everything before the confirmation: session, mode, accounts, scan. Changes nothing.
async fn prepare(settings: &Settings, out: Output) -> Result<Prepared, Error> {
    let session = session::open(settings.profile.as_deref(), settings.timeout).await?;
    let pacer = Pacer::new(settings.concurrency);
    let organizations = Organizations::new(&session.config);
    let visibility = if mode::needs_probe(settings.mode) {
        Some(organizations.visibility(&pacer).await.map_err(Error::Organization)?)
    } else {
        None
    };
    let mode = mode::choose(settings.mode, &session.identity.account_id, visibility.as_ref())?;
    out.notice(&mode.headline());
    out.notice(&format!(
        "Caller: {} (account {})",
        session.identity.arn, session.identity.account_id
    ));

    let (targets, mut skipped) = match mode.mode {
        ModeKind::SingleAccount => targets::single_account_targets(settings, &session, &mode)?,
        ModeKind::Organization => {
            let all = match visibility {
                Some(organization::Visibility::CanList { accounts, .. }) => accounts,
                _ => Vec::new(),
            };
            let management = mode.management_account_id.as_deref();
            let id = mode.organization_id.as_deref().unwrap_or_default();
            let org = targets::Org { api: &organizations, accounts: all, management, id };
            targets::organization_targets(settings, &session, org, &pacer).await?
        }
    };
    let configs = targets.iter().map(|t| (t.account_id.clone(), t.config.clone())).collect();
    let progress = Progress::start("scan", 0, Display::detect(out.quiet));
    progress.expect_accounts(targets.len());
    let pace = ScanPace { pacer: &pacer, progress: &progress };
    let (scans, failed) = scan_accounts(targets, settings, mode.mode, pace).await?;
    drop(progress);
    skipped.extend(failed);
    let report = ScanReport::new(mode, session.identity.clone(), settings.dry_run, scans, skipped);
    Ok(Prepared { session, report, configs, pacer })
}

/// Scans the targets. In single-account mode a failure to list regions is fatal; in
/// organization mode it skips that account only.
async fn scan_accounts(
    targets: Vec<AccountTarget>,
    settings: &Settings,
    mode: ModeKind,
    pace: ScanPace<'_>,
) -> Result<(Vec<AccountScan>, Vec<SkippedAccount>), Error> {
    let results = scan::scan_accounts(targets, &settings.regions, pace).await;
    let mut scans = Vec::new();
    let mut skipped = Vec::new();
    for (target, result) in results {
        match result {
            Ok(scan) => scans.push(scan),
            Err(ScanError::UnknownRegion(regions::UnknownRegion { region, source_name })) => {
                return Err(Error::UnknownRegion { region, source_name });
            }
            Err(ScanError::Regions(error)) if mode == ModeKind::SingleAccount => {
                return Err(Error::Regions { account: target.account_id, error });
            }
            Err(ScanError::Regions(error)) => skipped.push(SkippedAccount {
                account_id: target.account_id,
                name: target.name,
                kind: SkipKind::ScanFailed,
                reason: format!("DescribeRegions failed: {error}"),
                hint: error.hint().map(str::to_owned),
                error: Some(error),
            }),
        }
    }
    Ok((scans, skipped))
}

/// Why a sweep has nothing to change, without claiming more than the scan saw.
fn nothing_to_change(report: &ScanReport) -> &'static str {
    if report.is_partial() {
        "Nothing to change in what was scanned; the accounts and regions skipped above were not."
    } else if report.totals.regions_scanned == 0 {
        "Nothing to change: no account-region was in scope (see the account and region lists)."
    } else {
        "Nothing to change: every instance in scope is enforced or not actionable."
    }
}

fn run_header<'a>(
    report: &'a ScanReport,
    changes_planned: usize,
    settings: &'a Settings,
) -> RunHeader<'a> {
    let accounts = report.accounts.iter().map(|a| a.scan.account_id.as_str()).collect();
    let regions: BTreeSet<&str> = report
        .accounts
        .iter()
        .flat_map(|a| a.scan.regions.iter().map(|r| r.region.as_str()))
        .collect();
    RunHeader {
        operation: "enforce",
        reverts_run_id: None,
        mode: report.mode.mode.as_str(),
        caller_account: &report.caller.account_id,
        accounts,
        regions: regions.into_iter().collect(),
        changes_planned,
        options: RunOptions::of(settings),
    }
}
