//! Test harness: the emulator (moto behind our correcting, fault-injecting layer) on a free
//! loopback port, a fixture AWS config, fleet seeding through the EC2 API, and runs of the
//! real binary with a hermetic environment.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};

use aws_credential_types::Credentials;
use aws_sdk_ec2::types::{
    HttpTokensState, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, ResourceType,
    Tag, TagSpecification,
};
use serde_json::Value;

/// The fixture profile with working credentials.
pub const PROFILE: &str = "sweeper";
pub const ACCESS_KEY: &str = "AKIAFIXTURESWEEPER01";
pub const SECRET_KEY: &str = "fixture-secret-Zq8vN3kT5pW2";
/// A profile whose key the emulator is told to reject.
pub const BAD_PROFILE: &str = "revoked";
pub const BAD_ACCESS_KEY: &str = "AKIAFIXTUREREVOKED01";
/// moto's default account, which every unknown access key maps to.
pub const ACCOUNT: &str = "123456789012";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("IMDS_SWEEP_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = repo().join(".venv/bin/python");
    assert!(venv.exists(), "no emulator environment at {}: run scripts/test", venv.display());
    venv
}

/// A running emulator; stopped when dropped (its stdin closing stops it too).
pub struct Emulator {
    pub url: String,
    child: Child,
    _stdin: ChildStdin,
    runtime: tokio::runtime::Runtime,
}

impl Emulator {
    pub fn start() -> Emulator {
        let mut child = Command::new(python())
            .arg(repo().join("tests/emulator/server.py"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the emulator");
        let stdin = child.stdin.take().expect("emulator stdin");
        let stdout = child.stdout.take().expect("emulator stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the READY line");
        let url = line.trim().strip_prefix("READY ").expect("READY line").to_owned();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("test runtime");
        Emulator { url, child, _stdin: stdin, runtime }
    }

    /// A JSON call to the layer's control endpoint.
    pub fn control(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/_layer/{path}", self.url);
        let response = match (method, body) {
            ("POST", Some(body)) => ureq::post(&url).send_json(body),
            ("POST", None) => ureq::post(&url).send_empty(),
            ("DELETE", _) => ureq::delete(&url).call(),
            _ => ureq::get(&url).call(),
        };
        response.expect("control call").body_mut().read_json().expect("control JSON")
    }

    /// Adds a fault rule (see tests/emulator/layer.py for the fields).
    pub fn fault(&self, rule: Value) {
        self.control("POST", "faults", Some(rule));
    }

    /// How many requests of `service:Action` the emulator has seen.
    pub fn requests(&self, action: &str) -> u64 {
        self.control("GET", "requests", None)["counts"][action].as_u64().unwrap_or(0)
    }

    /// An EC2 client in `region` with the fixture credentials, for seeding and checking.
    pub fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        self.ec2_as(&fixture_credentials(), region)
    }

    /// An EC2 client in `region` with the given credentials (an account's assumed role).
    pub fn ec2_as(&self, credentials: &Credentials, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::Config::builder()
                .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
                .endpoint_url(&self.url)
                .region(aws_sdk_ec2::config::Region::new(region.to_owned()))
                .credentials_provider(credentials.clone())
                .build(),
        )
    }

    /// The caller's SDK configuration with the fixture credentials in us-east-1.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .region(aws_config::Region::from_static("us-east-1"))
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                fixture_credentials(),
            ))
            .build()
    }

    /// Temporary credentials for `account`, as the tool would get them.
    pub fn credentials_for(&self, account: &str) -> Credentials {
        let sts = aws_sdk_sts::Client::new(&self.sdk_config());
        let role = format!("arn:aws:iam::{account}:role/OrganizationAccountAccessRole");
        let output = self
            .block_on(sts.assume_role().role_arn(role).role_session_name("seed").send())
            .expect("assume role for seeding");
        let c = output.credentials().expect("credentials");
        Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            None,
            "seed",
        )
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Launches one instance in the fixture account and returns its id.
    pub fn launch(&self, region: &str, spec: Spec) -> String {
        self.launch_as(&fixture_credentials(), region, spec)
    }

    /// Launches one instance with the given credentials and returns its id.
    pub fn launch_as(&self, credentials: &Credentials, region: &str, spec: Spec) -> String {
        let ec2 = self.ec2_as(credentials, region);
        let mut options = InstanceMetadataOptionsRequest::builder()
            .http_tokens(HttpTokensState::from(spec.tokens))
            .http_put_response_hop_limit(spec.hop_limit);
        if spec.endpoint_disabled {
            options = options.http_endpoint(InstanceMetadataEndpointState::Disabled);
        }
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .tags(Tag::builder().key("Name").value(spec.name).build())
            .build();
        let output = self
            .block_on(
                ec2.run_instances()
                    .image_id("ami-12c6146b")
                    .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                    .min_count(1)
                    .max_count(1)
                    .metadata_options(options.build())
                    .tag_specifications(tags)
                    .send(),
            )
            .expect("run instance");
        let id = output.instances()[0].instance_id().expect("instance id").to_owned();
        match spec.state {
            "running" => {}
            "stopped" => {
                self.block_on(ec2.stop_instances().instance_ids(&id).send()).expect("stop");
            }
            "terminated" => {
                self.block_on(ec2.terminate_instances().instance_ids(&id).send())
                    .expect("terminate");
            }
            other => panic!("unsupported seed state {other}"),
        }
        id
    }

    /// The metadata options of one instance as the emulator holds them now.
    pub fn options(&self, region: &str, id: &str) -> Options {
        self.options_as(&fixture_credentials(), region, id)
    }

    /// The metadata options of one instance of the account behind `credentials`.
    pub fn options_as(&self, credentials: &Credentials, region: &str, id: &str) -> Options {
        let output = self
            .block_on(self.ec2_as(credentials, region).describe_instances().instance_ids(id).send())
            .expect("describe instance");
        let instance = &output.reservations()[0].instances()[0];
        let options = instance.metadata_options().expect("metadata options");
        Options {
            tokens: options.http_tokens().expect("tokens").as_str().to_owned(),
            endpoint: options.http_endpoint().expect("endpoint").as_str().to_owned(),
            hop_limit: options.http_put_response_hop_limit().expect("hop limit"),
        }
    }
}

