//! Region discovery: which of an account's regions the sweep covers, and which it skips.

use serde::Serialize;

use crate::aws_error::ApiError;
use crate::ec2::RegionInfo;
use crate::settings::RegionFilter;

/// A region in scope that was not scanned, and why.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedRegion {
    pub region: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

/// The regions to scan and those named by the user that cannot be.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub scan: Vec<String>,
    pub not_enabled: Vec<String>,
}

/// Picks the regions to scan from DescribeRegions' answer; `Err` names an included region
/// that is not a region of this partition at all.
pub fn select(all: &[RegionInfo], filter: &RegionFilter) -> Result<Selection, String> {
    if let Some(unknown) = filter.include.iter().find(|r| !all.iter().any(|i| &i.name == *r)) {
        return Err(unknown.clone());
    }
    let mut selection = Selection::default();
    for region in all.iter().filter(|r| filter.allows(&r.name)) {
        if region.enabled {
            selection.scan.push(region.name.clone());
        } else if !filter.include.is_empty() {
            selection.not_enabled.push(region.name.clone());
        }
    }
    Ok(selection)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Vec<RegionInfo> {
        [("ap-east-1", false), ("eu-west-1", true), ("us-east-1", true)]
            .into_iter()
            .map(|(name, enabled)| RegionInfo { name: name.into(), enabled })
            .collect()
    }

    fn filter(include: &[&str], exclude: &[&str]) -> RegionFilter {
        RegionFilter {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            include_source: "--region".into(),
        }
    }

    #[test]
    fn every_enabled_region_by_default() {
        let selection = select(&regions(), &filter(&[], &[])).expect("valid");
        assert_eq!(selection.scan, ["eu-west-1", "us-east-1"]);
        assert!(selection.not_enabled.is_empty());
    }

    #[test]
    fn exclusions_apply_and_named_disabled_regions_are_reported() {
        let selection = select(&regions(), &filter(&["ap-east-1", "us-east-1"], &["us-east-1"]))
            .expect("valid");
        assert!(selection.scan.is_empty());
        assert_eq!(selection.not_enabled, ["ap-east-1"]);
    }

    #[test]
    fn an_included_region_that_does_not_exist_is_an_error() {
        assert_eq!(select(&regions(), &filter(&["mars-north-1"], &[])), Err("mars-north-1".into()));
    }
}
