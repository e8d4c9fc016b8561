"""Tests of the emulator's command-line tools: server.py, pty_run.py and seed.py.

Why: the Rust harness relies on their process-level contracts (the READY
line, shutdown on stdin EOF or SIGTERM, exit codes, a terminal on stdin),
which the in-process layer tests do not exercise.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import client_factory

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
DEMO_ACCESS_KEY = "AKIADEMO00000000000"  # the key seed.py and scripts/demo use
SEED_REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")


def start_server(*extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [PYTHON, str(HERE / "server.py"), *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith("READY http://127.0.0.1:"), line + proc.stderr.read()
    return proc, line.split()[1]


def test_server_stops_when_stdin_closes():
    proc, url = start_server()
    assert int(url.rsplit(":", 1)[1]) > 0
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0
    assert proc.stdout.read() == ""  # exactly one line on stdout


def test_server_stops_on_sigterm():
    proc, _ = start_server()
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=10) == 0
    finally:
        proc.stdin.close()


def pty_run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, str(HERE / "pty_run.py"), *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )


def test_pty_run_gives_a_terminal_stdin_and_types_input():
    script = "import sys; ok = sys.stdin.isatty(); print(ok, sys.stdout.isatty(), repr(input()))"
    result = pty_run("--input", "n\\n", "--", PYTHON, "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True False 'n'"


@pytest.mark.parametrize("script, expected", [
    ("import sys; sys.exit(7)", 7),
    ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", 128 + signal.SIGTERM),
])
def test_pty_run_propagates_exit_status(script, expected):
    assert pty_run("--", PYTHON, "-c", script).returncode == expected


def test_pty_run_eof_ends_reading():
    result = pty_run("--delay", "0.2", "--eof", "--input", "y\\n", "--", PYTHON, "-c",
                     "import sys; print(repr(sys.stdin.read()))")
    assert result.stdout.strip() == "'y\\n'"


def run_seed(url: str, scenario: str, *extra: str) -> str:
    """Run seed.py as the demo does; returns its single output line."""
    result = subprocess.run(
        [PYTHON, str(HERE / "seed.py"), "--endpoint", url, "--scenario", scenario, *extra],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return lines[0]


def fleet_of(client: Any, **credentials: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    """Name → (state, MetadataOptions) of every instance the credentials' account has."""
    fleet = {}
    for region in SEED_REGIONS:
        for reservation in client("ec2", region, **credentials).describe_instances()["Reservations"]:
            for instance in reservation["Instances"]:
                name = {t["Key"]: t["Value"] for t in instance["Tags"]}["Name"]
                fleet[name] = (instance["State"]["Name"], instance["MetadataOptions"])
    return fleet


def test_seed_demo_creates_the_fleet(emulator, client):
    run_seed(emulator.url, "demo")

    fleet = fleet_of(client)
    assert len(fleet) == 12
    assert fleet["legacy-db"][1]["HttpEndpoint"] == "disabled"
    assert fleet["k8s-node-a"][1]["HttpPutResponseHopLimit"] == 2
    assert fleet["old-bastion"][0] == "terminated"
    assert {state for state, _ in fleet.values()} == {"running", "stopped", "terminated"}
    assert {o["HttpTokens"] for _, o in fleet.values()} == {"optional", "required"}


