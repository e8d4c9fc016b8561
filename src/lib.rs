//! imds-sweep enforces IMDSv2 (`HttpTokens=required`) on the EC2 instances of an AWS
//! Organization or of one account.
//!
//! The pipeline, one module per step: [`settings`] resolves what the user asked for,
//! [`session`] validates the caller, [`mode`] decides between organization and single-account
//! sweeps, [`accounts`] and [`assume`] pick and enter member accounts, [`scan`] reads every
//! region through [`ec2`], [`plan`] classifies instances, [`report`] shows the result,
//! [`confirm`] asks once, [`enforce`] applies the changes and [`journal`] records each of them.

pub mod accounts;
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
pub mod plan;
pub mod regions;
pub mod report;
pub mod scan;
pub mod session;
pub mod settings;
pub mod text;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::time::Instant;

use aws_config::SdkConfig;
use futures_util::{StreamExt, stream};

use crate::accounts::{OuMembers, SkipKind, SkippedAccount};
use crate::assume::RoleRequest;
use crate::cli::{Cli, OutputFormat};
use crate::enforce::Enforcer;
use crate::error::Error;
use crate::exit::ExitStatus;
use crate::interrupt::Interrupt;
use crate::journal::{Journal, RunHeader};
use crate::mode::ModeKind;
use crate::organization::{OrgAccount, Organizations};
use crate::report::{EnforcementReport, ScanReport};
use crate::scan::{Access, AccountScan, AccountTarget, ScanError};
use crate::session::Session;
use crate::settings::Settings;

/// Accounts scanned (or entered) at once.
const ACCOUNT_CONCURRENCY: usize = 4;
/// Regions of one account scanned at once, and account-regions enforced at once.
const REGION_CONCURRENCY: usize = 8;

/// Runs one sweep as the command line asks and says how it ended.
pub async fn run(cli: Cli) -> Result<ExitStatus, Error> {
    let settings = Settings::resolve(&cli)?;
    let interrupt = Interrupt::install();
    let out = Output {
        format: settings.output,
        quiet: cli.quiet,
    };

    let Some(prepared) = until_interrupted(&interrupt, prepare(&settings, &out)).await else {
        return Ok(interrupted("before any change"));
    };
    let Prepared {
        session,
        report,
        configs,
    } = prepared?;
    out.report(|w| report.write_text(w), &report)?;
    let scan_status = if report.is_partial() {
        ExitStatus::Partial
    } else {
        ExitStatus::Success
    };

    let changes = report.changes();
    if changes.is_empty() {
        out.notice("Nothing to change: every instance in scope is enforced or not actionable.");
        return Ok(scan_status);
    }
    if settings.dry_run {
        let count = changes.len();
        out.notice(&format!(
            "Dry run: {count} instances would be changed; nothing was modified."
        ));
        return Ok(scan_status);
    }
    if !settings.yes && !confirmed(&report, changes.len(), &interrupt).await? {
        return Ok(if interrupt.is_set() {
            interrupted("at the confirmation prompt")
        } else {
            eprintln!("Declined: nothing was changed.");
            ExitStatus::Declined
        });
    }

    let context = EnforceContext {
        settings: &settings,
        session: &session,
        configs: &configs,
    };
    enforce(context, &report, changes, &interrupt, &out, scan_status).await
}

/// The caller's session, the scan report, and the credentials of every scanned account.
struct Prepared {
    session: Session,
    report: ScanReport,
    configs: BTreeMap<String, SdkConfig>,
}

/// Everything before the confirmation: session, mode, accounts, scan. Changes nothing.
async fn prepare(settings: &Settings, out: &Output) -> Result<Prepared, Error> {
    let session = session::open(settings.profile.as_deref()).await?;
    let organizations = Organizations::new(&session.config);
    let visibility = if mode::needs_probe(settings.mode) {
        Some(
            organizations
                .visibility()
                .await
                .map_err(Error::Organization)?,
        )
    } else {
        None
    };
    let mode = mode::choose(settings.mode, &session.identity.account_id, visibility)?;
    out.notice(&mode.headline());
    out.notice(&format!(
        "Caller: {} (account {})",
        session.identity.arn, session.identity.account_id
    ));

    let (targets, mut skipped) = match mode.mode {
        ModeKind::SingleAccount => (vec![caller_target(&session, None)], Vec::new()),
        ModeKind::Organization => organization_targets(settings, &session, &organizations).await?,
    };
    let configs = targets
        .iter()
        .map(|t| (t.account_id.clone(), t.config.clone()))
        .collect();
    let (scans, failed) = scan_accounts(targets, settings, mode.mode).await?;
    skipped.extend(failed);
    let report = ScanReport::new(
        mode,
        session.identity.clone(),
        settings.dry_run,
        scans,
        skipped,
    );
    Ok(Prepared {
        session,
        report,
        configs,
    })
}

