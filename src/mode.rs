//! The mode decision, made before any scan and printed first: organization or single account.

use serde::Serialize;

use crate::error::Error;
use crate::organization::Visibility;
use crate::settings::ModeSetting;

/// Which way the sweep covers accounts, and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mode {
    pub mode: ModeKind,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub management_account_id: Option<String>,
}

/// The two ways of sweeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeKind {
    Organization,
    SingleAccount,
}

impl ModeKind {
    /// The name used in JSON and in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            ModeKind::Organization => "organization",
            ModeKind::SingleAccount => "single_account",
        }
    }
}

impl Mode {
    fn single(reason: String) -> Mode {
        Mode {
            mode: ModeKind::SingleAccount,
            reason,
            organization_id: None,
            management_account_id: None,
        }
    }

    /// The first line of the text report.
    pub fn headline(&self) -> String {
        match self.mode {
            ModeKind::Organization => format!("Mode: organization ({})", self.reason),
            ModeKind::SingleAccount => format!("Mode: single account ({})", self.reason),
        }
    }
}

/// Whether the caller's credentials need the organization probed at all.
pub fn needs_probe(setting: ModeSetting) -> bool {
    setting != ModeSetting::SingleAccount
}

/// Chooses the mode from what the user asked and what the credentials can see.
pub fn choose(
    setting: ModeSetting,
    caller_account: &str,
    seen: Option<&Visibility>,
) -> Result<Mode, Error> {
    let Some(seen) = seen.filter(|_| needs_probe(setting)) else {
        return Ok(Mode::single("single-account mode was asked for".into()));
    };
    let why_not = match seen {
        Visibility::CanList { organization_id, management_account_id, .. } => {
            let role = if management_account_id == caller_account {
                "the management account"
            } else {
                "a delegated administrator"
            };
            return Ok(Mode {
                mode: ModeKind::Organization,
                reason: format!("account {caller_account} is {role} of {organization_id}"),
                organization_id: Some(organization_id.clone()),
                management_account_id: Some(management_account_id.clone()),
            });
        }
        Visibility::NotInOrganization => {
            format!("account {caller_account} is not in an organization")
        }
        Visibility::CannotDescribe(error) => {
            format!("the organization cannot be described from account {caller_account} ({error})")
        }
        Visibility::CannotList { organization_id, error } => format!(
            "account {caller_account} is in {organization_id} but may not list its accounts ({})",
            error.code.as_deref().unwrap_or("access denied")
        ),
    };
    match setting {
        ModeSetting::Organization => Err(Error::OrganizationUnavailable(why_not)),
        _ => Ok(Mode::single(why_not)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws_error::{ApiError, ApiErrorKind};

    fn denied() -> ApiError {
        ApiError {
            kind: ApiErrorKind::AccessDenied,
            code: Some("AccessDeniedException".into()),
            message: None,
            request_id: None,
        }
    }

    fn can_list(management: &str) -> Visibility {
        Visibility::CanList {
            organization_id: "o-abc".into(),
            management_account_id: management.into(),
            accounts: Vec::new(),
        }
    }

    #[test]
    fn the_management_account_gets_organization_mode() {
        let mode = choose(ModeSetting::Auto, "111111111111", Some(&can_list("111111111111")))
            .expect("mode");
        assert_eq!(mode.mode, ModeKind::Organization);
        assert!(mode.reason.contains("management account of o-abc"), "{}", mode.reason);
        let delegated = choose(ModeSetting::Auto, "222222222222", Some(&can_list("111111111111")));
        assert!(delegated.expect("mode").reason.contains("delegated administrator"));
    }

    #[test]
    fn members_and_loners_fall_back_to_single_account_with_the_reason() {
        let member = Visibility::CannotList { organization_id: "o-abc".into(), error: denied() };
        let mode = choose(ModeSetting::Auto, "222222222222", Some(&member)).expect("mode");
        assert_eq!(mode.mode, ModeKind::SingleAccount);
        assert!(mode.reason.contains("is in o-abc") && mode.reason.contains("AccessDenied"));
        let alone =
            choose(ModeSetting::Auto, "3", Some(&Visibility::NotInOrganization)).expect("mode");
        assert!(alone.reason.contains("not in an organization"));
    }

    #[test]
    fn forcing_organization_mode_where_impossible_is_an_error_saying_why() {
        let err = choose(ModeSetting::Organization, "3", Some(&Visibility::NotInOrganization))
            .expect_err("impossible");
        assert!(err.to_string().contains("not in an organization"), "{err}");
    }

    #[test]
    fn forcing_single_account_mode_wins() {
        let mode = choose(ModeSetting::SingleAccount, "1", Some(&can_list("1"))).expect("mode");
        assert_eq!(mode.mode, ModeKind::SingleAccount);
    }
}
