//! Account selection: which of the organization's accounts the sweep covers, and why the
//! others are left out. Pure, so every rule is unit-tested here.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::aws_error::ApiError;
use crate::organization::OrgAccount;
use crate::settings::IdFilter;

/// Why an account was not swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipKind {
    /// The config file excludes it, by id or by OU.
    Excluded,
    /// SUSPENDED, PENDING_CLOSURE or another state than ACTIVE.
    NotActive,
    /// Included by id in the config, but not an account of the organization.
    NotInOrganization,
    /// Included by id in the config, but a single-account sweep reaches only the caller's.
    OutOfReach,
    /// Its role could not be assumed.
    Unreachable,
    /// Reached, but its regions could not be listed.
    ScanFailed,
}

/// An account left out of the sweep, with the reason shown to the user.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedAccount {
    pub account_id: String,
    pub name: Option<String>,
    pub kind: SkipKind,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

impl SkippedAccount {
    /// Whether the user asked for this account and did not get it swept.
    pub fn is_error(&self) -> bool {
        matches!(
            self.kind,
            SkipKind::NotInOrganization
                | SkipKind::OutOfReach
                | SkipKind::Unreachable
                | SkipKind::ScanFailed
        )
    }

    fn new(account: &OrgAccount, kind: SkipKind, reason: String) -> Self {
        SkippedAccount {
            account_id: account.id.clone(),
            name: account.name.clone(),
            kind,
            reason,
            hint: None,
            error: None,
        }
    }
}

/// The accounts to sweep and those left out.
#[derive(Debug, Default)]
pub struct Selection {
    pub sweep: Vec<OrgAccount>,
    pub skipped: Vec<SkippedAccount>,
    /// Ids of `[accounts] exclude` that are none of the accounts considered: in organization
    /// mode most likely a typo, which would leave the account meant in the sweep.
    pub unknown_excluded: Vec<String>,
}

/// Which accounts a sweep can reach at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Every account of the organization.
    Organization,
    /// The caller's own account only (single-account mode).
    CallerOnly,
}

/// OU restrictions, already expanded to account ids (nested OUs included).
#[derive(Debug, Default)]
pub struct OuMembers {
    /// `None`: no OU was included, so OUs do not restrict the sweep.
    pub included: Option<BTreeSet<String>>,
    pub excluded: BTreeSet<String>,
}

