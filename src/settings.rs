//! Resolved settings: the command line merged with the config file, validated once.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::{Cli, OutputFormat};
use crate::error::Error;

/// Everything the sweep needs to know about what the user asked for.
#[derive(Debug, Clone)]
pub struct Settings {
    pub profile: Option<String>,
    pub regions: RegionFilter,
    pub dry_run: bool,
    pub yes: bool,
    pub output: OutputFormat,
    pub journal: Option<PathBuf>,
}

/// Which of an account's enabled regions are swept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionFilter {
    /// Empty: every enabled region.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Where the include list came from, to name it in errors.
    pub include_source: String,
}

impl RegionFilter {
    /// Whether a region is in scope; exclusion wins over inclusion.
    pub fn allows(&self, region: &str) -> bool {
        let included = self.include.is_empty() || self.include.iter().any(|r| r == region);
        included && !self.exclude.iter().any(|r| r == region)
    }
}

/// The config file as written; unknown keys are errors so that typos do not widen a sweep.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    regions: RegionsSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionsSection {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

impl Settings {
    /// Reads the config file (if any) and merges the command line over it.
    pub fn resolve(cli: &Cli) -> Result<Settings, Error> {
        let file = match &cli.config {
            Some(path) => load_config(path)?,
            None => ConfigFile::default(),
        };
        let config_name = cli.config.as_ref().map(|p| p.display().to_string());

        let (include, include_source) = if cli.regions.is_empty() {
            let source = config_name
                .clone()
                .map(|n| format!("{n}, [regions] include"));
            (file.regions.include, source.unwrap_or_default())
        } else {
            (cli.regions.clone(), "--region".to_owned())
        };
        let regions = RegionFilter {
            include,
            exclude: file.regions.exclude,
            include_source,
        };
        check_region_names(&regions, config_name.as_deref())?;

        Ok(Settings {
            profile: cli.profile.clone(),
            regions,
            dry_run: cli.dry_run,
            yes: cli.yes,
            output: cli.output,
            journal: cli.journal.clone(),
        })
    }
}

fn load_config(path: &Path) -> Result<ConfigFile, Error> {
    let config_error = |message: String| Error::Config {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| config_error(format!("cannot be read ({e}); check the path")))?;
    toml::from_str(&text).map_err(|e| config_error(describe_toml_error(&text, &e)))
}

/// One line: where in the file, and what is wrong, as the TOML parser words it.
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = crate::text::one_line(err.message());
    match err.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

/// Rejects names that cannot be regions before any AWS call; existence is checked later
/// against DescribeRegions.
fn check_region_names(regions: &RegionFilter, config: Option<&str>) -> Result<(), Error> {
    let named = regions
        .include
        .iter()
        .map(|r| (r, regions.include_source.clone()));
    let excluded_source = format!("{}, [regions] exclude", config.unwrap_or("config file"));
    let named = named.chain(regions.exclude.iter().map(|r| (r, excluded_source.clone())));
    for (region, source_name) in named {
        if !looks_like_region(region) {
            return Err(Error::UnknownRegion {
                region: region.clone(),
                source_name,
            });
        }
    }
    Ok(())
}

/// `eu-west-1`, `us-gov-west-1`, `ap-southeast-5`: lowercase words, then a number.
pub fn looks_like_region(name: &str) -> bool {
    let mut parts = name.split('-').collect::<Vec<_>>();
    let Some(number) = parts.pop() else {
        return false;
    };
    parts.len() >= 2
        && !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::io::Write;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("imds-sweep").chain(args.iter().copied()))
    }

    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        file
    }

    #[test]
    fn exclusion_wins_over_inclusion() {
        let filter = RegionFilter {
            include: vec!["eu-west-1".into(), "us-east-1".into()],
            exclude: vec!["us-east-1".into()],
            include_source: String::new(),
        };
        assert!(filter.allows("eu-west-1"));
        assert!(!filter.allows("us-east-1"));
        assert!(!filter.allows("ap-south-1"));
        assert!(RegionFilter::default().allows("ap-south-1"));
    }

    #[test]
    fn command_line_regions_override_the_file() {
        let file = config_file("[regions]\ninclude = [\"eu-west-1\"]\nexclude = [\"ap-east-1\"]\n");
        let path = file.path().to_str().expect("utf-8 path");
        let settings = Settings::resolve(&cli(&["--config", path, "--region", "us-east-2"]))
            .expect("valid settings");
        assert_eq!(settings.regions.include, ["us-east-2"]);
        assert_eq!(settings.regions.exclude, ["ap-east-1"]);
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let file = config_file("[regions]\ninclude = []\nexclud = [\"x\"]\n");
        let path = file.path().to_str().expect("utf-8 path");
        let err = Settings::resolve(&cli(&["--config", path])).expect_err("must fail");
        let text = err.to_string();
        assert!(
            text.contains(path) && text.contains("line 3") && text.contains("exclud"),
            "{text}"
        );
        assert!(!text.contains('\n'), "one line: {text}");
    }

    #[test]
    fn wrong_types_and_bad_syntax_are_config_errors() {
        for body in ["[regions]\ninclude = \"eu-west-1\"\n", "[regions\n"] {
            let file = config_file(body);
            let path = file.path().to_str().expect("utf-8 path");
            let err = Settings::resolve(&cli(&["--config", path])).expect_err("must fail");
            assert!(matches!(err, Error::Config { .. }), "{err}");
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = Settings::resolve(&cli(&["--config", "/nonexistent/imds.toml"]))
            .expect_err("must fail");
        assert!(err.to_string().contains("/nonexistent/imds.toml"));
    }

    #[test]
    fn malformed_region_names_are_rejected_early() {
        let err = Settings::resolve(&cli(&["--region", "eu-west"])).expect_err("must fail");
        assert!(err.to_string().contains("`eu-west`"), "{err}");
        assert!(looks_like_region("us-gov-west-1"));
        assert!(!looks_like_region("EU-west-1"));
        assert!(!looks_like_region("1"));
    }
}
