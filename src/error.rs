//! Errors that end a run, each mapped to a documented exit code.
//!
//! Errors stay data until `main` renders them: one line naming the file, key, profile, account
//! or region at fault, followed by a hint where the user can fix something.

use std::path::PathBuf;

use crate::aws_error::ApiError;
use crate::exit::ExitStatus;

/// A failure that stops the sweep before (or instead of) enforcement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config file {path}: {message}")]
    Config { path: PathBuf, message: String },

    #[error("{0}")]
    Usage(String),

    #[error(
        "profile `{profile}` was not found in {config} or {credentials}; \
         check the name with `aws configure list-profiles`, or point AWS_CONFIG_FILE and \
         AWS_SHARED_CREDENTIALS_FILE at the right files"
    )]
    UnknownProfile { profile: String, config: String, credentials: String },

    #[error("the AWS config files could not be read: {0}")]
    ProfileFiles(String),

    #[error(
        "no AWS credentials found{}; pass --profile NAME, or sign in first (for SSO: \
         `aws sso login --profile NAME`)",
        profile_suffix(.profile)
    )]
    NoCredentials { profile: Option<String>, detail: String },

    #[error("credentials{} could not be loaded: {detail}", profile_suffix(.profile))]
    CredentialsUnavailable { profile: Option<String>, detail: String },

    #[error(
        "credentials{} were rejected by STS ({error}); refresh them (for SSO: `aws sso login`) \
         or check the access key",
        profile_suffix(.profile)
    )]
    CredentialsRejected { profile: Option<String>, error: ApiError },

    #[error("the identity check (sts:GetCallerIdentity) failed: {0}")]
    Identity(ApiError),

    #[error(
        "ec2:DescribeRegions failed in account {account}: {error}; the profile needs \
         ec2:DescribeRegions (see docs/iam-policy.json)"
    )]
    Regions { account: String, error: ApiError },

    #[error(
        "unknown region `{region}` (from {source_name}); it is not an EC2 region of this \
         partition: check the spelling"
    )]
    UnknownRegion { region: String, source_name: String },

    #[error(
        "organization mode is not possible: {0}; drop --organization (or mode = \
         \"organization\" in the config file) to sweep this account alone"
    )]
    OrganizationUnavailable(String),

    #[error("listing the organization's accounts failed: {0}")]
    Organization(ApiError),

    #[error(
        "organizational unit `{ou}` (from the config file) cannot be listed: {error}; check the \
         id with `aws organizations list-organizational-units-for-parent`"
    )]
    UnknownOu { ou: String, error: ApiError },

    #[error(
        "config file {path}: `accounts.exclude` names {account}, which is not an account of \
         organization {organization}; correct the id (the account meant would be swept) or \
         remove it"
    )]
    UnknownExcludedAccount { path: String, account: String, organization: String },

    #[error(
        "config file {path}: [organizational_units] needs organization mode, but this sweep \
         covers one account ({reason}); remove the OU lists, or run with the management \
         account's or a delegated administrator's credentials"
    )]
    OusNeedOrganization { path: String, reason: String },

    #[error(
        "stdin is not a terminal, so the confirmation cannot be asked; pass --yes to apply \
         without a prompt, or --dry-run to only report"
    )]
    NoTerminal,

    #[error("journal {path} {message}")]
    JournalRead { path: PathBuf, message: String },

    #[error("journal {path}: {source}; choose another file with --journal PATH")]
    Journal { path: PathBuf, source: std::io::Error },

    #[error("cannot write the report: {0}")]
    Output(#[source] std::io::Error),
}

fn profile_suffix(profile: &Option<String>) -> String {
    profile.as_deref().map(|p| format!(" for profile `{p}`")).unwrap_or_default()
}

impl Error {
    /// The exit code this error ends the process with.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Config { .. }
            | Error::Usage(_)
            | Error::UnknownProfile { .. }
            | Error::ProfileFiles(_)
            | Error::UnknownRegion { .. }
            | Error::UnknownOu { .. }
            | Error::UnknownExcludedAccount { .. }
            | Error::OusNeedOrganization { .. }
            | Error::JournalRead { .. }
            | Error::NoTerminal => ExitStatus::Usage,
            Error::NoCredentials { .. }
            | Error::CredentialsUnavailable { .. }
            | Error::CredentialsRejected { .. }
            | Error::Identity(_)
            | Error::Regions { .. }
            | Error::OrganizationUnavailable(_)
            | Error::Organization(_) => ExitStatus::AwsFatal,
            Error::Journal { .. } | Error::Output(_) => ExitStatus::Internal,
        }
    }
}
