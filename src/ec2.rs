//! The EC2 layer: the only module that touches EC2 SDK types. Everything above it works with
//! the compact records defined here.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_config::{Region, SdkConfig};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    Filter, HttpTokensEnforcedState, HttpTokensState, Instance, InstanceMetadataEndpointState,
    InstanceMetadataOptionsState, InstanceStateName, ManagedBy,
};
use aws_smithy_runtime::client::retries::RetryPartition;
use serde::Serialize;

use crate::aws_error::ApiError;
use crate::pacer::{ActionClass, Pacer};

/// The opt-in states of a region the account can use.
const ENABLED_OPT_IN: [&str; 2] = ["opt-in-not-required", "opted-in"];

/// An EC2 region as DescribeRegions lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    pub name: String,
    pub enabled: bool,
}

/// The metadata-relevant facts about one instance; nothing else of the response is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceRecord {
    pub instance_id: String,
    pub name: Option<String>,
    pub state: String,
    pub http_tokens: Option<String>,
    pub http_endpoint: Option<String>,
    pub hop_limit: Option<i32>,
    /// `pending` while a metadata change is being applied, else `applied`.
    pub metadata_state: Option<String>,
}

/// The account-level IMDS defaults of one region, as far as they constrain changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataDefaults {
    /// New instances must use IMDSv2; instances cannot be set back to optional.
    pub tokens_enforced: bool,
    /// The defaults are set by a declarative policy of the organization.
    pub managed_by_policy: bool,
    pub message: Option<String>,
}

/// Instance ids per DescribeInstances call when reading instances back by id.
const IDS_PER_CALL: usize = 200;

/// Instances per DescribeInstances page when scanning a region, the most EC2 allows. Without
/// it EC2 answers a whole region at once, which AWS warns may be throttled or time out in a
/// large account.
const SCAN_PAGE_SIZE: i32 = 1000;

/// What ModifyInstanceMetadataOptions answered about the new settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeState {
    Applied,
    Pending,
}

/// EC2 calls for one account in one region, each paced by the run's [`Pacer`].
#[derive(Debug, Clone)]
pub struct Ec2 {
    client: Client,
    pacer: Arc<Pacer>,
    account: String,
    region: String,
}

impl Ec2 {
    /// A client for `region` of `account`, sharing the account's credentials, HTTP client and
    /// endpoint. Each account-region gets its own retry partition: EC2 throttles per account
    /// and region, so one throttled region must not drain the retry budget of another.
    pub fn new(config: &SdkConfig, pacer: &Arc<Pacer>, account: &str, region: &str) -> Self {
        let conf = aws_sdk_ec2::config::Builder::from(config)
            .region(Region::new(region.to_owned()))
            .retry_partition(RetryPartition::new(format!("imds-sweep/{account}/{region}")))
            .build();
        Ec2 {
            client: Client::from_conf(conf),
            pacer: Arc::clone(pacer),
            account: account.to_owned(),
            region: region.to_owned(),
        }
    }

    async fn paced<T>(&self, class: ActionClass, call: impl std::future::Future<Output = T>) -> T {
        self.pacer.run(&self.account, &self.region, class, call).await
    }

    /// Every region of the partition with whether this account may use it, sorted by name.
    ///
    /// AllRegions is asked for and the opt-in status filtered here, so that a region the
    /// user named but that is not enabled can be reported as such.
    pub async fn regions(&self) -> Result<Vec<RegionInfo>, ApiError> {
        let call = self.client.describe_regions().all_regions(true).send();
        let output =
            self.paced(ActionClass::Describe, call).await.map_err(|e| ApiError::from_sdk(&e))?;
        let mut regions: Vec<RegionInfo> = output
            .regions()
            .iter()
            .filter_map(|r| {
                let name = r.region_name()?.to_owned();
                let status = r.opt_in_status().unwrap_or("opt-in-not-required");
                Some(RegionInfo { name, enabled: ENABLED_OPT_IN.contains(&status) })
            })
            .collect();
        regions.sort_by(|a, b| a.name.cmp(&b.name));
        regions.dedup_by(|a, b| a.name == b.name);
        Ok(regions)
    }

