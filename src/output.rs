//! Where things are printed: reports on stdout (text or JSON), notes for people on stdout
//! beside a text report or on stderr beside JSON.

use std::io::Write;

use crate::cli::OutputFormat;
use crate::error::Error;
use crate::report;

/// The output settings of a run.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub format: OutputFormat,
    pub quiet: bool,
}

impl Output {
    /// A line for people: part of the text report, or a note on stderr beside JSON.
    ///
    /// A closed stdout (`| head`) is not an error here: the next report written there fails
    /// and stops the run before any change, while `println!` would panic.
    pub fn notice(&self, line: &str) {
        let _ = match self.format {
            OutputFormat::Text => writeln!(std::io::stdout(), "{line}"),
            OutputFormat::Json if !self.quiet => writeln!(std::io::stderr(), "{line}"),
            OutputFormat::Json => Ok(()),
        };
    }

    /// Prints a report: `text` renders it for people, `json` is serialised as one line.
    pub fn report(
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
