"""Tests of the emulator's command-line tools: server.py, pty_run.py and seed.py.

Why: the Rust harness relies on their process-level contracts (the READY
line, shutdown on stdin EOF or SIGTERM, exit codes, a terminal on stdin),
which the in-process layer tests do not exercise.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from typing import Any

import pytest

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


def run_seed(url: str, scenario: str) -> str:
    """Run seed.py as the demo does; returns its single output line."""
    result = subprocess.run(
        [PYTHON, str(HERE / "seed.py"), "--endpoint", url, "--scenario", scenario],
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
