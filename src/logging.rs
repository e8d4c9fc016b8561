//! Diagnostics on stderr through `tracing`: quiet by default, decisions with `-v`, API detail
//! with `-vv`. `IMDS_SWEEP_LOG` takes an explicit filter for deeper debugging. Colour only on
//! a terminal, and never with `NO_COLOR` set.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The environment variable holding an explicit log filter.
pub const FILTER_VARIABLE: &str = "IMDS_SWEEP_LOG";

/// Installs the subscriber; call once, before anything logs.
pub fn init(verbose: u8, quiet: bool) {
    let filter = std::env::var(FILTER_VARIABLE)
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter(verbose, quiet)));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR")))
        .with_target(false)
        .without_time()
        .init();
}

/// The SDK's own crates stay at error by default (a credential provider's failure is also
/// our own one-line error, and its warnings span lines), warn or info with `-v`: their
/// debug output is request-level detail.
fn default_filter(verbose: u8, quiet: bool) -> &'static str {
    match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "error,imds_sweep=warn",
        (false, 1) => "warn,imds_sweep=info",
        (false, _) => "info,imds_sweep=debug",
    }
}

/// Whether to colour log lines: on a terminal, unless `NO_COLOR` is set to anything but "".
fn colour(terminal: bool, no_colour: Option<std::ffi::OsString>) -> bool {
    terminal && no_colour.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_widens_only_our_own_logs() {
        assert_eq!(default_filter(0, true), "error");
        assert_eq!(default_filter(0, false), "error,imds_sweep=warn");
        assert_eq!(default_filter(1, false), "warn,imds_sweep=info");
        assert_eq!(default_filter(5, false), "info,imds_sweep=debug");
    }

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())));
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
    }
}
