"""Benchmark imds-sweep against the emulator, with latency and EC2 throttling on.

Why: the tool's speed comes from running many calls at once while staying under
EC2's token buckets. Its wall time only means something next to what the
workload allows at best, so every measured run is set against a lower bound:
the critical path of one account-region, all calls spread over the requests
allowed in flight, and the CPU time the (single-threaded) emulator needed.

    python bench.py --binary target/debug/imds-sweep --scenario all --scale 1

``scripts/bench`` is the usual way in. Scenarios are the bench-* fleets of
seed.py:

* ``wide``: 20 member accounts x 3 regions x 100 instances, half IMDSv1. Runs
  the full sweep, the scan alone (``--dry-run``) and the full sweep with
  ``--concurrency 1``; the last one on ``--sequential-fraction`` of the fleet
  when below 1, scaled up by the number of API calls;
* ``deep``: 300 IMDSv1 instances in one region of one account, so the
  ModifyInstanceMetadataOptions bucket (100 burst, 5/s) sets the pace;
* ``many``: 12 small member accounts, 250 ms latency; the scan at the default
  concurrency against ``--concurrency 1``.

Every measured run gets its own emulator process (127.0.0.1, free port),
seeded first, then switched to latency (+/-20% jitter) and token buckets,
with its request counts cleared. After each full sweep the fleet is read
back through boto3 (member accounts through OrganizationAccountAccessRole):
every instance must hold HttpTokens=required.

Exit status: 0 when every target passes, 1 when a target fails, 2 when a run
failed (timeout, no report, an instance left without IMDSv2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

# Allow `python tests/emulator/bench.py` from any working directory.
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import seed  # noqa: E402  (boto3 helpers and the bench-* fleet shapes)

PROFILE = "bench"
HOST = "127.0.0.1"
JITTER_SHARE = 0.2  # latency jitter, as a share of the latency

# How the tool paces itself (src/pacer.rs) and reads instances back (src/ec2.rs),
# and EC2's buckets as the emulator applies them (layer.DEFAULT_BUCKET_CLASSES).
DEFAULT_CONCURRENCY = 64
PER_PAIR = 8
IDS_PER_VERIFY_CALL = 200
MODIFY_BURST = 100
MODIFY_REFILL = 5.0

# Targets: the maximum wall/bound ratio per scenario, the scan speedup of
# `many` and the peak memory of `wide`.
WIDE_RATIO = 1.5
DEEP_RATIO = 1.25
MANY_SPEEDUP = 20.0
WIDE_PEAK_MB = 100.0

SEED_TIMEOUT = 300.0
START_TIMEOUT = 30.0
VERIFY_TIMEOUT = 600.0


class BenchError(Exception):
    """A run that could not be measured or whose result is wrong; fails the benchmark."""


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str  # wide | deep | many
    latency_ms: float  # mean added latency per AWS request

    @property
    def seed_name(self) -> str:
        return f"bench-{self.name}"

    @property
    def shape(self) -> seed.BenchShape:
        return seed.BENCH_SHAPES[self.seed_name]

    def instances(self, scale: float) -> int:
        """Instances seed.py creates at ``scale``."""
        accounts = self.shape.members or 1
        return self.shape.scaled_per_region(scale) * len(self.shape.regions) * accounts


SCENARIO_LATENCY_MS = {"wide": 50.0, "deep": 50.0, "many": 250.0}


# --------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------


def hermetic_env(**extra: str) -> dict[str, str]:
    """This process's environment without any AWS_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(extra)
    return env


