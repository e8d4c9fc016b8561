//! The process exit codes, documented in the README; scripts may rely on them.

/// How a run ended, from the point of view of a script that called it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything in scope was scanned; every confirmed change succeeded (or none was needed).
    Success,
    /// An unexpected local failure, such as a journal that cannot be written.
    Internal,
    /// Bad command line, config file, profile name or region name; nothing was changed.
    Usage,
    /// A fatal AWS error before any change: credentials, identity, region discovery.
    AwsFatal,
    /// The sweep finished, but some regions were skipped or some changes failed.
    Partial,
    /// The user answered no at the confirmation prompt; nothing was changed.
    Declined,
    /// Interrupted by Ctrl-C; what was applied before is in the journal.
    Interrupted,
}

impl ExitStatus {
    /// The numeric code, stable across releases.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Internal => 1,
            ExitStatus::Usage => 2,
            ExitStatus::AwsFatal => 3,
            ExitStatus::Partial => 4,
            ExitStatus::Declined => 5,
            ExitStatus::Interrupted => 130,
        }
    }
}
