//! The scanner: every account's regions, every instance's metadata options, classified.
//! It takes an account's credentials and knows nothing of how they were obtained.

use std::sync::Arc;

use aws_config::SdkConfig;
use futures_util::StreamExt;
use futures_util::stream;
use serde::Serialize;
use tracing::{Instrument, debug, info, info_span};

use crate::aws_error::ApiError;
use crate::ec2::Ec2;
use crate::pacer::Pacer;
use crate::plan::{self, Finding, Status};
use crate::progress::Progress;
use crate::regions::{self, SkippedRegion};
use crate::settings::RegionFilter;

/// An account to sweep, with the credentials to do it.
#[derive(Debug, Clone)]
pub struct AccountTarget {
    pub account_id: String,
    pub name: Option<String>,
    pub access: Access,
    pub config: SdkConfig,
}

/// How the tool reaches an account; shown in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Access {
    /// The caller's own credentials (single-account mode, or the management account).
    CallerCredentials,
    /// A role assumed in the member account.
    AssumedRole { role_arn: String },
}

/// The result of scanning one account.
#[derive(Debug, Clone, Serialize)]
pub struct AccountScan {
    pub account_id: String,
    pub name: Option<String>,
    pub access: Access,
    pub regions: Vec<RegionScan>,
    pub skipped_regions: Vec<SkippedRegion>,
}

/// The instances of one region, sorted by instance id.
#[derive(Debug, Clone, Serialize)]
pub struct RegionScan {
    pub region: String,
    pub instances: Vec<Finding>,
}

/// Why an account could not be scanned at all.
#[derive(Debug)]
pub enum ScanError {
    /// DescribeRegions failed: the account's regions are unknown.
    Regions(ApiError),
    /// The user named a region that does not exist.
    UnknownRegion(regions::UnknownRegion),
}

/// How a scan is paced and shown.
#[derive(Debug, Clone, Copy)]
pub struct ScanPace<'a> {
    pub pacer: &'a Arc<Pacer>,
    pub progress: &'a Progress,
}

/// Scans every region that `filter` allows in every target, returning each target with its
/// scan (or why it could not be scanned), in the targets' order.
///
/// Region discovery runs for every account at once; then every account-region of the sweep
/// goes through one stream, as many at a time as the pacer lets in flight, so that neither a
/// large account nor many small ones leave the global cap idle, and the futures alive at once
/// stay bounded by that cap rather than by the size of the organization.
pub async fn scan_accounts(
    targets: Vec<AccountTarget>,
    filter: &RegionFilter,
    pace: ScanPace<'_>,
) -> Vec<(AccountTarget, Result<AccountScan, ScanError>)> {
    let discovered: Vec<Result<Discovered, ScanError>> = stream::iter(&targets)
        .map(|target| discover(target, filter, pace))
        .buffered(pace.pacer.global_cap())
        .collect()
        .await;

    let mut remaining: Vec<usize> = Vec::with_capacity(targets.len());
    let mut pairs = Vec::new();
    for (index, found) in discovered.iter().enumerate() {
        let regions = found.as_ref().map_or(&[][..], |d| &d.scan[..]);
        remaining.push(regions.len());
        pairs.extend(regions.iter().map(|region| (index, region.clone())));
        if regions.is_empty() {
            pace.progress.account_scanned();
        }
    }
    pace.progress.grow(pairs.len());

    let mut results: Vec<Vec<Result<RegionScan, SkippedRegion>>> =
        targets.iter().map(|_| Vec::new()).collect();
    let accounts = &targets;
    let mut scans =
        stream::iter(pairs)
            .map(|(index, region)| async move {
                (index, scan_region(&accounts[index], pace, region).await)
            })
            .buffer_unordered(pace.pacer.global_cap());
    while let Some((index, result)) = scans.next().await {
        results[index].push(result);
        remaining[index] -= 1;
        if remaining[index] == 0 {
            pace.progress.account_scanned();
        }
    }
    drop(scans);

    targets
        .into_iter()
        .zip(discovered)
        .zip(results)
        .map(|((target, found), regions)| {
            let scan = found.map(|found| assemble(&target, found.not_enabled, regions));
            (target, scan)
        })
        .collect()
}

/// An account's regions: those to scan, and those named by the user but not enabled.
struct Discovered {
    scan: Vec<String>,
    not_enabled: Vec<String>,
}

async fn discover(
    target: &AccountTarget,
    filter: &RegionFilter,
    pace: ScanPace<'_>,
) -> Result<Discovered, ScanError> {
    let home = target.config.region().map_or("us-east-1", |r| r.as_ref());
    let all = Ec2::new(&target.config, pace.pacer, &target.account_id, home)
        .regions()
        .await
        .map_err(ScanError::Regions)?;
    let selection = regions::select(&all, filter).map_err(ScanError::UnknownRegion)?;
    Ok(Discovered { scan: selection.scan, not_enabled: selection.not_enabled })
}

/// One account's scan from its regions' results, sorted by region.
fn assemble(
    target: &AccountTarget,
    not_enabled: Vec<String>,
    results: Vec<Result<RegionScan, SkippedRegion>>,
) -> AccountScan {
    let mut skipped: Vec<SkippedRegion> = not_enabled
        .into_iter()
        .map(|region| {
            info!(account = %target.account_id, %region, "skipping region: not enabled");
            SkippedRegion { region, reason: "not enabled for this account".into(), error: None }
        })
        .collect();
    let mut scanned = Vec::new();
    for result in results {
        match result {
            Ok(region) => scanned.push(region),
            Err(skip) => skipped.push(skip),
        }
    }
    scanned.sort_by(|a, b| a.region.cmp(&b.region));
    skipped.sort_by(|a, b| a.region.cmp(&b.region));
    AccountScan {
        account_id: target.account_id.clone(),
        name: target.name.clone(),
        access: target.access.clone(),
        regions: scanned,
        skipped_regions: skipped,
    }
}

async fn scan_region(
    target: &AccountTarget,
    pace: ScanPace<'_>,
    region: String,
) -> Result<RegionScan, SkippedRegion> {
    let span = info_span!("scan", account = %target.account_id, %region);
    async {
        let ec2 = Ec2::new(&target.config, pace.pacer, &target.account_id, &region);
        let found = ec2.instances().await;
        pace.progress.scanned(found.as_ref().map_or(0, Vec::len));
        let records = match found {
            Ok(records) => records,
            Err(error) => {
                info!(%error, "skipping region: DescribeInstances failed");
                let reason = format!("DescribeInstances failed: {error}");
                return Err(SkippedRegion { region, reason, error: Some(error) });
            }
        };
        let mut instances: Vec<Finding> = records.into_iter().map(plan::classify).collect();
        instances.sort_by(|a, b| a.instance.instance_id.cmp(&b.instance.instance_id));
        for finding in &instances {
            log_decision(finding);
        }
        debug!(instances = instances.len(), "region scanned");
        Ok(RegionScan { region, instances })
    }
    .instrument(span)
    .await
}

fn log_decision(finding: &Finding) {
    let id = &finding.instance.instance_id;
    match (finding.status, finding.change) {
        (_, true) => info!(instance = %id, reason = finding.reason, "will set HttpTokens=required"),
        (Status::Enforced, false) => debug!(instance = %id, "already enforced"),
        (_, false) => info!(instance = %id, reason = finding.reason, "leaving instance alone"),
    }
}