class Emulator:
    """One server.py process on a free loopback port, stopped by ``stop`` (or stdin EOF).

    MOTO_EC2_LOAD_DEFAULT_AMIS=false skips loading moto's AMI catalogue into
    every account-region backend: the bench fleets launch an AMI that is not
    in it (seed.IMAGE_ID, unchecked by moto), so their instances are the same,
    and seeding as well as the first call to each region get cheaper.
    """

    def __init__(self, workdir: Path, label: str):
        self.log_path = workdir / f"emulator-{label}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "server.py"), "--host", HOST, "--port", "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            env=hermetic_env(MOTO_EC2_LOAD_DEFAULT_AMIS="false"),
        )
        self.url = self._read_ready_line()

    def _read_ready_line(self) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], START_TIMEOUT)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith(f"READY http://{HOST}:"):
            self.stop()
            raise BenchError(f"the emulator did not start (see {self.log_path}): {line!r}")
        return line.split()[1]

    def control(self, method: str, path: str, body: Any = None) -> Any:
        return seed.control_call(self.url, method, path, body)

    def stats(self) -> dict[str, Any]:
        return self.control("GET", "stats")

    def seed(self, scenario: Scenario, scale: float) -> str:
        """Seeds the scenario (seed.py suspends latency and buckets while it runs)."""
        command = [
            sys.executable, str(HERE / "seed.py"), "--endpoint", self.url,
            "--scenario", scenario.seed_name, "--scale", f"{scale:g}",
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=SEED_TIMEOUT, env=hermetic_env(),
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"seeding {scenario.seed_name} took over {SEED_TIMEOUT:.0f}s") from exc
        if done.returncode != 0:
            raise BenchError(f"seeding {scenario.seed_name} failed:\n{done.stderr}")
        return done.stdout.strip()

    def make_distant(self, latency_ms: float) -> None:
        """Latency with jitter and EC2's token buckets (full) on; request counts cleared."""
        self.control("POST", "latency", {"ms": latency_ms, "jitter_ms": latency_ms * JITTER_SHARE})
        self.control("POST", "buckets", {"enabled": True})
        self.control("DELETE", "requests")

    def make_local(self) -> None:
        """Latency and throttling off again, for reading the fleet back."""
        self.control("POST", "latency", {"ms": 0, "jitter_ms": 0})
        self.control("POST", "buckets", {"enabled": False})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # server.py stops at stdin EOF
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._log.close()


# --------------------------------------------------------------------------
# Running the tool
# --------------------------------------------------------------------------


@dataclass
class Pair:
    """One account-region of a scan report."""

    account: str
    region: str
    member: bool  # entered through an assumed role
    changes: int  # instances planned for ModifyInstanceMetadataOptions


@dataclass
class Run:
    """One measured run of imds-sweep."""

    label: str
    concurrency: int
    latency_s: float
    wall: float
    exit_code: int
    peak_mb: float
    tool_cpu: float
    emulator_cpu: float
    counts: dict[str, int]
    throttled: dict[str, int]
    in_flight_peak: int
    scan: dict[str, Any] | None
    enforcement: dict[str, Any] | None
    stderr_tail: str
    verified: int | None = None  # instances read back with HttpTokens=required

    @property
    def calls(self) -> int:
        return sum(self.counts.values())

    @property
    def throttled_total(self) -> int:
        return sum(self.throttled.values())

    @property
    def succeeded(self) -> int:
        return (self.enforcement or {}).get("succeeded", 0)

    @property
    def failed(self) -> int:
        return (self.enforcement or {}).get("failed", 0)

    @property
    def enforce_seconds(self) -> float:
        return (self.enforcement or {}).get("elapsed_seconds", 0.0)

    def pairs(self) -> list[Pair]:
        if self.scan is None:
            return []
        return [
            Pair(
                account["account_id"], region["region"],
                account["access"]["type"] == "assumed_role",
                sum(1 for i in region["instances"] if i["change"]),
            )
            for account in self.scan["accounts"]
            for region in account["regions"]
        ]

    def bound(self) -> Bound:
        return lower_bound(
            self.pairs(), self.counts, self.throttled, self.latency_s, self.concurrency,
            self.emulator_cpu, modifies=self.enforcement is not None,
        )


