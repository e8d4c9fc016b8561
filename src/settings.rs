//! Resolved settings: the command line merged with the config file, validated once, before
//! any AWS call.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::cli::{Cli, OutputFormat};
use crate::error::Error;

/// The role AWS Organizations creates in every account it creates.
pub const DEFAULT_ROLE: &str = "OrganizationAccountAccessRole";
/// Prefix of the assumed-role session name, visible in the member account's CloudTrail.
pub const DEFAULT_SESSION_PREFIX: &str = "imds-sweep";

/// Everything the sweep needs to know about what the user asked for.
#[derive(Debug, Clone)]
pub struct Settings {
    pub profile: Option<String>,
    /// The config file, if any, to name it in errors found after loading it.
    pub config_path: Option<PathBuf>,
    pub mode: ModeSetting,
    pub accounts: IdFilter,
    pub organizational_units: IdFilter,
    pub regions: RegionFilter,
    pub assume_role: AssumeRoleSettings,
    pub dry_run: bool,
    pub yes: bool,
    pub output: OutputFormat,
    pub journal: Option<PathBuf>,
    /// Timeout of one API call attempt.
    pub timeout: Duration,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// How long to wait for pending metadata changes to be applied, if at all.
    pub wait: Option<Duration>,
}

/// Which sweep the user asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeSetting {
    /// Organization mode where the credentials can list the organization, else single-account.
    #[default]
    Auto,
    Organization,
    SingleAccount,
}

/// Include and exclude lists of ids; exclusion wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdFilter {
    /// Empty: no restriction.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// Which of an account's enabled regions are swept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionFilter {
    /// Empty: every enabled region.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Where the include list came from, to name it in errors.
    pub include_source: String,
    /// Where the exclude list came from.
    pub exclude_source: String,
}

impl RegionFilter {
    /// Whether a region is in scope; exclusion wins over inclusion.
    pub fn allows(&self, region: &str) -> bool {
        let included = self.include.is_empty() || self.include.iter().any(|r| r == region);
        included && !self.exclude.iter().any(|r| r == region)
    }
}

/// How member accounts are entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRoleSettings {
    pub role_name: String,
    pub external_id: Option<String>,
    pub session_name_prefix: String,
    /// Per-account role name and external id, by account id.
    pub overrides: BTreeMap<String, RoleOverride>,
}

/// A per-account `[[account]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleOverride {
    pub role_name: Option<String>,
    pub external_id: Option<String>,
}

impl AssumeRoleSettings {
    /// The role name and external id to use in `account`.
    pub fn for_account(&self, account: &str) -> (&str, Option<&str>) {
        let entry = self.overrides.get(account);
        let role = entry.and_then(|o| o.role_name.as_deref()).unwrap_or(&self.role_name);
        let external_id = entry.and_then(|o| o.external_id.as_deref());
        (role, external_id.or(self.external_id.as_deref()))
    }
}

/// The config file as written; unknown keys are errors so that a typo cannot widen a sweep.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    mode: Option<ModeSetting>,
    #[serde(default, deserialize_with = "table")]
    accounts: Lists,
    #[serde(default, deserialize_with = "table")]
    organizational_units: Lists,
    #[serde(default, deserialize_with = "table")]
    regions: Lists,
    #[serde(default, deserialize_with = "table")]
    assume_role: AssumeRoleSection,
    #[serde(default)]
    account: Vec<AccountSection>,
}

