//! Command-line flags, as the user types them; `settings` resolves them with the config file.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

/// Enforce IMDSv2 (HttpTokens=required) on every EC2 instance of an AWS Organization or
/// account, after one confirmation.
#[derive(Debug, Parser)]
#[command(name = "imds-sweep", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// AWS profile to use (read from ~/.aws/config and ~/.aws/credentials); without it the
    /// standard credential chain decides (environment, AWS_PROFILE, default profile, ...).
    #[arg(long, value_name = "NAME", global = true)]
    pub profile: Option<String>,

    /// Sweep only this region (repeatable); overrides the config file's [regions] include.
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,

    /// TOML config file restricting the sweep (see config.example.toml).
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,

    /// Sweep every member account of the organization; an error where it cannot be listed.
    #[arg(long, conflicts_with = "single_account")]
    pub organization: bool,

    /// Sweep only the caller's account, even with organization credentials.
    #[arg(long)]
    pub single_account: bool,

    /// Role to assume in member accounts (default OrganizationAccountAccessRole); replaces
    /// [assume_role] role_name, while [[account]] entries still apply to their account.
    #[arg(long, value_name = "NAME", global = true)]
    pub role_name: Option<String>,

    /// Scan and report only; change nothing and ask nothing.
    #[arg(long, conflicts_with = "yes", global = true)]
    pub dry_run: bool,

    /// Apply without asking (needed when stdin is not a terminal).
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,

    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, global = true)]
    pub output: OutputFormat,

    /// Append the audit journal to this file instead of a new file under the state directory.
    #[arg(long, value_name = "PATH", global = true)]
    pub journal: Option<PathBuf>,

    /// After enforcing, wait until running instances report the new settings as applied.
    #[arg(long)]
    pub wait: bool,

    /// How long --wait waits, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, requires = "wait")]
    pub wait_timeout: u64,

    /// Requests in flight at most, across accounts and regions (1: one call at a time).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024), global = true)]
    pub concurrency: u16,

    /// Timeout of one API call attempt, in seconds (failed attempts are retried).
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub timeout: u64,

    /// Explain decisions on stderr (-v), or show every API call and error detail (-vv).
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "quiet", global = true)]
    pub verbose: u8,

    /// Print errors only on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// What to do instead of a sweep.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Restore the HttpTokens value that a sweep changed, from its journal.
    Revert(RevertArgs),
}

/// Arguments of `imds-sweep revert`.
#[derive(Debug, Args)]
pub struct RevertArgs {
    /// The journal written by the sweep to undo.
    #[arg(value_name = "JOURNAL")]
    pub journal_file: PathBuf,

    /// The run to undo when the journal holds several (default: the last one with changes).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
}

/// How the report is printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Tables for people.
    Text,
    /// One JSON document per line (scan report, then enforcement report) for scripts.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_repeat_and_verbosity_counts() {
        let cli = Cli::parse_from([
            "imds-sweep",
            "--profile",
            "p",
            "--region",
            "eu-west-1",
            "--region",
            "us-east-1",
            "-vv",
        ]);
        assert_eq!(cli.regions, ["eu-west-1", "us-east-1"]);
        assert_eq!(cli.verbose, 2);
        assert_eq!(cli.profile.as_deref(), Some("p"));
    }

    #[test]
    fn contradictory_flags_are_rejected() {
        for args in [
            ["imds-sweep", "--dry-run", "--yes"],
            ["imds-sweep", "-v", "-q"],
            ["imds-sweep", "--organization", "--single-account"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn revert_takes_a_journal_and_the_global_flags() {
        let cli = Cli::parse_from(["imds-sweep", "revert", "j.jsonl", "--profile", "p", "--yes"]);
        let Some(Command::Revert(args)) = &cli.command else { panic!("revert expected") };
        assert_eq!(args.journal_file, PathBuf::from("j.jsonl"));
        assert!(cli.yes);
        assert_eq!(cli.profile.as_deref(), Some("p"));
    }

    #[test]
    fn definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