/// Applies the config's account and OU lists to the organization's accounts.
///
/// An account is in scope when nothing is included, or when it is included by id or lies in
/// an included OU; exclusion by id or OU wins over both. Only ACTIVE accounts are swept.
pub fn select(all: &[OrgAccount], accounts: &IdFilter, ous: &OuMembers, reach: Reach) -> Selection {
    let mut selection = Selection::default();
    let nothing_included = accounts.include.is_empty() && ous.included.is_none();
    for account in all {
        let by_id = accounts.include.contains(&account.id);
        let by_ou = ous.included.as_ref().is_some_and(|ids| ids.contains(&account.id));
        if !(nothing_included || by_id || by_ou) {
            continue;
        }
        let skip = |kind, reason: &str| SkippedAccount::new(account, kind, reason.to_owned());
        if accounts.exclude.contains(&account.id) {
            selection.skipped.push(skip(SkipKind::Excluded, "excluded by [accounts] exclude"));
        } else if ous.excluded.contains(&account.id) {
            let reason = "in an OU excluded by [organizational_units] exclude";
            selection.skipped.push(skip(SkipKind::Excluded, reason));
        } else if account.state != "ACTIVE" {
            let reason = format!("account state is {}", account.state);
            selection.skipped.push(skip(SkipKind::NotActive, &reason));
        } else {
            selection.sweep.push(account.clone());
        }
    }
    let known = |id: &String| all.iter().any(|a| &a.id == id);
    let (kind, reason) = match reach {
        Reach::Organization => (
            SkipKind::NotInOrganization,
            "included by [accounts] include, but not an account of this organization",
        ),
        Reach::CallerOnly => (
            SkipKind::OutOfReach,
            "included by [accounts] include, but a single-account sweep reaches only the \
             caller's account",
        ),
    };
    for id in accounts.include.iter().filter(|id| !known(id)) {
        let missing = OrgAccount { id: id.clone(), name: None, state: String::new() };
        selection.skipped.push(SkippedAccount::new(&missing, kind, reason.into()));
    }
    selection.unknown_excluded = accounts.exclude.iter().filter(|id| !known(id)).cloned().collect();
    selection
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org() -> Vec<OrgAccount> {
        [
            ("111111111111", "ACTIVE"),
            ("222222222222", "ACTIVE"),
            ("333333333333", "SUSPENDED"),
            ("444444444444", "ACTIVE"),
        ]
        .into_iter()
        .map(|(id, state)| OrgAccount {
            id: id.into(),
            name: Some(format!("n{id}")),
            state: state.into(),
        })
        .collect()
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn swept(selection: &Selection) -> Vec<&str> {
        selection.sweep.iter().map(|a| a.id.as_str()).collect()
    }

    fn skipped(selection: &Selection) -> Vec<(&str, SkipKind)> {
        selection.skipped.iter().map(|s| (s.account_id.as_str(), s.kind)).collect()
    }

    #[test]
    fn every_active_account_by_default_and_others_listed_with_their_state() {
        let selection =
            select(&org(), &IdFilter::default(), &OuMembers::default(), Reach::Organization);
        assert_eq!(swept(&selection), ["111111111111", "222222222222", "444444444444"]);
        assert_eq!(skipped(&selection), [("333333333333", SkipKind::NotActive)]);
        assert!(selection.skipped[0].reason.contains("SUSPENDED"));
        assert!(!selection.skipped[0].is_error());
    }

    #[test]
    fn exclusion_wins_and_is_listed() {
        let filter = IdFilter {
            include: ids(&["111111111111", "222222222222"]),
            exclude: ids(&["222222222222"]),
        };
        let selection = select(&org(), &filter, &OuMembers::default(), Reach::Organization);
        assert_eq!(swept(&selection), ["111111111111"]);
        assert_eq!(skipped(&selection), [("222222222222", SkipKind::Excluded)]);
    }

    #[test]
    fn ou_inclusion_adds_to_account_inclusion_and_ou_exclusion_wins() {
        let filter = IdFilter { include: ids(&["111111111111"]), exclude: vec![] };
        let ous = OuMembers {
            included: Some(["222222222222", "444444444444"].map(String::from).into()),
            excluded: ["444444444444".to_string()].into(),
        };
        let selection = select(&org(), &filter, &ous, Reach::Organization);
        assert_eq!(swept(&selection), ["111111111111", "222222222222"]);
        assert_eq!(skipped(&selection), [("444444444444", SkipKind::Excluded)]);
    }

    #[test]
    fn excluded_ids_that_match_no_account_are_named() {
        let filter = IdFilter { include: vec![], exclude: ids(&["222222222222", "222222222223"]) };
        let selection = select(&org(), &filter, &OuMembers::default(), Reach::Organization);
        assert_eq!(selection.unknown_excluded, ["222222222223"]);
        assert_eq!(
            skipped(&selection),
            [("222222222222", SkipKind::Excluded), ("333333333333", SkipKind::NotActive)]
        );
    }

    #[test]
    fn a_single_account_sweep_honours_the_account_lists() {
        let caller = &org()[..1];
        let excluded = IdFilter { include: vec![], exclude: ids(&["111111111111"]) };
        let selection = select(caller, &excluded, &OuMembers::default(), Reach::CallerOnly);
        assert!(selection.sweep.is_empty());
        assert_eq!(skipped(&selection), [("111111111111", SkipKind::Excluded)]);

        let elsewhere = IdFilter { include: ids(&["444444444444"]), exclude: vec![] };
        let selection = select(caller, &elsewhere, &OuMembers::default(), Reach::CallerOnly);
        assert!(selection.sweep.is_empty(), "the caller's account is not included");
        assert_eq!(skipped(&selection), [("444444444444", SkipKind::OutOfReach)]);
        assert!(selection.skipped[0].is_error());
    }

    #[test]
    fn an_included_account_outside_the_organization_is_reported() {
        let filter = IdFilter { include: ids(&["999999999999"]), exclude: vec![] };
        let selection = select(&org(), &filter, &OuMembers::default(), Reach::Organization);
        assert!(selection.sweep.is_empty());
        assert_eq!(skipped(&selection), [("999999999999", SkipKind::NotInOrganization)]);
        assert!(selection.skipped[0].is_error());
    }
}
