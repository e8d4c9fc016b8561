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

/// A region the user named, in an include or an exclude list, that is no region of the
/// partition: a typo, which in an exclude list would sweep the region meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRegion {
    pub region: String,
    /// Where the name came from (`--region`, or the config file and key).
    pub source_name: String,
}

/// Picks the regions to scan from DescribeRegions' answer.
pub fn select(all: &[RegionInfo], filter: &RegionFilter) -> Result<Selection, UnknownRegion> {
    let unknown = |names: &[String], source: &str| {
        let name = names.iter().find(|r| !all.iter().any(|i| &i.name == *r))?;
        Some(UnknownRegion { region: name.clone(), source_name: source.to_owned() })
    };
    let unknown = unknown(&filter.include, &filter.include_source)
        .or_else(|| unknown(&filter.exclude, &filter.exclude_source));
    if let Some(unknown) = unknown {
        return Err(unknown);
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
            exclude_source: "cfg.toml, [regions] exclude".into(),
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
    fn a_named_region_that_does_not_exist_is_an_error_in_either_list() {
        let error = select(&regions(), &filter(&["mars-north-1"], &[])).expect_err("unknown");
        assert_eq!(error.region, "mars-north-1");
        assert_eq!(error.source_name, "--region");
        let error = select(&regions(), &filter(&[], &["eu-wst-1"])).expect_err("unknown");
        assert_eq!(error.region, "eu-wst-1");
        assert_eq!(error.source_name, "cfg.toml, [regions] exclude");
    }
}
