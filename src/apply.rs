//! Applying confirmed changes, for a sweep or a revert: open the journal, write the run's
//! header, enforce, read back, print the final report and decide the exit status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use aws_config::SdkConfig;

use crate::enforce::Enforcer;
use crate::error::Error;
use crate::exit::ExitStatus;
use crate::interrupt::Interrupt;
use crate::journal::{self, Journal, RunHeader};
use crate::output::Output;
use crate::pacer::Pacer;
use crate::plan::Change;
use crate::progress::{Display, Progress};
use crate::report::EnforcementReport;
use crate::session::Session;
use crate::settings::Settings;
use crate::verify;

/// What applying needs from the steps before it.
pub struct Context<'a> {
    pub settings: &'a Settings,
    pub session: &'a Session,
    /// Credentials per account id.
    pub configs: &'a BTreeMap<String, SdkConfig>,
    pub pacer: &'a Arc<Pacer>,
    pub interrupt: &'a Interrupt,
    pub out: Output,
}

/// Applies `changes`, journalling the run under `header`. `status_so_far` is `Partial` when
/// the preceding scan already was.
pub async fn apply(
    context: Context<'_>,
    header: RunHeader<'_>,
    changes: Vec<Change>,
    status_so_far: ExitStatus,
) -> Result<ExitStatus, Error> {
    let Context { settings, session, configs, pacer, interrupt, out } = context;
    let run_id = journal::new_run_id();
    let path = match &settings.journal {
        Some(path) => path.clone(),
        None => journal::default_path(&run_id).ok_or_else(|| {
            Error::Usage("no state directory for the journal; pass --journal PATH".into())
        })?,
    };
    let journal_error = |source| Error::Journal { path: path.clone(), source };
    let journal = Journal::open(&path, &run_id, &session.identity.arn).map_err(journal_error)?;
    journal.header(&header).map_err(journal_error)?;

    let progress = Progress::start("enforce", changes.len(), Display::detect(out.quiet));
    let enforcer =
        Enforcer { accounts: configs, journal: &journal, interrupt, pacer, progress: &progress };
    let started = Instant::now();
    let (mut outcomes, journal_failure) = enforcer.run(changes).await;
    drop(progress);
    let interrupted = interrupt.is_set();
    let verification = if interrupted {
        None
    } else {
        Some(verify::verify(&mut outcomes, configs, pacer, &journal, settings.wait).await)
    };
    let result = EnforcementReport::new(
        run_id,
        path.clone(),
        started.elapsed(),
        interrupted,
        &outcomes,
        verification,
    );
    out.report(|w| result.write_text(w), &result)?;

    if let Some(failure) = journal_failure {
        return Err(journal_error(failure.0));
    }
    Ok(if interrupted {
        ExitStatus::Interrupted
    } else if !result.is_complete() || status_so_far == ExitStatus::Partial {
        ExitStatus::Partial
    } else {
        ExitStatus::Success
    })
}
