//! The Organizations layer: the only module that touches Organizations SDK types. It tells
//! whether the caller can list the organization, lists its accounts, and walks OUs.

use std::collections::BTreeSet;

use aws_config::SdkConfig;
use aws_sdk_organizations::Client;
use aws_sdk_organizations::types::Account;

use crate::aws_error::ApiError;
use crate::pacer::Pacer;

/// An account as the organization lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAccount {
    pub id: String,
    pub name: Option<String>,
    /// ACTIVE, SUSPENDED, PENDING_CLOSURE, ...
    pub state: String,
}

/// What the caller's credentials can see of an organization.
#[derive(Debug, Clone)]
pub enum Visibility {
    /// The caller's account is in no organization.
    NotInOrganization,
    /// The organization cannot even be described.
    CannotDescribe(ApiError),
    /// A member account that may not list the organization's accounts.
    CannotList { organization_id: String, error: ApiError },
    /// Management account or delegated administrator, with every account of the organization.
    CanList { organization_id: String, management_account_id: String, accounts: Vec<OrgAccount> },
}

/// Organizations calls with the caller's credentials.
#[derive(Debug, Clone)]
pub struct Organizations {
    client: Client,
}

impl Organizations {
    pub fn new(config: &SdkConfig) -> Self {
        Organizations { client: Client::new(config) }
    }

    /// DescribeOrganization and ListAccounts at once, since an organization sweep needs the
    /// list anyway: one round trip less before the first account is entered. Whether the
    /// caller is in an organization is told by DescribeOrganization alone (moto answers
    /// ListAccounts with an empty list outside one).
    pub async fn visibility(&self, pacer: &Pacer) -> Result<Visibility, ApiError> {
        let (described, listed) = tokio::join!(
            pacer.run_global(self.client.describe_organization().send()),
            pacer.run_global(self.accounts())
        );
        let described = match described {
            Ok(output) => output,
            Err(e) => {
                let error = ApiError::from_sdk(&e);
                return match error.code.as_deref() {
                    Some("AWSOrganizationsNotInUseException") => Ok(Visibility::NotInOrganization),
                    _ if error.kind == crate::aws_error::ApiErrorKind::AccessDenied => {
                        Ok(Visibility::CannotDescribe(error))
                    }
                    _ => Err(error),
                };
            }
        };
        let organization = described.organization();
        let organization_id = organization.and_then(|o| o.id()).unwrap_or_default().to_owned();
        let management_account_id =
            organization.and_then(|o| o.master_account_id()).unwrap_or_default().to_owned();
        match listed {
            Ok(accounts) => {
                Ok(Visibility::CanList { organization_id, management_account_id, accounts })
            }
            Err(error) if error.kind == crate::aws_error::ApiErrorKind::AccessDenied => {
                Ok(Visibility::CannotList { organization_id, error })
            }
            Err(error) => Err(error),
        }
    }

    /// Every account of the organization, in every state, sorted by id.
    async fn accounts(&self) -> Result<Vec<OrgAccount>, ApiError> {
        let mut pages = self.client.list_accounts().into_paginator().send();
        let mut accounts = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ApiError::from_sdk(&e))?;
            accounts.extend(page.accounts().iter().filter_map(account_of));
        }
        accounts.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(accounts)
    }

    /// The ids of every account under `parent` (an OU or root), nested OUs included.
    pub async fn accounts_under(&self, parent: &str) -> Result<BTreeSet<String>, ApiError> {
        let mut accounts = BTreeSet::new();
        let mut parents = vec![parent.to_owned()];
        while let Some(parent) = parents.pop() {
            let mut pages =
                self.client.list_accounts_for_parent().parent_id(&parent).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| ApiError::from_sdk(&e))?;
                accounts.extend(page.accounts().iter().filter_map(|a| a.id().map(str::to_owned)));
            }
            let mut pages = self
                .client
                .list_organizational_units_for_parent()
                .parent_id(&parent)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| ApiError::from_sdk(&e))?;
                let children = page.organizational_units().iter().filter_map(|ou| ou.id());
                parents.extend(children.map(str::to_owned));
            }
        }
        Ok(accounts)
    }
}

fn account_of(account: &Account) -> Option<OrgAccount> {
    Some(OrgAccount {
        id: account.id()?.to_owned(),
        name: account.name().map(str::to_owned),
        state: state_of(account.state().map(|s| s.as_str()), account.status().map(|s| s.as_str())),
    })
}

/// `State` replaced the retired `Status` field; older answers carry only `Status`.
fn state_of(state: Option<&str>, status: Option<&str>) -> String {
    state.or(status).unwrap_or("UNKNOWN").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_falls_back_to_the_retired_status_field() {
        assert_eq!(state_of(Some("PENDING_CLOSURE"), Some("ACTIVE")), "PENDING_CLOSURE");
        assert_eq!(state_of(None, Some("SUSPENDED")), "SUSPENDED");
        assert_eq!(state_of(None, None), "UNKNOWN");
    }
}