/// A section that must be written as a table. Derived structs also accept an array of their
/// fields in order, so `regions = ["eu-west-1"]` would be misread or get a baffling error.
fn table<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct OnlyTable<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for OnlyTable<T> {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a table such as [regions] with include = [...] and exclude = [...]")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }

    deserializer.deserialize_map(OnlyTable(std::marker::PhantomData))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Lists {
    #[serde(default)]
    include: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssumeRoleSection {
    role_name: Option<Spanned<String>>,
    external_id: Option<Spanned<String>>,
    session_name_prefix: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountSection {
    id: Spanned<String>,
    role_name: Option<Spanned<String>>,
    external_id: Option<Spanned<String>>,
}

/// A loaded config file with its text, to turn byte spans into line numbers.
struct Loaded {
    path: PathBuf,
    text: String,
    file: ConfigFile,
}

impl Loaded {
    fn error(&self, span: std::ops::Range<usize>, message: String) -> Error {
        let line = line_of(&self.text, span.start);
        Error::Config { path: self.path.clone(), message: format!("line {line}: {message}") }
    }

    /// Checks every value of `values` with `valid`, naming the key and the expected form.
    fn check<'a>(
        &self,
        key: &str,
        values: impl IntoIterator<Item = &'a Spanned<String>>,
        valid: fn(&str) -> bool,
        expected: &str,
    ) -> Result<(), Error> {
        for value in values {
            if !valid(value.get_ref()) {
                let message = format!("`{key}` has {:?}, which is not {expected}", value.get_ref());
                return Err(self.error(value.span(), message));
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), Error> {
        let f = &self.file;
        let account_id = "a 12-digit account id";
        self.check("accounts.include", &f.accounts.include, is_account_id, account_id)?;
        self.check("accounts.exclude", &f.accounts.exclude, is_account_id, account_id)?;
        let ou = "an OU id (ou-xxxx-xxxxxxxx) or root id (r-xxxx)";
        self.check("organizational_units.include", &f.organizational_units.include, is_ou_id, ou)?;
        self.check("organizational_units.exclude", &f.organizational_units.exclude, is_ou_id, ou)?;
        let region = "a region name such as eu-west-1";
        self.check("regions.include", &f.regions.include, looks_like_region, region)?;
        self.check("regions.exclude", &f.regions.exclude, looks_like_region, region)?;

        let role = "an IAM role name (1-64 of A-Z a-z 0-9 +=,.@_-)";
        let external = "an external id (2-1224 of A-Z a-z 0-9 +=,.@:/_-)";
        let prefix = "a session name prefix (1-32 of A-Z a-z 0-9 +=,.@_-)";
        self.check("assume_role.role_name", &f.assume_role.role_name, is_role_name, role)?;
        self.check(
            "assume_role.external_id",
            &f.assume_role.external_id,
            is_external_id,
            external,
        )?;
        let prefixes = &f.assume_role.session_name_prefix;
        self.check("assume_role.session_name_prefix", prefixes, is_session_prefix, prefix)?;

        let mut seen = BTreeMap::new();
        for entry in &f.account {
            self.check("account.id", [&entry.id], is_account_id, account_id)?;
            self.check("account.role_name", &entry.role_name, is_role_name, role)?;
            self.check("account.external_id", &entry.external_id, is_external_id, external)?;
            if let Some(first) = seen.insert(entry.id.get_ref().clone(), entry.id.span()) {
                let line = line_of(&self.text, first.start);
                let message = format!(
                    "[[account]] {} is listed twice (first at line {line}); merge the entries",
                    entry.id.get_ref()
                );
                return Err(self.error(entry.id.span(), message));
            }
        }
        Ok(())
    }
}

impl Settings {
    /// Reads the config file (if any) and merges the command line over it.
    pub fn resolve(cli: &Cli) -> Result<Settings, Error> {
        let loaded = cli.config.as_deref().map(load_config).transpose()?;
        let file = loaded.as_ref().map(|l| &l.file);
        let config_name = cli.config.as_ref().map(|p| p.display().to_string());

        let regions = region_filter(cli, file, config_name.as_deref())?;
        let mode = if cli.single_account {
            ModeSetting::SingleAccount
        } else if cli.organization {
            ModeSetting::Organization
        } else {
            file.and_then(|f| f.mode).unwrap_or_default()
        };
        if let Some(role) = cli.role_name.as_deref().filter(|r| !is_role_name(r)) {
            return Err(Error::Usage(format!(
                "--role-name {role:?} is not an IAM role name (1-64 of A-Z a-z 0-9 +=,.@_-)"
            )));
        }

        Ok(Settings {
            profile: cli.profile.clone(),
            config_path: cli.config.clone(),
            mode,
            accounts: file.map(|f| ids(&f.accounts)).unwrap_or_default(),
            organizational_units: file.map(|f| ids(&f.organizational_units)).unwrap_or_default(),
            regions,
            assume_role: assume_role(cli, file),
            dry_run: cli.dry_run,
            yes: cli.yes,
            output: cli.output,
            journal: cli.journal.clone(),
            timeout: Duration::from_secs(cli.timeout),
            concurrency: usize::from(cli.concurrency),
            wait: cli.wait.then(|| Duration::from_secs(cli.wait_timeout)),
        })
    }
}

fn region_filter(
    cli: &Cli,
    file: Option<&ConfigFile>,
    config_name: Option<&str>,
) -> Result<RegionFilter, Error> {
    let from_file = file.map(|f| ids(&f.regions)).unwrap_or_default();
    let (include, include_source) = if cli.regions.is_empty() {
        let source = config_name.map(|n| format!("{n}, [regions] include")).unwrap_or_default();
        (from_file.include, source)
    } else {
        (cli.regions.clone(), "--region".to_owned())
    };
    if let Some(bad) = include.iter().find(|r| !looks_like_region(r)) {
        return Err(Error::UnknownRegion { region: bad.clone(), source_name: include_source });
    }
    let exclude_source = config_name.map(|n| format!("{n}, [regions] exclude")).unwrap_or_default();
    Ok(RegionFilter { include, exclude: from_file.exclude, include_source, exclude_source })
}

fn assume_role(cli: &Cli, file: Option<&ConfigFile>) -> AssumeRoleSettings {
    let section = file.map(|f| &f.assume_role);
    let text = |value: Option<&Spanned<String>>| value.map(|v| v.get_ref().clone());
    let role_from_file = section.and_then(|s| text(s.role_name.as_ref()));
    let overrides = file
        .map(|f| &f.account[..])
        .unwrap_or_default()
        .iter()
        .map(|entry| {
            let value = RoleOverride {
                role_name: text(entry.role_name.as_ref()),
                external_id: text(entry.external_id.as_ref()),
            };
            (entry.id.get_ref().clone(), value)
        })
        .collect();
    AssumeRoleSettings {
        role_name: cli.role_name.clone().or(role_from_file).unwrap_or_else(|| DEFAULT_ROLE.into()),
        external_id: section.and_then(|s| text(s.external_id.as_ref())),
        session_name_prefix: section
            .and_then(|s| text(s.session_name_prefix.as_ref()))
            .unwrap_or_else(|| DEFAULT_SESSION_PREFIX.into()),
        overrides,
    }
}

fn ids(lists: &Lists) -> IdFilter {
    let plain = |v: &[Spanned<String>]| v.iter().map(|s| s.get_ref().clone()).collect();
    IdFilter { include: plain(&lists.include), exclude: plain(&lists.exclude) }
}

fn load_config(path: &Path) -> Result<Loaded, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
        path: path.to_owned(),
        message: format!("cannot be read ({e}); check the path"),
    })?;
    parse_config(path, text)
}

/// Parses and validates config text; `path` only names the file in errors.
fn parse_config(path: &Path, text: String) -> Result<Loaded, Error> {
    let config_error = |message: String| Error::Config { path: path.to_owned(), message };
    let file = toml::from_str(&text).map_err(|e| config_error(describe_toml_error(&text, &e)))?;
    let loaded = Loaded { path: path.to_owned(), text, file };
    loaded.validate()?;
    Ok(loaded)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// One line: where in the file, and what is wrong, as the TOML parser words it.
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = crate::text::one_line(err.message());
    match err.span() {
        Some(span) => format!("line {}: {message}", line_of(text, span.start)),
        None => message,
    }
}

fn chars_in(value: &str, extra: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&value.len())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// Twelve digits, as every AWS account id.
pub fn is_account_id(value: &str) -> bool {
    value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit())
}

