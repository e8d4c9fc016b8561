//! The assume-role layer: credentials for each member account, refreshed before they expire,
//! with the account's own retry partition so that one account's throttling slows no other.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider};

use crate::aws_error::ApiError;
use crate::session::CallerIdentity;

/// How long assumed-role sessions last; one hour is the most role chaining allows.
const SESSION_SECONDS: i32 = 3600;
/// Credentials this close to expiry are renewed before use.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// The role to assume in one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRequest {
    pub role_arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
}

impl RoleRequest {
    /// The role `role` in `account`, in the caller's partition.
    pub fn new(
        caller: &CallerIdentity,
        account: &str,
        role: &str,
        prefix: &str,
        external_id: Option<&str>,
    ) -> Self {
        let partition = caller.arn.split(':').nth(1).filter(|p| !p.is_empty()).unwrap_or("aws");
        RoleRequest {
            role_arn: format!("arn:{partition}:iam::{account}:role/{role}"),
            session_name: session_name(prefix, &caller.arn),
            external_id: external_id.map(str::to_owned),
        }
    }
}

/// `<prefix>-<caller name>`, limited to what STS accepts, so that the member account's
/// CloudTrail shows which tool and which person made each change.
pub fn session_name(prefix: &str, caller_arn: &str) -> String {
    let caller = caller_arn.rsplit(['/', ':']).next().unwrap_or_default();
    let allowed = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
    let caller: String = caller.chars().filter(|&c| allowed(c)).collect();
    let name = if caller.is_empty() { prefix.to_owned() } else { format!("{prefix}-{caller}") };
    name.chars().take(64).collect()
}

/// Assumes the role once (so that a denial is reported before the scan) and returns an SDK
/// configuration for the account whose credentials renew themselves.
pub async fn account_config(base: &SdkConfig, request: RoleRequest) -> Result<SdkConfig, ApiError> {
    let assumer =
        Assumer { sts: aws_sdk_sts::Client::new(base), request, current: Mutex::new(None) };
    let first = assumer.assume().await?;
    *assumer.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(first);
    let provider = SharedCredentialsProvider::new(assumer);
    Ok(base.to_builder().credentials_provider(provider).build())
}

#[derive(Debug)]
struct Assumer {
    sts: aws_sdk_sts::Client,
    request: RoleRequest,
    current: Mutex<Option<Credentials>>,
}

impl Assumer {
    async fn assume(&self) -> Result<Credentials, ApiError> {
        let output = self
            .sts
            .assume_role()
            .role_arn(&self.request.role_arn)
            .role_session_name(&self.request.session_name)
            .set_external_id(self.request.external_id.clone())
            .duration_seconds(SESSION_SECONDS)
            .send()
            .await
            .map_err(|e| ApiError::from_sdk(&e))?;
        let Some(c) = output.credentials() else {
            return Err(ApiError::other("AssumeRole answered without credentials"));
        };
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            expiry,
            "imds-sweep-assume-role",
        ))
    }

    fn fresh(&self) -> Option<Credentials> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.clone().filter(|c| match c.expiry() {
            Some(expiry) => expiry > SystemTime::now() + REFRESH_MARGIN,
            None => true,
        })
    }
}

impl ProvideCredentials for Assumer {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            if let Some(credentials) = self.fresh() {
                return Ok(credentials);
            }
            let renewed =
                self.assume().await.map_err(|e| CredentialsError::provider_error(e.to_string()))?;
            *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(renewed.clone());
            Ok(renewed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(arn: &str) -> CallerIdentity {
        CallerIdentity { account_id: "123456789012".into(), arn: arn.into() }
    }

    #[test]
    fn role_arn_follows_the_caller_partition() {
        let gov = caller("arn:aws-us-gov:iam::123456789012:user/alice");
        let request = RoleRequest::new(&gov, "222222222222", "Audit", "imds-sweep", None);
        assert_eq!(request.role_arn, "arn:aws-us-gov:iam::222222222222:role/Audit");
        assert_eq!(request.session_name, "imds-sweep-alice");
    }

    #[test]
    fn session_names_keep_only_what_sts_accepts() {
        let arn = "arn:aws:sts::123456789012:assumed-role/Admin/alice smith@example.com";
        assert_eq!(session_name("imds-sweep", arn), "imds-sweep-alicesmith@example.com");
        assert_eq!(
            session_name("p", &format!("arn:aws:iam::1:user/{}", "x".repeat(100))).len(),
            64
        );
        assert_eq!(session_name("imds-sweep", "arn:aws:iam::1:root"), "imds-sweep-root");
    }
}
