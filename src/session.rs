//! The caller's AWS session: profile lookup, credentials, and the identity check that comes
//! before any other call.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_runtime::env_config::file::EnvConfigFiles;
use aws_types::os_shim_internal::{Env, Fs};
use serde::Serialize;

use crate::aws_error::{ApiError, ApiErrorKind};
use crate::error::Error;

/// The region used for global calls when the profile names none.
const FALLBACK_REGION: &str = "us-east-1";

/// Attempts per call, first try included; throttling and 5xx answers are retried with backoff.
const MAX_ATTEMPTS: u32 = 5;

/// Who is running the sweep, as STS sees it.
#[derive(Debug, Clone, Serialize)]
pub struct CallerIdentity {
    pub account_id: String,
    pub arn: String,
}

/// A validated session: SDK configuration plus the identity behind it.
#[derive(Debug, Clone)]
pub struct Session {
    pub config: SdkConfig,
    pub identity: CallerIdentity,
}

/// Opens the session for `profile` (or the default chain) and checks it with STS.
pub async fn open(profile: Option<&str>, attempt_timeout: Duration) -> Result<Session, Error> {
    let explicit = profile.map(str::to_owned).or_else(|| std::env::var("AWS_PROFILE").ok());
    if let Some(name) = &explicit {
        ensure_profile_exists(name).await?;
    }
    let config = load_config(profile, attempt_timeout).await;
    check_credentials(&config, explicit.as_deref()).await?;
    let identity = caller_identity(&config, explicit.as_deref()).await?;
    Ok(Session { config, identity })
}

/// Loads the SDK configuration once; every client of the run is built from it.
async fn load_config(profile: Option<&str>, attempt_timeout: Duration) -> SdkConfig {
    // The whole call may take every attempt plus the backoff between them.
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5).min(attempt_timeout))
        .operation_attempt_timeout(attempt_timeout)
        .operation_timeout(attempt_timeout * (MAX_ATTEMPTS + 1))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(timeouts);
    if let Some(name) = profile {
        loader = loader.profile_name(name);
    }
    let config = loader.load().await;
    if config.region().is_some() {
        return config;
    }
    config.into_builder().region(Region::from_static(FALLBACK_REGION)).build()
}

/// A named profile that exists in neither file is a typo, not a credential problem.
async fn ensure_profile_exists(name: &str) -> Result<(), Error> {
    let (fs, env) = (Fs::real(), Env::real());
    let profiles = aws_config::profile::load(&fs, &env, &EnvConfigFiles::default(), None)
        .await
        .map_err(|e| Error::ProfileFiles(crate::text::one_line(&e.to_string())))?;
    if profiles.get_profile(name).is_some() {
        return Ok(());
    }
    Err(Error::UnknownProfile {
        profile: name.to_owned(),
        config: file_location("AWS_CONFIG_FILE", "config"),
        credentials: file_location("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
    })
}

fn file_location(variable: &str, file: &str) -> String {
    match std::env::var(variable) {
        Ok(path) => format!("{path} ({variable})"),
        Err(_) => format!("~/.aws/{file}"),
    }
}

/// Resolves credentials before the first call so that "none found" is told apart from
/// "rejected by AWS".
async fn check_credentials(config: &SdkConfig, profile: Option<&str>) -> Result<(), Error> {
    let profile = profile.map(str::to_owned);
    let Some(provider) = config.credentials_provider() else {
        return Err(Error::NoCredentials { profile, detail: String::new() });
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(CredentialsError::CredentialsNotLoaded(e)) => {
            Err(Error::NoCredentials { profile, detail: format!("{e:?}") })
        }
        Err(e) => Err(Error::CredentialsUnavailable { profile, detail: credentials_detail(&e) }),
    }
}

/// The provider's own words, one line; providers never put secrets in their errors.
fn credentials_detail(err: &CredentialsError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    crate::text::truncate(&crate::text::one_line(&text), 300)
}

async fn caller_identity(
    config: &SdkConfig,
    profile: Option<&str>,
) -> Result<CallerIdentity, Error> {
    let sts = aws_sdk_sts::Client::new(config);
    let output = sts.get_caller_identity().send().await.map_err(|e| {
        let error = ApiError::from_sdk(&e);
        match error.kind {
            ApiErrorKind::CredentialsInvalid | ApiErrorKind::CredentialsExpired => {
                Error::CredentialsRejected { profile: profile.map(str::to_owned), error }
            }
            _ => Error::Identity(error),
        }
    })?;
    Ok(CallerIdentity {
        account_id: output.account().unwrap_or_default().to_owned(),
        arn: output.arn().unwrap_or_default().to_owned(),
    })
}
