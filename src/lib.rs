//! imds-sweep enforces IMDSv2 (`HttpTokens=required`) on the EC2 instances of an account.
//!
//! The pipeline, one module per step: [`settings`] resolves what the user asked for,
//! [`session`] validates the caller, [`scan`] reads every region through [`ec2`], [`plan`]
//! classifies instances, [`report`] shows the result, [`confirm`] asks once, [`enforce`]
//! applies the changes and [`journal`] records each of them.

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
pub mod plan;
pub mod regions;
pub mod report;
pub mod scan;
pub mod session;
pub mod settings;
pub mod text;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Instant;

use crate::cli::{Cli, OutputFormat};
use crate::enforce::Enforcer;
use crate::error::Error;
use crate::exit::ExitStatus;
use crate::interrupt::Interrupt;
use crate::journal::{Journal, RunHeader};
use crate::report::{EnforcementReport, Mode, ScanReport};
use crate::scan::{Access, AccountTarget, ScanError};
use crate::session::Session;
use crate::settings::Settings;

/// Regions (and account-regions when enforcing) worked on at once.
const CONCURRENCY: usize = 8;

/// Runs one sweep as the command line asks and says how it ended.
pub async fn run(cli: Cli) -> Result<ExitStatus, Error> {
    let settings = Settings::resolve(&cli)?;
    let interrupt = Interrupt::install();
    let out = Output {
        format: settings.output,
        quiet: cli.quiet,
    };

    let session = tokio::select! {
        session = session::open(settings.profile.as_deref()) => session?,
        () = interrupt.wait() => return Ok(interrupted("while checking credentials")),
    };
    let mode = Mode {
        mode: "single_account",
        reason: "sweeping the account of the caller's credentials".into(),
    };
    out.notice(&format!("Mode: single account ({})", mode.reason));
    out.notice(&format!(
        "Caller: {} (account {})",
        session.identity.arn, session.identity.account_id
    ));

    let target = AccountTarget {
        account_id: session.identity.account_id.clone(),
        name: None,
        access: Access::CallerCredentials,
        config: session.config.clone(),
    };
    let scan = tokio::select! {
        scan = scan::scan_account(&target, &settings.regions, CONCURRENCY) => scan,
        () = interrupt.wait() => return Ok(interrupted("during the scan")),
    };
    let scan = scan.map_err(|e| match e {
        ScanError::Regions(error) => Error::Regions {
            account: target.account_id.clone(),
            error,
        },
        ScanError::UnknownRegion(region) => Error::UnknownRegion {
            region,
            source_name: settings.regions.include_source.clone(),
        },
    })?;

    let report = ScanReport::new(mode, session.identity.clone(), settings.dry_run, vec![scan]);
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
        out.notice(&format!(
            "Dry run: {} instances would be changed; nothing was modified.",
            changes.len()
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

    enforce(
        &settings,
        &session,
        &report,
        changes,
        &interrupt,
        &out,
        scan_status,
    )
    .await
}

async fn enforce(
    settings: &Settings,
    session: &Session,
    report: &ScanReport,
    changes: Vec<plan::Change>,
    interrupt: &Interrupt,
    out: &Output,
    scan_status: ExitStatus,
) -> Result<ExitStatus, Error> {
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

    let accounts = BTreeMap::from([(session.identity.account_id.clone(), session.config.clone())]);
    let enforcer = Enforcer {
        accounts: &accounts,
        journal: &journal,
        interrupt,
        concurrency: CONCURRENCY,
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
    let mut regions: Vec<&str> = report
        .accounts
        .iter()
        .flat_map(|a| a.scan.regions.iter().map(|r| r.region.as_str()))
        .collect();
    regions.sort_unstable();
    regions.dedup();
    RunHeader {
        mode: report.mode.mode,
        caller_account: &report.caller.account_id,
        accounts,
        regions,
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
    let accounts = report
        .accounts
        .iter()
        .filter(|a| a.totals.to_change > 0)
        .count();
    let question = format!(
        "Set HttpTokens=required on {changes} instances in {accounts} account(s) and {} region(s)?",
        report.regions_with_changes()
    );
    let ask = tokio::task::spawn_blocking(move || {
        let mut input = std::io::stdin().lock();
        confirm::ask(&question, &mut input, &mut std::io::stderr())
    });
    tokio::select! {
        answer = ask => Ok(matches!(answer, Ok(Ok(true)))),
        () = interrupt.wait() => Ok(false),
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
