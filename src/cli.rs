//! Command-line flags, as the user types them; `settings` resolves them with the config file.

use std::path::PathBuf;

use clap::{ArgAction, Parser, ValueEnum};

/// Enforce IMDSv2 (HttpTokens=required) on every EC2 instance of an AWS Organization or
/// account, after one confirmation.
#[derive(Debug, Parser)]
#[command(name = "imds-sweep", version, about, long_about = None)]
pub struct Cli {
    /// AWS profile to use (read from ~/.aws/config and ~/.aws/credentials); without it the
    /// standard credential chain decides (environment, AWS_PROFILE, default profile, ...).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// Sweep only this region (repeatable); overrides the config file's [regions] include.
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,

    /// TOML config file restricting the sweep (see config.example.toml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Sweep every member account of the organization; an error where it cannot be listed.
    #[arg(long, conflicts_with = "single_account")]
    pub organization: bool,

    /// Sweep only the caller's account, even with organization credentials.
    #[arg(long)]
    pub single_account: bool,

    /// Role to assume in member accounts (default OrganizationAccountAccessRole); replaces
    /// [assume_role] role_name, while [[account]] entries still apply to their account.
    #[arg(long, value_name = "NAME")]
    pub role_name: Option<String>,

    /// Scan and report only; change nothing and ask nothing.
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,

    /// Apply without asking (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Append the audit journal to this file instead of a new file under the state directory.
    #[arg(long, value_name = "PATH")]
    pub journal: Option<PathBuf>,

    /// Explain decisions on stderr (-v), or show every API call and error detail (-vv).
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Print errors only on stderr.
    #[arg(short, long)]
    pub quiet: bool,
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
    fn definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
