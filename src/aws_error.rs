//! Classification of AWS API errors by their error code, never by message text.
//!
//! Every SDK error the tool acts on is turned into an [`ApiError`] here, so the rest of the
//! program sees a kind it can branch on, plus the code, a short message and the request id
//! for the user.

use std::fmt;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_types::request_id::RequestId;
use serde::Serialize;

use crate::text::{one_line, truncate};

/// The longest AWS error message shown; encoded authorization messages can be kilobytes.
const MAX_MESSAGE: usize = 240;

/// What the tool can do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiErrorKind {
    Throttled,
    AccessDenied,
    InstanceNotFound,
    IncorrectState,
    RegionNotEnabled,
    CredentialsInvalid,
    CredentialsExpired,
    DryRunOperation,
    Timeout,
    Network,
    Other,
}

/// One failed AWS call, reduced to what a person or a script needs.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    pub kind: ApiErrorKind,
    pub code: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
}

impl ApiError {
    /// Builds the error from any SDK error; the request id is kept for AWS support cases.
    pub fn from_sdk<E, R>(err: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata,
        SdkError<E, R>: RequestId,
    {
        let (kind, message) = match err {
            SdkError::TimeoutError(_) => (ApiErrorKind::Timeout, Some("request timed out".into())),
            SdkError::DispatchFailure(failure) => {
                if failure.is_timeout() {
                    (ApiErrorKind::Timeout, Some("connection timed out".into()))
                } else if failure.is_io() {
                    (ApiErrorKind::Network, Some("connection failed".into()))
                } else {
                    (ApiErrorKind::Network, Some("the request could not be sent".into()))
                }
            }
            SdkError::ConstructionFailure(_) => {
                (ApiErrorKind::Other, Some("the request could not be built".into()))
            }
            SdkError::ResponseError(_) => (
                ApiErrorKind::Other,
                Some(
                    "the response could not be read (cut short or not what the API returns)".into(),
                ),
            ),
            _ => (kind_of(err.code()), err.message().map(str::to_owned)),
        };
        ApiError {
            kind,
            code: err.code().map(str::to_owned),
            message: message.map(|m| truncate(&one_line(&m), MAX_MESSAGE)),
            request_id: err.request_id().map(str::to_owned),
        }
    }

    /// An error the tool found itself, without an AWS error code.
    pub fn other(message: &str) -> Self {
        ApiError {
            kind: ApiErrorKind::Other,
            code: None,
            message: Some(message.into()),
            request_id: None,
        }
    }

    /// What the user can do about it, where there is something to do.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self.kind {
            ApiErrorKind::Throttled => "AWS throttled the request; re-run later or lower the pace",
            ApiErrorKind::AccessDenied => {
                "the caller lacks this permission or an SCP denies it (see docs/iam-policy.json)"
            }
            ApiErrorKind::InstanceNotFound => "the instance may have been terminated",
            ApiErrorKind::IncorrectState => "the instance is in a state that cannot be modified",
            ApiErrorKind::RegionNotEnabled => "the region is not enabled for this account",
            ApiErrorKind::CredentialsInvalid | ApiErrorKind::CredentialsExpired => {
                "refresh the credentials and run again"
            }
            ApiErrorKind::Timeout | ApiErrorKind::Network => {
                "check the network path to the AWS endpoint and run again"
            }
            ApiErrorKind::DryRunOperation | ApiErrorKind::Other => return None,
        })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.code, &self.message) {
            (Some(code), Some(message)) => write!(f, "{code}: {message}")?,
            (Some(code), None) => write!(f, "{code}")?,
            (None, Some(message)) => write!(f, "{message}")?,
            (None, None) => write!(f, "unknown error")?,
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// Maps an AWS error code to a kind. Codes come from the EC2, STS and Organizations APIs.
pub fn kind_of(code: Option<&str>) -> ApiErrorKind {
    match code.unwrap_or_default() {
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "TooManyRequestsException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "SlowDown" => ApiErrorKind::Throttled,
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => {
            ApiErrorKind::AccessDenied
        }
        "InvalidInstanceID.NotFound" | "InvalidInstanceID.Malformed" => {
            ApiErrorKind::InstanceNotFound
        }
        "IncorrectInstanceState" | "IncorrectState" => ApiErrorKind::IncorrectState,
        "OptInRequired" | "AuthFailure" | "UnrecognizedClientException" => {
            ApiErrorKind::RegionNotEnabled
        }
        "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "InvalidAccessKeyId"
        | "IncompleteSignature" => ApiErrorKind::CredentialsInvalid,
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" => {
            ApiErrorKind::CredentialsExpired
        }
        "DryRunOperation" => ApiErrorKind::DryRunOperation,
        _ => ApiErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_codes_of_every_service_are_throttled() {
        for code in ["RequestLimitExceeded", "Throttling", "ThrottlingException"] {
            assert_eq!(kind_of(Some(code)), ApiErrorKind::Throttled, "{code}");
        }
    }

    #[test]
    fn denied_and_missing_instances_are_told_apart() {
        assert_eq!(kind_of(Some("UnauthorizedOperation")), ApiErrorKind::AccessDenied);
        assert_eq!(kind_of(Some("InvalidInstanceID.NotFound")), ApiErrorKind::InstanceNotFound);
        assert_eq!(kind_of(Some("ExpiredToken")), ApiErrorKind::CredentialsExpired);
        assert_eq!(kind_of(Some("SomethingNew")), ApiErrorKind::Other);
        assert_eq!(kind_of(None), ApiErrorKind::Other);
    }

    #[test]
    fn display_names_code_message_and_request_id() {
        let err = ApiError {
            kind: ApiErrorKind::AccessDenied,
            code: Some("UnauthorizedOperation".into()),
            message: Some("not allowed".into()),
            request_id: Some("req-1".into()),
        };
        assert_eq!(err.to_string(), "UnauthorizedOperation: not allowed (request id req-1)");
    }
}