def write_profile(workdir: Path, url: str) -> dict[str, str]:
    """AWS config and credentials files for PROFILE; returns the tool's environment."""
    (workdir / "config").write_text(
        f"[profile {PROFILE}]\nregion = us-east-1\nendpoint_url = {url}\n"
    )
    (workdir / "credentials").write_text(
        f"[{PROFILE}]\naws_access_key_id = {seed.DEMO_ACCESS_KEY}\n"
        f"aws_secret_access_key = {seed.DEMO_SECRET_KEY}\n"
    )
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "XDG_STATE_HOME": str(workdir / "state"),
        "AWS_CONFIG_FILE": str(workdir / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


GNU_TIME = Path("/usr/bin/time")


def run_child(command: list[str], env: dict[str, str], out: Path, err: Path, timeout: float):
    """Runs ``command``; returns (wall seconds, exit code, peak RSS MiB, CPU seconds).

    The peak RSS cannot be taken from this process's own wait4: a child forked from this
    (large) Python process starts with this process's resident pages counted in its high-water
    mark, which exec keeps. So GNU time, a small process, runs the tool and reports the tool's
    own peak (%M) and CPU (%U, %S); without GNU time, /proc/PID/status VmHWM is sampled
    every 10 ms until the tool exits. The tool is killed after ``timeout``.
    """
    usage_file = out.with_suffix(".usage")
    wrapped = command
    if GNU_TIME.exists():
        wrapped = [str(GNU_TIME), "-f", "%M %U %S", "-o", str(usage_file), *command]
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        started = time.monotonic()
        proc = subprocess.Popen(wrapped, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        sampled = {"hwm_kib": 0}

        def sample() -> None:
            status_path = Path(f"/proc/{proc.pid}/status")
            while proc.poll() is None:
                try:
                    for line in status_path.read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            sampled["hwm_kib"] = max(sampled["hwm_kib"], int(line.split()[1]))
                except (OSError, ValueError):
                    pass
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise BenchError(f"{' '.join(command)} took over {timeout:.0f}s and was killed") from None
        wall = time.monotonic() - started
        sampler.join()
    if wrapped is not command and usage_file.exists():
        fields = usage_file.read_text().split()[-3:]
        peak_mb, cpu = int(fields[0]) / 1024, float(fields[1]) + float(fields[2])
    else:
        peak_mb, cpu = sampled["hwm_kib"] / 1024, float("nan")
    return wall, proc.returncode, peak_mb, cpu


def read_reports(path: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The scan and enforcement reports of the tool's JSON lines."""
    reports: dict[str, Any] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            document = json.loads(line)
            reports[document.get("kind")] = document
    return reports.get("scan_report"), reports.get("enforcement_report")


def measure(
    binary: Path, emulator: Emulator, workdir: Path, label: str, latency_ms: float,
    concurrency: int, dry_run: bool, timeout: float,
) -> Run:
    """One run of the tool against ``emulator`` (already seeded and made distant)."""
    env = write_profile(workdir, emulator.url)
    command = [
        str(binary), "--profile", PROFILE, "--output", "json",
        "--journal", str(workdir / f"journal-{label}.jsonl"),
    ]
    command += ["--dry-run"] if dry_run else ["--yes"]
    if concurrency != DEFAULT_CONCURRENCY:
        command += ["--concurrency", str(concurrency)]
    out, err = workdir / f"{label}.out", workdir / f"{label}.err"
    before = emulator.stats()
    wall, exit_code, peak_mb, tool_cpu = run_child(command, env, out, err, timeout)
    after = emulator.stats()
    scan, enforcement = read_reports(out)
    stderr_tail = "\n".join(err.read_text(errors="replace").splitlines()[-15:])
    if scan is None:
        raise BenchError(f"{label}: no scan report (exit {exit_code}):\n{stderr_tail}")
    if not dry_run and enforcement is None:
        raise BenchError(f"{label}: no enforcement report (exit {exit_code}):\n{stderr_tail}")
    return Run(
        label=label, concurrency=concurrency, latency_s=latency_ms / 1000, wall=wall,
        exit_code=exit_code, peak_mb=peak_mb,
        tool_cpu=tool_cpu,
        emulator_cpu=after["cpu_seconds"] - before["cpu_seconds"],
        counts=after["counts"], throttled=after["throttled"],
        in_flight_peak=after["in_flight_peak"], scan=scan, enforcement=enforcement,
        stderr_tail=stderr_tail,
    )


# --------------------------------------------------------------------------
# Verification through the emulator
# --------------------------------------------------------------------------


def fleet_accounts(url: str) -> list[seed.Credentials]:
    """Credentials for every account of the organization (or the caller's alone)."""
    caller = seed.aws_client("sts", url, seed.ORGANIZATIONS_REGION).get_caller_identity()["Account"]
    accounts = [seed.DEMO_CREDENTIALS]
    organizations = seed.aws_client("organizations", url, seed.ORGANIZATIONS_REGION)
    try:
        pages = organizations.get_paginator("list_accounts").paginate()
        members = [a["Id"] for page in pages for a in page["Accounts"] if a["Id"] != caller]
    except organizations.exceptions.AWSOrganizationsNotInUseException:
        members = []
    return accounts + [seed.member_credentials(url, member) for member in members]


def verify_fleet(url: str) -> tuple[int, list[str]]:
    """Reads every instance of every account and enabled region back.

    Returns the number of live instances and those not holding HttpTokens=required.
    """
    described = seed.aws_client("ec2", url, "us-east-1").describe_regions(AllRegions=True)
    regions = [
        r["RegionName"] for r in described["Regions"]
        if r.get("OptInStatus", "opt-in-not-required") in ("opt-in-not-required", "opted-in")
    ]
    live, wrong = 0, []
    for credentials in fleet_accounts(url):
        for region in regions:
            ec2 = seed.aws_client("ec2", url, region, credentials)
            for page in ec2.get_paginator("describe_instances").paginate():
                for reservation in page["Reservations"]:
                    for instance in reservation["Instances"]:
                        if instance["State"]["Name"] in ("terminated", "shutting-down"):
                            continue
                        live += 1
                        tokens = instance.get("MetadataOptions", {}).get("HttpTokens")
                        if tokens != "required":
                            wrong.append(f"{instance['InstanceId']} ({region}): HttpTokens={tokens}")
    return live, wrong


def verify_after_sweep(emulator: Emulator, run: Run, expected: int) -> None:
    """Fails loudly unless all ``expected`` instances hold HttpTokens=required."""
    emulator.make_local()
    result: dict[str, Any] = {}
    reader = threading.Thread(target=lambda: result.update(v=verify_fleet(emulator.url)), daemon=True)
    reader.start()
    reader.join(VERIFY_TIMEOUT)
    if "v" not in result:
        raise BenchError(f"{run.label}: reading the fleet back failed or took over {VERIFY_TIMEOUT:.0f}s")
    live, wrong = result["v"]
    if wrong or live != expected:
        listed = "\n  ".join(wrong[:20]) + ("\n  ..." if len(wrong) > 20 else "")
        raise BenchError(
            f"{run.label}: VERIFICATION FAILED: {live} live instances (expected {expected}), "
            f"{len(wrong)} without HttpTokens=required:\n  {listed}"
        )
    run.verified = live


# --------------------------------------------------------------------------
# The lower bound
# --------------------------------------------------------------------------


@dataclass
class Bound:
    """What the workload allows at best; ``value`` is the largest component."""

    critical_path: float  # (a) the slowest account-region, start to finish
    spread: float  # (b) every call's latency spread over the requests in flight
    emulator_cpu: float  # (c) moto's CPU time (one core under the GIL)
    critical_pair: str = ""

    @property
    def value(self) -> float:
        return max(self.critical_path, self.spread, self.emulator_cpu)

    @property
    def limit(self) -> str:
        components = {"critical path": self.critical_path, "calls/in flight": self.spread,
                      "emulator CPU": self.emulator_cpu}
        return max(components, key=components.get)


def prefix_calls(counts: dict[str, int]) -> int:
    """Sequential calls before any account is scanned: GetCallerIdentity and Organizations.

    The tool identifies the caller, then sends DescribeOrganization alongside the
    ListAccounts pages (which follow one another), then any OU listing calls.
    """
    organizations = {
        key: n for key, n in counts.items() if key.startswith("organizations:")
    }
    described = organizations.pop("organizations:DescribeOrganization", 0)
    listed = organizations.pop("organizations:ListAccounts", 0)
    return counts.get("sts:GetCallerIdentity", 0) + max(described, listed) + sum(
        organizations.values()
    )


def pair_critical_path(pair: Pair, prefix: int, latency: float, per_pair: int, modifies: bool) -> float:
    """The least time from start to the end of one account-region's work.

    Calls in sequence: the prefix, AssumeRole (member accounts), DescribeRegions,
    one DescribeInstances page; ceil(m / 200) calls reading the instances
    again right before they change; then the modifications, ceil(m / per-pair
    concurrency) rounds of calls, or for more than the bucket's burst, the
    refill time of the rest plus one call; then ceil(m / 200) read-back calls.
    """
    calls = prefix + (1 if pair.member else 0) + 2
    path = calls * latency
    m = pair.changes if modifies else 0
    if m:
        rounds = math.ceil(m / per_pair) * latency
        refill = (m - MODIFY_BURST) / MODIFY_REFILL + latency if m > MODIFY_BURST else 0.0
        reads = 2 * math.ceil(m / IDS_PER_VERIFY_CALL)  # before the changes and after
        path += max(rounds, refill) + reads * latency
    return path


def lower_bound(
    pairs: list[Pair], counts: dict[str, int], throttled: dict[str, int], latency: float,
    concurrency: int, emulator_cpu: float, modifies: bool,
) -> Bound:
    """(a) the slowest account-region's critical path, (b) the calls answered (throttled
    ones excepted) times the latency over the requests in flight, (c) emulator CPU time."""
    prefix = prefix_calls(counts)
    per_pair = min(PER_PAIR, concurrency)
    critical, critical_pair = 0.0, ""
    for pair in pairs:
        path = pair_critical_path(pair, prefix, latency, per_pair, modifies)
        if path > critical:
            critical, critical_pair = path, f"{pair.account}/{pair.region}"
    answered = sum(counts.values()) - sum(throttled.values())
    return Bound(critical, answered * latency / concurrency, emulator_cpu, critical_pair)


def extrapolate(measured_wall: float, measured_calls: int, full_calls: int) -> float:
    """A --concurrency 1 run's wall time, scaled from a fraction of the fleet by API calls.

    One call at a time, each costs about the latency plus processing, so time
    grows with the number of calls (per-account discovery does not shrink with
    the fleet, which scaling by instances would ignore).
    """
    return measured_wall * full_calls / measured_calls


# --------------------------------------------------------------------------
# The scenarios' runs
# --------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    passed: bool
    detail: str


@dataclass
class Result:
    scenario: Scenario
    scale: float
    seed_summary: str = ""
    full: Run | None = None
    scan: Run | None = None
    sequential: Run | None = None  # wide: full sweep, --concurrency 1
    sequential_fraction: float = 1.0
    sequential_estimate: float | None = None  # wide: scaled to the whole fleet
    scan_sequential: Run | None = None  # many: scan, --concurrency 1
    targets: list[Target] = field(default_factory=list)


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.workdir = workdir

    def progress(self, text: str) -> None:
        print(f"bench: {text}", file=sys.stderr, flush=True)

    def fresh_run(
        self, scenario: Scenario, scale: float, label: str, concurrency: int, dry_run: bool,
    ) -> tuple[Run, str]:
        """Starts an emulator, seeds it, makes it distant, runs the tool, verifies a sweep."""
        emulator = Emulator(self.workdir, label)
        try:
            self.progress(f"{label}: seeding {scenario.seed_name} at scale {scale:g}")
            summary = emulator.seed(scenario, scale)
            emulator.make_distant(scenario.latency_ms)
            self.progress(f"{label}: running imds-sweep (concurrency {concurrency})")
            run = measure(
                self.args.binary, emulator, self.workdir, label, scenario.latency_ms,
                concurrency, dry_run, self.args.run_timeout,
            )
            self.progress(f"{label}: {run.wall:.1f}s, exit {run.exit_code}")
            if not dry_run:
                verify_after_sweep(emulator, run, scenario.instances(scale))
                self.progress(f"{label}: {run.verified} instances read back with HttpTokens=required")
            return run, summary
        finally:
            emulator.stop()

    def scenario(self, scenario: Scenario) -> Result:
        scale = self.args.scale
        result = Result(scenario, scale)
        name = scenario.name
        result.full, result.seed_summary = self.fresh_run(scenario, scale, f"{name}-full", DEFAULT_CONCURRENCY, False)
        result.scan, _ = self.fresh_run(scenario, scale, f"{name}-scan", DEFAULT_CONCURRENCY, True)
        if name == "wide":
            fraction = self.args.sequential_fraction
            result.sequential_fraction = fraction
            result.sequential, _ = self.fresh_run(
                scenario, scale * fraction, f"{name}-full-c1", 1, False
            )
            result.sequential_estimate = (
                result.sequential.wall if fraction == 1 else
                extrapolate(result.sequential.wall, result.sequential.calls, result.full.calls)
            )
        if name == "many":
            result.scan_sequential, _ = self.fresh_run(scenario, scale, f"{name}-scan-c1", 1, True)
        result.targets = targets_of(result)
        return result


def targets_of(result: Result) -> list[Target]:
    """The scenario's targets, PASS or FAIL."""
    full, name = result.full, result.scenario.name
    bound = full.bound()
    ratio = full.wall / bound.value
    targets = []
    if name == "wide":
        targets.append(Target(
            f"wall <= {WIDE_RATIO}x bound", ratio <= WIDE_RATIO,
            f"{full.wall:.1f}s / {bound.value:.1f}s = {ratio:.2f}x",
        ))
        targets.append(Target(
            f"peak memory < {WIDE_PEAK_MB:.0f} MB", full.peak_mb < WIDE_PEAK_MB, f"{full.peak_mb:.1f} MB",
        ))
    elif name == "deep":
        bucket = bound.critical_path
        deep_ratio = full.wall / bucket
        targets.append(Target(
            f"wall <= {DEEP_RATIO}x bucket bound", deep_ratio <= DEEP_RATIO,
            f"{full.wall:.1f}s / {bucket:.1f}s = {deep_ratio:.2f}x",
        ))
        targets.append(Target("zero failed modifications", full.failed == 0, f"{full.failed} failed"))
    elif name == "many":
        speedup = result.scan_sequential.wall / result.scan.wall
        targets.append(Target(
            f"scan speedup >= {MANY_SPEEDUP:.0f}x", speedup >= MANY_SPEEDUP,
            f"{result.scan_sequential.wall:.1f}s / {result.scan.wall:.1f}s = {speedup:.1f}x",
        ))
    return targets


# --------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------


def short_action(key: str) -> str:
    return key.split(":", 1)[1]


def calls_text(run: Run) -> str:
    parts = [f"{short_action(k)} {n}" for k, n in sorted(run.counts.items(), key=lambda kv: -kv[1])]
    return f"{run.calls} ({', '.join(parts)})"


def throttled_text(run: Run) -> str:
    if not run.throttled:
        return "0"
    parts = [f"{short_action(k)} {n}" for k, n in sorted(run.throttled.items())]
    return f"{run.throttled_total} ({', '.join(parts)})"


def bound_text(bound: Bound) -> str:
    return (
        f"{bound.value:.2f}s = max(a critical path {bound.critical_path:.2f}s [{bound.critical_pair}], "
        f"b calls x latency / in flight {bound.spread:.2f}s, c emulator CPU {bound.emulator_cpu:.2f}s)"
        f"; limited by {bound.limit}"
    )


def run_lines(title: str, run: Run) -> list[str]:
    bound = run.bound()
    lines = [
        f"  {title}: wall {run.wall:.2f}s, exit {run.exit_code}"
        + (f" (scan phase {run.wall - run.enforce_seconds:.2f}s, enforce + read-back "
           f"{run.enforce_seconds:.2f}s; succeeded {run.succeeded}, failed {run.failed})"
           if run.enforcement else ""),
        f"    calls: {calls_text(run)}",
        f"    throttled: {throttled_text(run)}; emulator in-flight peak {run.in_flight_peak}",
        f"    peak RSS {run.peak_mb:.1f} MB, tool CPU {run.tool_cpu:.2f}s, emulator CPU {run.emulator_cpu:.2f}s",
        f"    lower bound {bound_text(bound)}",
        f"    wall / bound {run.wall / bound.value:.2f}",
    ]
    if run.verified is not None:
        lines.append(f"    verified: {run.verified} instances hold HttpTokens=required")
    if run.exit_code != 0:
        lines.append("    stderr (last lines):\n      " + run.stderr_tail.replace("\n", "\n      "))
    return lines


def text_report(result: Result) -> str:
    s = result.scenario
    lines = [
        f"== {s.name} (scale {result.scale:g}, latency {s.latency_ms:g} ms +/- "
        f"{s.latency_ms * JITTER_SHARE:g} ms, EC2 token buckets on)",
        f"  fleet: {result.seed_summary}",
    ]
    lines += run_lines("full sweep", result.full)
    lines += run_lines("scan alone (--dry-run)", result.scan)
    if result.sequential is not None:
        seq = result.sequential
        how = (
            "measured on the whole fleet" if result.sequential_fraction == 1 else
            f"ESTIMATE: measured {seq.wall:.1f}s with {seq.calls} calls on a separately seeded "
            f"fraction {result.sequential_fraction:g} of the fleet (scale "
            f"{result.scale * result.sequential_fraction:g}), scaled by API calls to "
            f"{result.full.calls}"
        )
        lines += run_lines("full sweep --concurrency 1", seq)
        lines.append(
            f"  sequential full sweep: {result.sequential_estimate:.1f}s ({how}); "
            f"default concurrency is {result.sequential_estimate / result.full.wall:.1f}x faster"
        )
    if result.scan_sequential is not None:
        lines += run_lines("scan alone --concurrency 1", result.scan_sequential)
    for target in result.targets:
        lines.append(f"  target {target.name}: {'PASS' if target.passed else 'FAIL'} ({target.detail})")
    return "\n".join(lines)


def markdown_report(results: list[Result]) -> str:
    lines = [
        "| scenario | fleet | full sweep (s) | scan alone (s) | API calls | throttled | peak MB "
        "| emulator CPU (s) | lower bound (s): a / b / c | wall / bound | targets |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in results:
        full, bound = r.full, r.full.bound()
        fleet = (
            f"{r.scenario.instances(r.scale)} instances, {full.scan['totals']['to_change']} to change, "
            f"{seed.plural(full.scan['totals']['accounts_scanned'], 'account')}, "
            f"{r.scenario.latency_ms:g} ms"
        )
        targets = "; ".join(f"{t.name}: **{'PASS' if t.passed else 'FAIL'}** ({t.detail})" for t in r.targets)
        lines.append(
            f"| {r.scenario.name} | {fleet} | {full.wall:.1f} | {r.scan.wall:.1f} | {full.calls} "
            f"| {full.throttled_total} | {full.peak_mb:.1f} | {full.emulator_cpu:.1f} "
            f"| **{bound.value:.1f}**: {bound.critical_path:.1f} / {bound.spread:.1f} / "
            f"{bound.emulator_cpu:.1f} | {full.wall / bound.value:.2f} | {targets} |"
        )
    lines += ["", "API calls of each full sweep, by action:", ""]
    actions = sorted({k for r in results for k in r.full.counts})
    lines.append("| scenario | " + " | ".join(actions) + " |")
    lines.append("|---|" + "---:|" * len(actions))
    for r in results:
        cells = []
        for action in actions:
            n, t = r.full.counts.get(action, 0), r.full.throttled.get(action, 0)
            cells.append(f"{n}" + (f" ({t} throttled)" if t else ""))
        lines.append(f"| {r.scenario.name} | " + " | ".join(cells) + " |")
    extra = [r for r in results if r.sequential or r.scan_sequential]
    if extra:
        lines += ["", "Concurrency against one call at a time:", "",
                  "| scenario | run | default (s) | --concurrency 1 (s) | speedup |",
                  "|---|---|---:|---:|---:|"]
        for r in extra:
            if r.sequential is not None:
                note = "" if r.sequential_fraction == 1 else (
                    f" (estimate: {r.sequential.wall:.1f}s measured on fraction "
                    f"{r.sequential_fraction:g}, scaled by API calls)"
                )
                lines.append(
                    f"| {r.scenario.name} | full sweep | {r.full.wall:.1f} | "
                    f"{r.sequential_estimate:.1f}{note} | {r.sequential_estimate / r.full.wall:.1f}x |"
                )
            if r.scan_sequential is not None:
                lines.append(
                    f"| {r.scenario.name} | scan | {r.scan.wall:.1f} | {r.scan_sequential.wall:.1f} "
                    f"| {r.scan_sequential.wall / r.scan.wall:.1f}x |"
                )
    return "\n".join(lines)


def machine_text() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown",
    )
    memory = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/meminfo").read_text().splitlines()
         if line.startswith("MemTotal")),
        "unknown",
    )
    return (
        f"machine: {os.cpu_count()} CPUs ({cpu}), {memory} memory, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, load average {load_average()}"
    )


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews the numbers."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def binary_text(binary: Path) -> str:
    """Which build was measured: version, profile, content hash, build time, repository commit."""
    version = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=30,
        stdin=subprocess.DEVNULL,
    ).stdout.strip()
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()[:12]
    built = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(binary.stat().st_mtime))
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        timeout=30, stdin=subprocess.DEVNULL,
    ).stdout.strip() or "unknown"
    profile = binary.parent.name  # target/<profile>/imds-sweep
    return (
        f"binary: {binary} ({version}, {profile} profile, sha256 {digest}, built {built}); "
        f"repository at {commit}"
    )


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def default_binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    release = target / "release" / "imds-sweep"
    return release if release.exists() else target / "debug" / "imds-sweep"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--binary", type=Path, default=None,
        help="imds-sweep to run (default target/release/imds-sweep if built, else target/debug)",
    )
    parser.add_argument("--scenario", choices=["wide", "deep", "many", "all"], default="all")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply the instances per account and region"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=None,
        help="mean added latency of every AWS request (default 50 ms, 250 ms for many)",
    )
    parser.add_argument(
        "--sequential-fraction", type=float, default=1.0,
        help="share of the wide fleet for the --concurrency 1 sweep, scaled up by API calls "
        "when below 1 (default 1: the whole fleet)",
    )
    parser.add_argument(
        "--run-timeout", type=float, default=900.0,
        help="seconds after which one imds-sweep run is killed and the benchmark fails",
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown results table too")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    if args.latency_ms is not None and args.latency_ms < 0:
        parser.error("--latency-ms must not be negative")
    if not 0 < args.sequential_fraction <= 1:
        parser.error("--sequential-fraction must be in (0, 1]")
    args.binary = (args.binary or default_binary()).resolve()
    if not os.access(args.binary, os.X_OK):
        parser.error(f"no executable imds-sweep at {args.binary}")
    return args


def scenarios_of(args: argparse.Namespace) -> Iterator[Scenario]:
    names = ["wide", "deep", "many"] if args.scenario == "all" else [args.scenario]
    for name in names:
        latency = SCENARIO_LATENCY_MS[name] if args.latency_ms is None else args.latency_ms
        yield Scenario(name, latency)


def unwind(_signum: int, _frame: Any) -> None:
    """SIGTERM handler: unwind like Ctrl-C, so that every emulator is stopped on the way out."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, unwind)
    workdir = Path(tempfile.mkdtemp(prefix="imds-sweep-bench-"))
    bench = Bench(args, workdir)
    print(machine_text(), flush=True)
    print(binary_text(args.binary), flush=True)
    started = time.monotonic()
    results = []
    try:
        for scenario in scenarios_of(args):
            results.append(bench.scenario(scenario))
            print(text_report(results[-1]), flush=True)
    except BenchError as exc:
        print(f"bench: FAILED: {exc}\nbench: logs and outputs kept in {workdir}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bench: interrupted; logs and outputs kept in {workdir}", file=sys.stderr)
        return 130
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"benchmark took {time.monotonic() - started:.0f}s; load average now {load_average()}")
    if args.markdown:
        print()
        print(markdown_report(results))
    failed = [f"{r.scenario.name}: {t.name}" for r in results for t in r.targets if not t.passed]
    print("targets: " + ("all PASS" if not failed else "FAIL " + "; ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