fn caller_target(session: &Session, name: Option<String>) -> AccountTarget {
    AccountTarget {
        account_id: session.identity.account_id.clone(),
        name,
        access: Access::CallerCredentials,
        config: session.config.clone(),
    }
}

/// Lists the organization, applies the config's account and OU lists, and enters each
/// selected account; accounts that cannot be entered are returned as skipped.
async fn organization_targets(
    settings: &Settings,
    session: &Session,
    organizations: &Organizations,
) -> Result<(Vec<AccountTarget>, Vec<SkippedAccount>), Error> {
    let all = organizations
        .accounts()
        .await
        .map_err(Error::Organization)?;
    let ous = ou_members(settings, organizations).await?;
    let selection = accounts::select(&all, &settings.accounts, &ous);

    let reached: Vec<_> = stream::iter(selection.sweep)
        .map(|account| enter(settings, session, account))
        .buffer_unordered(ACCOUNT_CONCURRENCY * 2)
        .collect()
        .await;
    let mut targets = Vec::new();
    let mut skipped = selection.skipped;
    for result in reached {
        match result {
            Ok(target) => targets.push(target),
            Err(unreachable) => skipped.push(unreachable),
        }
    }
    Ok((targets, skipped))
}

async fn ou_members(
    settings: &Settings,
    organizations: &Organizations,
) -> Result<OuMembers, Error> {
    let filter = &settings.organizational_units;
    let expand = |ous: Vec<String>| async move {
        let mut members = BTreeSet::new();
        for ou in ous {
            match organizations.accounts_under(&ou).await {
                Ok(ids) => members.extend(ids),
                Err(error) => return Err(Error::UnknownOu { ou, error }),
            }
        }
        Ok(members)
    };
    let included = if filter.include.is_empty() {
        None
    } else {
        Some(expand(filter.include.clone()).await?)
    };
    Ok(OuMembers {
        included,
        excluded: expand(filter.exclude.clone()).await?,
    })
}

/// The caller's own account is swept with its own credentials; every other through its role.
async fn enter(
    settings: &Settings,
    session: &Session,
    account: OrgAccount,
) -> Result<AccountTarget, SkippedAccount> {
    if account.id == session.identity.account_id {
        return Ok(caller_target(session, account.name));
    }
    let roles = &settings.assume_role;
    let (role, external_id) = roles.for_account(&account.id);
    let request = RoleRequest::new(
        &session.identity,
        &account.id,
        role,
        &roles.session_name_prefix,
        external_id,
    );
    let role_arn = request.role_arn.clone();
    match assume::account_config(&session.config, request).await {
        Ok(config) => Ok(AccountTarget {
            account_id: account.id,
            name: account.name,
            access: Access::AssumedRole { role_arn },
            config,
        }),
        Err(error) => {
            tracing::info!(account = %account.id, %error, "cannot assume role");
            let external = if external_id.is_some() {
                " with the configured external id"
            } else {
                ""
            };
            let hint = format!(
                "the role {role_arn} must exist and trust {} for sts:AssumeRole{external} \
                 (accounts invited into the organization have no {role} unless someone created \
                 it; set another role with [[account]] role_name)",
                session.identity.arn
            );
            Err(SkippedAccount {
                account_id: account.id,
                name: account.name,
                kind: SkipKind::Unreachable,
                reason: format!("cannot assume {role}: {error}"),
                hint: Some(hint),
                error: Some(error),
            })
        }
    }
}