    /// Every instance in every state, following DescribeInstances pages to the end.
    pub async fn instances(&self) -> Result<Vec<InstanceRecord>, ApiError> {
        let request = self.client.describe_instances().max_results(SCAN_PAGE_SIZE);
        let mut pages = request.into_paginator().send();
        let mut records = Vec::new();
        while let Some(page) = self.paced(ActionClass::Describe, pages.next()).await {
            let page = page.map_err(|e| ApiError::from_sdk(&e))?;
            let instances = page.reservations().iter().flat_map(|r| r.instances());
            records.extend(instances.filter_map(record_of));
        }
        Ok(records)
    }

    /// The given instances as they are now, by id; ids that no longer exist are simply absent.
    /// A filter is used rather than InstanceIds, which fails the whole call on one unknown id.
    pub async fn instances_by_id(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, InstanceRecord>, ApiError> {
        let mut records = BTreeMap::new();
        for batch in ids.chunks(IDS_PER_CALL) {
            let filter =
                Filter::builder().name("instance-id").set_values(Some(batch.to_vec())).build();
            let mut pages =
                self.client.describe_instances().filters(filter).into_paginator().send();
            while let Some(page) = self.paced(ActionClass::Describe, pages.next()).await {
                let page = page.map_err(|e| ApiError::from_sdk(&e))?;
                let instances = page.reservations().iter().flat_map(|r| r.instances());
                records.extend(instances.filter_map(record_of).map(|r| (r.instance_id.clone(), r)));
            }
        }
        Ok(records)
    }

    /// The account's IMDS defaults in this region.
    pub async fn metadata_defaults(&self) -> Result<MetadataDefaults, ApiError> {
        let call = self.client.get_instance_metadata_defaults().send();
        let output =
            self.paced(ActionClass::Describe, call).await.map_err(|e| ApiError::from_sdk(&e))?;
        let Some(level) = output.account_level() else {
            return Ok(MetadataDefaults::default());
        };
        Ok(MetadataDefaults {
            tokens_enforced: level.http_tokens_enforced()
                == Some(&HttpTokensEnforcedState::Enabled),
            managed_by_policy: level.managed_by() == Some(&ManagedBy::DeclarativePolicy),
            message: level.managed_exception_message().map(str::to_owned),
        })
    }

    /// Sets HttpTokens to `tokens` and sends no other option, so every other setting stays.
    ///
    /// Waits for the modification bucket and a place in flight first, then asks `ready`
    /// whether to go on: the caller checks for Ctrl-C and journals the attempt there, right
    /// before the request leaves. `None` when `ready` said no.
    pub async fn set_tokens_when(
        &self,
        instance_id: &str,
        tokens: &str,
        ready: impl FnOnce() -> bool,
    ) -> Option<Result<ChangeState, ApiError>> {
        let call = async {
            if !ready() {
                return None;
            }
            let request = self
                .client
                .modify_instance_metadata_options()
                .instance_id(instance_id)
                .http_tokens(HttpTokensState::from(tokens));
            Some(request.send().await)
        };
        let output = match self.paced(ActionClass::ModifyMetadata, call).await? {
            Ok(output) => output,
            Err(e) => return Some(Err(ApiError::from_sdk(&e))),
        };
        let state = output.instance_metadata_options().and_then(|o| o.state());
        Some(Ok(match state {
            Some(InstanceMetadataOptionsState::Applied) => ChangeState::Applied,
            _ => ChangeState::Pending,
        }))
    }
}

fn record_of(instance: &Instance) -> Option<InstanceRecord> {
    let options = instance.metadata_options();
    let name = instance
        .tags()
        .iter()
        .find(|t| t.key() == Some("Name"))
        .and_then(|t| t.value())
        .map(str::to_owned);
    Some(InstanceRecord {
        instance_id: instance.instance_id()?.to_owned(),
        name,
        state: instance
            .state()
            .and_then(|s| s.name())
            .map_or("unknown", InstanceStateName::as_str)
            .to_owned(),
        http_tokens: options.and_then(|o| o.http_tokens()).map(|t| t.as_str().to_owned()),
        http_endpoint: options
            .and_then(|o| o.http_endpoint())
            .map(|e| InstanceMetadataEndpointState::as_str(e).to_owned()),
        hop_limit: options.and_then(|o| o.http_put_response_hop_limit()),
        metadata_state: options.and_then(|o| o.state()).map(|s| s.as_str().to_owned()),
    })
}
