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

import pytest

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


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


def test_seed_demo_creates_the_fleet(emulator, client):
    result = subprocess.run(
        [PYTHON, str(HERE / "seed.py"), "--endpoint", emulator.url, "--scenario", "demo"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1

    fleet = {}
    for region in ("us-east-1", "eu-west-1", "ap-southeast-2"):
        for reservation in client("ec2", region).describe_instances()["Reservations"]:
            for instance in reservation["Instances"]:
                name = {t["Key"]: t["Value"] for t in instance["Tags"]}["Name"]
                fleet[name] = (instance["State"]["Name"], instance["MetadataOptions"])
    assert len(fleet) == 12
    assert fleet["legacy-db"][1]["HttpEndpoint"] == "disabled"
    assert fleet["k8s-node-a"][1]["HttpPutResponseHopLimit"] == 2
    assert fleet["old-bastion"][0] == "terminated"
    assert {state for state, _ in fleet.values()} == {"running", "stopped", "terminated"}
    assert {o["HttpTokens"] for _, o in fleet.values()} == {"optional", "required"}