/// Scans the targets, a few accounts at a time. In single-account mode a failure to list
/// regions is fatal; in organization mode it skips that account only.
async fn scan_accounts(
    targets: Vec<AccountTarget>,
    settings: &Settings,
    mode: ModeKind,
) -> Result<(Vec<AccountScan>, Vec<SkippedAccount>), Error> {
    let results: Vec<_> = stream::iter(targets)
        .map(|target| async move {
            let scan = scan::scan_account(&target, &settings.regions, REGION_CONCURRENCY).await;
            (target, scan)
        })
        .buffer_unordered(ACCOUNT_CONCURRENCY)
        .collect()
        .await;

    let mut scans = Vec::new();
    let mut skipped = Vec::new();
    for (target, result) in results {
        match result {
            Ok(scan) => scans.push(scan),
            Err(ScanError::UnknownRegion(region)) => {
                let source_name = settings.regions.include_source.clone();
                return Err(Error::UnknownRegion {
                    region,
                    source_name,
                });
            }
            Err(ScanError::Regions(error)) if mode == ModeKind::SingleAccount => {
                return Err(Error::Regions {
                    account: target.account_id,
                    error,
                });
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

/// What enforcement needs from the preparation.
struct EnforceContext<'a> {
    settings: &'a Settings,
    session: &'a Session,
    configs: &'a BTreeMap<String, SdkConfig>,
}

async fn enforce(
    context: EnforceContext<'_>,
    report: &ScanReport,
    changes: Vec<plan::Change>,
    interrupt: &Interrupt,
    out: &Output,
    scan_status: ExitStatus,
) -> Result<ExitStatus, Error> {
    let EnforceContext {
        settings,
        session,
        configs,
    } = context;
    let run_id = journal::new_run_id();
    let path = match &settings.journal {
        Some(path) => path.clone(),
        None => journal::default_path(&run_id).ok_or_else(|| {
            Error::Usage("no state directory for the journal; pass --journal PATH".into())
        })?,
    };
    let journal_error = |source| Error::Journal {
        path: path.clone(),
        source,
    };
    let journal = Journal::open(&path, &run_id, &session.identity.arn).map_err(journal_error)?;
    journal
        .header(&run_header(report, changes.len()))
        .map_err(journal_error)?;

    let enforcer = Enforcer {
        accounts: configs,
        journal: &journal,
        interrupt,
        concurrency: REGION_CONCURRENCY,
    };
    let started = Instant::now();
    let (outcomes, journal_failure) = enforcer.run(changes).await;
    let interrupted = interrupt.is_set();
    let result = EnforcementReport::new(
        run_id,
        path.clone(),
        started.elapsed(),
        interrupted,
        &outcomes,
    );
    out.report(|w| result.write_text(w), &result)?;

    if let Some(failure) = journal_failure {
        return Err(journal_error(failure.0));
    }
    Ok(if interrupted {
        ExitStatus::Interrupted
    } else if result.failed > 0 || scan_status == ExitStatus::Partial {
        ExitStatus::Partial
    } else {
        ExitStatus::Success
    })
}

fn run_header(report: &ScanReport, changes_planned: usize) -> RunHeader<'_> {
    let accounts = report
        .accounts
        .iter()
        .map(|a| a.scan.account_id.as_str())
        .collect();
    let regions: BTreeSet<&str> = report
        .accounts
        .iter()
        .flat_map(|a| a.scan.regions.iter().map(|r| r.region.as_str()))
        .collect();
    RunHeader {
        mode: report.mode.mode.as_str(),
        caller_account: &report.caller.account_id,
        accounts,
        regions: regions.into_iter().collect(),
        changes_planned,
    }
}

/// Asks once on stderr; refuses without a terminal on stdin.
async fn confirmed(
    report: &ScanReport,
    changes: usize,
    interrupt: &Interrupt,
) -> Result<bool, Error> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::NoTerminal);
    }
    let question = format!(
        "Set HttpTokens=required on {changes} instances in {} account(s) and {} region(s)?",
        report.accounts_with_changes(),
        report.regions_with_changes()
    );
    let ask = tokio::task::spawn_blocking(move || {
        let mut input = std::io::stdin().lock();
        confirm::ask(&question, &mut input, &mut std::io::stderr())
    });
    Ok(until_interrupted(interrupt, ask)
        .await
        .is_some_and(|answer| matches!(answer, Ok(Ok(true)))))
}

/// Runs `work` unless Ctrl-C comes first, in which case the work is dropped mid-flight.
async fn until_interrupted<T>(interrupt: &Interrupt, work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        result = work => Some(result),
        () = interrupt.wait() => None,
    }
}

fn interrupted(when: &str) -> ExitStatus {
    eprintln!("Interrupted {when}: nothing was changed.");
    ExitStatus::Interrupted
}

/// Where reports and notices go: stdout for the report, stderr for notes in JSON mode.
struct Output {
    format: OutputFormat,
    quiet: bool,
}

impl Output {
    /// A line for people: part of the text report, or a note on stderr beside JSON.
    fn notice(&self, line: &str) {
        match self.format {
            OutputFormat::Text => println!("{line}"),
            OutputFormat::Json if !self.quiet => eprintln!("{line}"),
            OutputFormat::Json => {}
        }
    }

    fn report(
        &self,
        text: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
        json: &impl serde::Serialize,
    ) -> Result<(), Error> {
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        let written = match self.format {
            OutputFormat::Text => text(&mut lock),
            OutputFormat::Json => report::write_json(&mut lock, json),
        };
        written.and_then(|()| lock.flush()).map_err(Error::Output)
    }
}