fn fixture_credentials() -> Credentials {
    Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "fixture")
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an instance is seeded as.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub state: &'static str,
    pub tokens: &'static str,
    pub endpoint_disabled: bool,
    pub hop_limit: i32,
}

impl Spec {
    pub fn new(name: &'static str, state: &'static str, tokens: &'static str) -> Spec {
        Spec { name, state, tokens, endpoint_disabled: false, hop_limit: 1 }
    }

    pub fn endpoint_disabled(mut self) -> Spec {
        self.endpoint_disabled = true;
        self
    }

    pub fn hop_limit(mut self, hops: i32) -> Spec {
        self.hop_limit = hops;
        self
    }
}

/// Metadata options read back from the emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub tokens: String,
    pub endpoint: String,
    pub hop_limit: i32,
}

/// A home directory with fixture AWS config files; the binary sees nothing else.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new(emulator: &Emulator) -> Home {
        let dir = tempfile::tempdir().expect("temp home");
        let config = format!(
            "[profile {PROFILE}]\nregion = us-east-1\nendpoint_url = {url}\n\n\
             [profile {BAD_PROFILE}]\nregion = us-east-1\nendpoint_url = {url}\n\n\
             [profile empty]\nregion = us-east-1\nendpoint_url = {url}\n",
            url = emulator.url
        );
        let credentials = format!(
            "[{PROFILE}]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n\n\
             [{BAD_PROFILE}]\naws_access_key_id = {BAD_ACCESS_KEY}\n\
             aws_secret_access_key = revoked-secret\n"
        );
        std::fs::write(dir.path().join("config"), config).expect("write config");
        std::fs::write(dir.path().join("credentials"), credentials).expect("write credentials");
        Home { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Adds a profile with temporary credentials (an assumed role's) to the fixture files.
    pub fn add_profile(&self, name: &str, credentials: &Credentials, endpoint: &str) {
        use std::io::Write;
        let append = |file: &str, text: String| {
            let path = self.path().join(file);
            let mut file = std::fs::OpenOptions::new().append(true).open(path).expect("open");
            file.write_all(text.as_bytes()).expect("append");
        };
        append(
            "config",
            format!("\n[profile {name}]\nregion = us-east-1\nendpoint_url = {endpoint}\n"),
        );
        append(
            "credentials",
            format!(
                "\n[{name}]\naws_access_key_id = {}\naws_secret_access_key = {}\naws_session_token = {}\n",
                credentials.access_key_id(),
                credentials.secret_access_key(),
                credentials.session_token().unwrap_or_default()
            ),
        );
    }

    /// Writes a config file for `--config` and returns its path.
    pub fn config_file(&self, text: &str) -> String {
        let path = self.path().join("imds-sweep.toml");
        std::fs::write(&path, text).expect("write config file");
        path.to_str().expect("utf-8 path").to_owned()
    }

    pub fn journal(&self) -> PathBuf {
        self.path().join("journal.jsonl")
    }

    /// The binary with a hermetic environment: no ambient AWS variables, no instance metadata.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_imds-sweep"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_STATE_HOME", self.path().join("state"))
            .env("AWS_CONFIG_FILE", self.path().join("config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.path().join("credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null());
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run imds-sweep"))
    }

    /// Runs the binary with a terminal on stdin, typing `input` at the prompt.
    pub fn run_in_terminal(&self, args: &[&str], input: &str) -> Run {
        let inner = self.command(args);
        let mut command = Command::new(python());
        command
            .arg(repo().join("tests/emulator/pty_run.py"))
            .args(["--input", input, "--"])
            .arg(inner.get_program())
            .args(inner.get_args())
            .env_clear()
            .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .stdin(Stdio::null());
        Run::from(command.output().expect("run imds-sweep in a terminal"))
    }

    /// The records of every journal file in `dir`, parsed.
    pub fn journal_records_in(&self, dir: &Path) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("journal dir")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        files.iter().flat_map(|f| read_json_lines(f)).collect()
    }

    /// The journal's records, parsed.
    pub fn journal_records(&self) -> Vec<Value> {
        read_json_lines(&self.journal())
    }
}

pub fn read_json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).expect("journal line is JSON")).collect()
}

/// A finished run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Fails with the whole output so a broken test explains itself.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The JSON lines printed with `--output json`.
    pub fn json(&self) -> Vec<Value> {
        self.stdout.lines().map(|l| serde_json::from_str(l).expect("stdout line is JSON")).collect()
    }
}

/// A result record of the journal for `instance`.
pub fn result_for<'a>(records: &'a [Value], instance: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["event"] == "result" && r["instance_id"] == instance).collect()
}

/// The rows of every table in a text report, each as its trimmed cells.
pub fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(str::trim)
        .filter(|line| line.starts_with('│'))
        .map(|line| line.trim_matches('│').split('│').map(|cell| cell.trim().to_owned()).collect())
        .collect()
}