/// `ou-` plus the root's 4-32 character suffix and 8-32 more, or a root id `r-` plus 4-32.
pub fn is_ou_id(value: &str) -> bool {
    let lower_alnum = |s: &str, min: usize| {
        (min..=32).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if let Some(rest) = value.strip_prefix("ou-") {
        return rest.split_once('-').is_some_and(|(a, b)| lower_alnum(a, 4) && lower_alnum(b, 8));
    }
    value.strip_prefix("r-").is_some_and(|rest| lower_alnum(rest, 4))
}

fn is_role_name(value: &str) -> bool {
    chars_in(value, "+=,.@_-", 1, 64)
}

fn is_external_id(value: &str) -> bool {
    chars_in(value, "+=,.@:/_-", 2, 1224)
}

fn is_session_prefix(value: &str) -> bool {
    chars_in(value, "+=,.@_-", 1, 32)
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
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
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

    fn resolve(text: &str, extra: &[&str]) -> Result<Settings, String> {
        let file = config_file(text);
        let path = file.path().to_str().expect("utf-8 path");
        let mut args = vec!["--config", path];
        args.extend_from_slice(extra);
        Settings::resolve(&cli(&args)).map_err(|e| {
            let text = e.to_string();
            assert!(text.contains(path), "the file is named: {text}");
            assert!(!text.contains('\n'), "one line: {text}");
            text
        })
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../config.example.toml");
        let settings = resolve(text, &[]).expect("config.example.toml must load");
        assert_eq!(settings.assume_role.role_name, DEFAULT_ROLE);
    }

    #[test]
    fn exclusion_wins_over_inclusion() {
        let filter = RegionFilter {
            include: vec!["eu-west-1".into(), "us-east-1".into()],
            exclude: vec!["us-east-1".into()],
            include_source: String::new(),
            exclude_source: String::new(),
        };
        assert!(filter.allows("eu-west-1"));
        assert!(!filter.allows("us-east-1"));
        assert!(!filter.allows("ap-south-1"));
        assert!(RegionFilter::default().allows("ap-south-1"));
    }

    #[test]
    fn command_line_overrides_the_file() {
        let text = "[regions]\ninclude = [\"eu-west-1\"]\nexclude = [\"ap-east-1\"]\n\
                    [assume_role]\nrole_name = \"FromFile\"\n";
        let settings =
            resolve(text, &["--region", "us-east-2", "--role-name", "FromFlag"]).expect("valid");
        assert_eq!(settings.regions.include, ["us-east-2"]);
        assert_eq!(settings.regions.exclude, ["ap-east-1"]);
        assert_eq!(settings.assume_role.role_name, "FromFlag");
    }

    #[test]
    fn per_account_roles_override_the_global_one() {
        let text = "[assume_role]\nrole_name = \"Global\"\nexternal_id = \"shared-id\"\n\
                    [[account]]\nid = \"333333333333\"\nrole_name = \"Special\"\n";
        let settings = resolve(text, &[]).expect("valid");
        let roles = &settings.assume_role;
        assert_eq!(roles.for_account("333333333333"), ("Special", Some("shared-id")));
        assert_eq!(roles.for_account("444444444444"), ("Global", Some("shared-id")));
    }

    #[test]
    fn mode_comes_from_flags_before_the_file() {
        let text = "mode = \"organization\"\n";
        assert_eq!(resolve(text, &[]).expect("valid").mode, ModeSetting::Organization);
        let forced = resolve(text, &["--single-account"]).expect("valid");
        assert_eq!(forced.mode, ModeSetting::SingleAccount);
        assert!(resolve("mode = \"everything\"\n", &[]).is_err());
    }

    #[test]
    fn bad_values_are_named_with_key_and_line() {
        let cases = [
            ("[accounts]\ninclude = [\"1234\"]\n", "line 2", "accounts.include"),
            ("[accounts]\n\nexclude = [\"12345678901x\"]\n", "line 3", "accounts.exclude"),
            ("[organizational_units]\ninclude = [\"ou-12\"]\n", "line 2", "organizational_units"),
            ("[regions]\nexclude = [\"EU-West-1\"]\n", "line 2", "regions.exclude"),
            ("[assume_role]\nrole_name = \"bad role\"\n", "line 2", "assume_role.role_name"),
            ("[[account]]\nid = \"1\"\n", "line 2", "account.id"),
            (
                "[[account]]\nid = \"333333333333\"\n[[account]]\nid = \"333333333333\"\n",
                "line 4",
                "listed twice",
            ),
            ("[regions]\ninclude = []\nexclud = [\"x\"]\n", "line 3", "exclud"),
            ("[regions]\ninclude = \"eu-west-1\"\n", "line 2", "sequence"),
            ("[accounts]\ninclude = [111111111111]\n", "line 2", "string"),
            ("[regions\n", "line 1", ""),
            ("regions = [\"us-east-1\"]\n", "line 1", "a table such as [regions]"),
            ("accounts = [[], [\"111111111111\"]]\n", "line 1", "a table"),
        ];
        for (text, line, key) in cases {
            let err = resolve(text, &[]).expect_err(text);
            assert!(err.contains(line) && err.contains(key), "{text:?} gave {err}");
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = Settings::resolve(&cli(&["--config", "/nonexistent/imds.toml"]))
            .expect_err("must fail");
        assert!(err.to_string().contains("/nonexistent/imds.toml"));
    }

    #[test]
    fn malformed_names_are_rejected_early() {
        let err = Settings::resolve(&cli(&["--region", "eu-west"])).expect_err("must fail");
        assert!(err.to_string().contains("`eu-west`"), "{err}");
        let err = Settings::resolve(&cli(&["--role-name", "a b"])).expect_err("must fail");
        assert!(err.to_string().contains("--role-name"), "{err}");
        assert!(looks_like_region("us-gov-west-1"));
        assert!(!looks_like_region("EU-west-1"));
        assert!(!looks_like_region("1"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_parser(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if let Err(e) = parse_config(Path::new("fuzz.toml"), text) {
                let message = e.to_string();
                proptest::prop_assert!(!message.contains('\n'), "one line: {}", message);
                proptest::prop_assert!(message.contains("fuzz.toml"));
            }
        }

        #[test]
        fn toml_shaped_text_never_panics_the_parser(text in "([\\[\\]a-z_.=\" ,0-9\n-]|ou-|r-|include|exclude|accounts|regions|mode|id){0,60}") {
            if let Err(e) = parse_config(Path::new("fuzz.toml"), text) {
                proptest::prop_assert!(!e.to_string().contains('\n'));
            }
        }
    }

    #[test]
    fn id_shapes() {
        assert!(is_account_id("123456789012"));
        assert!(!is_account_id("12345678901"));
        assert!(is_ou_id("ou-ab12-cdefgh34"));
        assert!(is_ou_id("r-ab12"));
        assert!(!is_ou_id("ou-ab12"));
        assert!(!is_ou_id("ou-AB12-cdefgh34"));
    }
}