def test_seed_org_demo_creates_the_organization(emulator, client):
    summary = run_seed(emulator.url, "org-demo")
    organizations = client("organizations", "us-east-1", access_key=DEMO_ACCESS_KEY)
    sts = client("sts", "us-east-1", access_key=DEMO_ACCESS_KEY)

    # Accounts, their states, and the OU each one sits in (as a path of OU names).
    ou_names = {}
    for ou_id in [ou["Id"] for ou in organizations.list_roots()["Roots"]]:
        ou_names[ou_id] = ()
        pending = [ou_id]
        while pending:
            parent = pending.pop()
            units = organizations.list_organizational_units_for_parent(ParentId=parent)
            for unit in units["OrganizationalUnits"]:
                ou_names[unit["Id"]] = ou_names[parent] + (unit["Name"],)
                pending.append(unit["Id"])
    accounts = {}
    for account in organizations.list_accounts()["Accounts"]:
        parent = organizations.list_parents(ChildId=account["Id"])["Parents"][0]["Id"]
        accounts[account["Name"]] = (account["Id"], account["State"], ou_names[parent])
    assert sorted(ou_names.values()) == [(), ("Production",), ("Production", "Payments"), ("Sandbox",)]
    assert {name: (state, ou) for name, (_, state, ou) in accounts.items()} == {
        "master": ("ACTIVE", ()),
        "prod-web": ("ACTIVE", ("Production",)),
        "payments": ("ACTIVE", ("Production", "Payments")),
        "sandbox-dev": ("ACTIVE", ("Sandbox",)),
        "legacy-closed": ("SUSPENDED", ()),
    }
    assert accounts["master"][0] == sts.get_caller_identity()["Account"] == "123456789012"
    for name, (account_id, _, _) in accounts.items():
        assert f"{account_id} {name}" in summary

    # Instances per account, read with each member's assumed-role credentials.
    fleets = {"master": fleet_of(client, access_key=DEMO_ACCESS_KEY)}
    for name in ("prod-web", "payments", "sandbox-dev", "legacy-closed"):
        role = f"arn:aws:iam::{accounts[name][0]}:role/OrganizationAccountAccessRole"
        credentials = sts.assume_role(RoleArn=role, RoleSessionName="seed-test")["Credentials"]
        fleets[name] = fleet_of(
            client, access_key=credentials["AccessKeyId"],
            secret_key=credentials["SecretAccessKey"], session_token=credentials["SessionToken"],
        )
    assert {name: sorted(fleet) for name, fleet in fleets.items()} == {
        "master": ["mgmt-bastion", "mgmt-ci-runner"],
        "prod-web": ["api-gateway", "k8s-node-a", "old-bastion", "web-1", "web-2", "web-eu-1"],
        "payments": ["ledger", "legacy-db", "payments-api", "payments-batch"],
        "sandbox-dev": ["dev-box-1", "dev-box-2", "experiment"],
        "legacy-closed": [],
    }
    every = {name: details for fleet in fleets.values() for name, details in fleet.items()}
    assert len(every) == 15
    assert every["old-bastion"][0] == "terminated"
    assert every["legacy-db"][1]["HttpEndpoint"] == "disabled"
    assert every["k8s-node-a"][1]["HttpPutResponseHopLimit"] == 2
    assert {state for state, _ in every.values()} == {"running", "stopped", "terminated"}
    assert {o["HttpTokens"] for _, o in every.values()} == {"optional", "required"}
    assert "15 instances in 3 regions" in summary


def test_server_flags_switch_latency_and_buckets_on_and_reset_returns_to_them():
    # In-process (the flags' effect, not the process contract, is under test here).
    from server import EmulatorServer, parse_args, startup_switches

    args = parse_args(["--latency-ms", "40", "--jitter-ms", "5", "--buckets"])
    server = EmulatorServer(startup=startup_switches(args)).start()
    try:
        def control(method: str, path: str) -> Any:
            request = urllib.request.Request(server.url + path, data=None if method == "GET" else b"",
                                             method=method)
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())

        for _ in range(2):  # as started, and again after a reset
            assert control("GET", "/_layer/latency") == {"ms": 40.0, "jitter_ms": 5.0}
            assert control("GET", "/_layer/buckets")["enabled"] is True
            control("POST", "/_layer/reset")
    finally:
        server.stop()


# --------------------------------------------------------------------------
# Benchmark scenarios (small scales, so they run quickly)
# --------------------------------------------------------------------------


def tokens_by_region(ec2_clients: dict[str, Any]) -> dict[str, list[str]]:
    """Region → sorted HttpTokens of its instances."""
    result = {}
    for region, ec2 in ec2_clients.items():
        tokens = [
            instance["MetadataOptions"]["HttpTokens"]
            for page in ec2.get_paginator("describe_instances").paginate()
            for reservation in page["Reservations"]
            for instance in reservation["Instances"]
        ]
        result[region] = sorted(tokens)
    return result


def member_ec2_clients(client: Any, account_id: str, regions: tuple[str, ...]) -> dict[str, Any]:
    sts = client("sts", "us-east-1", access_key=DEMO_ACCESS_KEY)
    role = f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole"
    credentials = sts.assume_role(RoleArn=role, RoleSessionName="seed-test")["Credentials"]
    return {
        region: client("ec2", region, access_key=credentials["AccessKeyId"],
                       secret_key=credentials["SecretAccessKey"],
                       session_token=credentials["SessionToken"])
        for region in regions
    }


