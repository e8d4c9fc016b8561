//! Which accounts a sweep reaches, and with what credentials: the caller's own account with
//! the caller's credentials, every other through its assumed role.

use std::collections::BTreeSet;

use futures_util::{StreamExt, stream};

use crate::accounts::{self, OuMembers, Reach, SkipKind, SkippedAccount};
use crate::assume::{self, RoleRequest};
use crate::error::Error;
use crate::mode::Mode;
use crate::organization::{OrgAccount, Organizations};
use crate::pacer::Pacer;
use crate::scan::{Access, AccountTarget};
use crate::session::Session;
use crate::settings::Settings;

/// A single-account sweep: the caller's account, unless the config's account lists leave it
/// out. OU lists cannot be checked without the organization, so they are an error here
/// rather than silently ignored.
pub fn single_account_targets(
    settings: &Settings,
    session: &Session,
    mode: &Mode,
) -> Result<(Vec<AccountTarget>, Vec<SkippedAccount>), Error> {
    let ous = &settings.organizational_units;
    if !ous.include.is_empty() || !ous.exclude.is_empty() {
        return Err(Error::OusNeedOrganization {
            path: config_name(settings),
            reason: mode.reason.clone(),
        });
    }
    let caller =
        OrgAccount { id: session.identity.account_id.clone(), name: None, state: "ACTIVE".into() };
    let selection =
        accounts::select(&[caller], &settings.accounts, &OuMembers::default(), Reach::CallerOnly);
    let targets = selection.sweep.into_iter().map(|a| caller_target(session, a.name)).collect();
    Ok((targets, selection.skipped))
}

fn config_name(settings: &Settings) -> String {
    settings.config_path.as_ref().map_or_else(String::new, |p| p.display().to_string())
}

pub fn caller_target(session: &Session, name: Option<String>) -> AccountTarget {
    AccountTarget {
        account_id: session.identity.account_id.clone(),
        name,
        access: Access::CallerCredentials,
        config: session.config.clone(),
    }
}

/// The organization as the mode decision found it.
pub struct Org<'a> {
    pub api: &'a Organizations,
    /// Every account of the organization, in every state.
    pub accounts: Vec<OrgAccount>,
    /// The management account, named in the hint when it cannot be entered.
    pub management: Option<&'a str>,
    /// The organization's id, named when the config refers to an account outside it.
    pub id: &'a str,
}

/// Applies the config's account and OU lists to the organization's accounts and enters each
/// selected account; accounts that cannot be entered are returned as skipped.
pub async fn organization_targets(
    settings: &Settings,
    session: &Session,
    org: Org<'_>,
    pacer: &Pacer,
) -> Result<(Vec<AccountTarget>, Vec<SkippedAccount>), Error> {
    let ous = ou_members(settings, org.api).await?;
    let selection = accounts::select(&org.accounts, &settings.accounts, &ous, Reach::Organization);
    if let Some(account) = selection.unknown_excluded.first() {
        return Err(Error::UnknownExcludedAccount {
            path: config_name(settings),
            account: account.clone(),
            organization: org.id.to_owned(),
        });
    }
    let management = org.management;

    let reached: Vec<_> = stream::iter(selection.sweep)
        .map(|account| pacer.run_global(enter(settings, session, account, management)))
        .buffer_unordered(settings.concurrency)
        .collect()
        .await;
    let mut targets = Vec::new();
    let mut skipped = selection.skipped;
    for result in reached {
        match result {
            Ok(target) => targets.push(target),
            Err(unreachable) => skipped.push(unreachable),
        }
    }
    Ok((targets, skipped))
}

async fn ou_members(
    settings: &Settings,
    organizations: &Organizations,
) -> Result<OuMembers, Error> {
    let filter = &settings.organizational_units;
    let expand = |ous: Vec<String>| async move {
        let mut members = BTreeSet::new();
        for ou in ous {
            match organizations.accounts_under(&ou).await {
                Ok(ids) => members.extend(ids),
                Err(error) => return Err(Error::UnknownOu { ou, error }),
            }
        }
        Ok(members)
    };
    let included =
        if filter.include.is_empty() { None } else { Some(expand(filter.include.clone()).await?) };
    Ok(OuMembers { included, excluded: expand(filter.exclude.clone()).await? })
}

/// The caller's own account is swept with its own credentials; every other through its role.
pub async fn enter(
    settings: &Settings,
    session: &Session,
    account: OrgAccount,
    management: Option<&str>,
) -> Result<AccountTarget, SkippedAccount> {
    if account.id == session.identity.account_id {
        return Ok(caller_target(session, account.name));
    }
    let roles = &settings.assume_role;
    let (role, external_id) = roles.for_account(&account.id);
    let request = RoleRequest::new(
        &session.identity,
        &account.id,
        role,
        &roles.session_name_prefix,
        external_id,
    );
    let role_arn = request.role_arn.clone();
    match assume::account_config(&session.config, request).await {
        Ok(config) => Ok(AccountTarget {
            account_id: account.id,
            name: account.name,
            access: Access::AssumedRole { role_arn },
            config,
        }),
        Err(error) => {
            tracing::info!(account = %account.id, %error, "cannot assume role");
            let external =
                if external_id.is_some() { " with the configured external id" } else { "" };
            let lacking = if management == Some(account.id.as_str()) {
                // A delegated administrator's sweep reaches the management account like any
                // other, but Organizations never creates a role there.
                "the management account has no"
            } else {
                "accounts invited into the organization have no"
            };
            let hint = format!(
                "the role {role_arn} must exist and trust {} for sts:AssumeRole{external} \
                 ({lacking} {role} unless someone created it; set another role with [[account]] \
                 role_name, or leave the account out with [accounts] exclude)",
                session.identity.arn
            );
            Err(SkippedAccount {
                account_id: account.id,
                name: account.name,
                kind: SkipKind::Unreachable,
                reason: format!("cannot assume {role}: {error}"),
                hint: Some(hint),
                error: Some(error),
            })
        }
    }
}
