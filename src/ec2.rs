//! The EC2 layer: the only module that touches EC2 SDK types. Everything above it works with
//! the compact records defined here.

use aws_config::{Region, SdkConfig};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    HttpTokensState, Instance, InstanceMetadataEndpointState, InstanceMetadataOptionsState,
    InstanceStateName,
};
use aws_smithy_runtime::client::retries::RetryPartition;
use serde::Serialize;

use crate::aws_error::ApiError;

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
}

/// What ModifyInstanceMetadataOptions answered about the new settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeState {
    Applied,
    Pending,
}

/// EC2 calls for one account in one region.
#[derive(Debug, Clone)]
pub struct Ec2 {
    client: Client,
}

impl Ec2 {
    /// A client for `region` of `account`, sharing the account's credentials, HTTP client and
    /// endpoint. Each account-region gets its own retry partition: EC2 throttles per account
    /// and region, so one throttled region must not drain the retry budget of another.
    pub fn new(config: &SdkConfig, account: &str, region: &str) -> Self {
        let conf = aws_sdk_ec2::config::Builder::from(config)
            .region(Region::new(region.to_owned()))
            .retry_partition(RetryPartition::new(format!(
                "imds-sweep/{account}/{region}"
            )))
            .build();
        Ec2 {
            client: Client::from_conf(conf),
        }
    }

    /// Every region of the partition with whether this account may use it, sorted by name.
    ///
    /// AllRegions is asked for and the opt-in status filtered here, so that a region the
    /// user named but that is not enabled can be reported as such.
    pub async fn regions(&self) -> Result<Vec<RegionInfo>, ApiError> {
        let output = self
            .client
            .describe_regions()
            .all_regions(true)
            .send()
            .await
            .map_err(|e| ApiError::from_sdk(&e))?;
        let mut regions: Vec<RegionInfo> = output
            .regions()
            .iter()
            .filter_map(|r| {
                let name = r.region_name()?.to_owned();
                let status = r.opt_in_status().unwrap_or("opt-in-not-required");
                Some(RegionInfo {
                    name,
                    enabled: ENABLED_OPT_IN.contains(&status),
                })
            })
            .collect();
        regions.sort_by(|a, b| a.name.cmp(&b.name));
        regions.dedup_by(|a, b| a.name == b.name);
        Ok(regions)
    }

    /// Every instance in every state, following DescribeInstances pages to the end.
    pub async fn instances(&self) -> Result<Vec<InstanceRecord>, ApiError> {
        let mut pages = self.client.describe_instances().into_paginator().send();
        let mut records = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ApiError::from_sdk(&e))?;
            let instances = page.reservations().iter().flat_map(|r| r.instances());
            records.extend(instances.filter_map(record_of));
        }
        Ok(records)
    }

    /// Sets HttpTokens=required and sends no other option, so every other setting stays.
    pub async fn require_tokens(&self, instance_id: &str) -> Result<ChangeState, ApiError> {
        let output = self
            .client
            .modify_instance_metadata_options()
            .instance_id(instance_id)
            .http_tokens(HttpTokensState::Required)
            .send()
            .await
            .map_err(|e| ApiError::from_sdk(&e))?;
        let state = output.instance_metadata_options().and_then(|o| o.state());
        Ok(match state {
            Some(InstanceMetadataOptionsState::Applied) => ChangeState::Applied,
            _ => ChangeState::Pending,
        })
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
        http_tokens: options
            .and_then(|o| o.http_tokens())
            .map(|t| t.as_str().to_owned()),
        http_endpoint: options
            .and_then(|o| o.http_endpoint())
            .map(|e| InstanceMetadataEndpointState::as_str(e).to_owned()),
        hop_limit: options.and_then(|o| o.http_put_response_hop_limit()),
    })
}