def test_seed_bench_deep_scales_down(emulator, client):
    summary = run_seed(emulator.url, "bench-deep", "--scale", "0.1")

    regions = SEED_REGIONS
    fleet = tokens_by_region({r: client("ec2", r, access_key=DEMO_ACCESS_KEY) for r in regions})
    assert fleet == {"us-east-1": ["optional"] * 30, "eu-west-1": [], "ap-southeast-2": []}
    assert "30 instances" in summary and "30 with HttpTokens=optional" in summary
    assert re.search(r"; took \d+\.\ds$", summary)


@pytest.fixture(scope="module")
def light_server() -> Any:
    """A server.py whose new EC2 backends skip moto's 1,291 default AMIs.

    bench-wide and bench-many create 60 and 24 (account, region) EC2 backends;
    building (and resetting) the default AMIs of each costs moto about 0.15 s,
    whatever the scale. Their seeding does not need those AMIs, so they run
    here, in a separate process, leaving the shared emulator untouched.
    """
    proc = subprocess.Popen(
        [PYTHON, str(HERE / "server.py")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"},
    )
    line = proc.stdout.readline()
    assert line.startswith("READY http://"), line + proc.stderr.read()
    yield line.split()[1]
    proc.stdin.close()
    proc.wait(timeout=10)


@pytest.fixture
def light_client(light_server: str) -> Any:
    """Like ``client``, but for ``light_server``, which starts each test reset."""
    reset = urllib.request.Request(light_server + "/_layer/reset", data=b"", method="POST")
    urllib.request.urlopen(reset, timeout=10).close()
    return client_factory(light_server)


@pytest.mark.parametrize("scenario, scale, members, regions", [
    ("bench-many", "0.1", 12, ("us-east-1", "eu-west-1")),
    ("bench-wide", "0.01", 20, ("us-east-1", "eu-west-1", "ap-southeast-2")),
])
def test_seed_bench_organizations(light_server, light_client, scenario, scale, members, regions):
    summary = run_seed(light_server, scenario, "--scale", scale)
    client = light_client

    organizations = client("organizations", "us-east-1", access_key=DEMO_ACCESS_KEY)
    accounts = organizations.get_paginator("list_accounts").paginate().build_full_result()["Accounts"]
    member_ids = sorted(a["Id"] for a in accounts if a["Name"].startswith("bench-member-"))
    assert len(accounts) == members + 1 and len(member_ids) == members
    # Scaled to the minimum: one optional and one required instance per member and region.
    for account_id in (member_ids[0], member_ids[-1]):
        fleet = tokens_by_region(member_ec2_clients(client, account_id, regions))
        assert fleet == {region: ["optional", "required"] for region in regions}
    total = 2 * members * len(regions)
    assert f"{total} instances" in summary and f"{total // 2} with HttpTokens=optional" in summary


def test_seed_rejects_scale_for_fixed_scenarios(emulator):
    result = subprocess.run(
        [PYTHON, str(HERE / "seed.py"), "--endpoint", emulator.url, "--scenario", "demo",
         "--scale", "0.5"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2 and "bench-* scenarios only" in result.stderr


def test_seed_suspends_latency_and_buckets_then_restores_them(emulator, control, client):
    # Seeding through either would be far too slow (5 s a request) or throttled (no refill).
    control("POST", "/_layer/latency", {"ms": 5000})
    buckets = {"enabled": True, "classes": {"default": {"capacity": 1, "refill": 0}}}
    _, configured = control("POST", "/_layer/buckets", buckets)

    run_seed(emulator.url, "bench-deep", "--scale", "0.01")

    assert control("GET", "/_layer/latency")[1] == {"ms": 5000.0, "jitter_ms": 0.0}
    assert control("GET", "/_layer/buckets")[1] == configured
    control("POST", "/_layer/latency", {"ms": 0})
    ec2 = client("ec2", "us-east-1", access_key=DEMO_ACCESS_KEY)
    ec2.describe_regions()  # the restored buckets start full ...
    with pytest.raises(ClientError) as excinfo:
        ec2.describe_regions()  # ... and throttle again
    assert excinfo.value.response["Error"]["Code"] == "RequestLimitExceeded"
