"""Shared fixtures: one in-process emulator per test session, reset before every test.

Why in-process: it starts in well under a second and lets a failing test show
the layer's traceback directly. Credentials are always passed to boto3
explicitly so no test depends on (or leaks into) the developer's environment.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server import EmulatorServer  # noqa: E402

ACCESS_KEY = "AKIATESTLAYER0000000"
SECRET_KEY = "test-secret"
# One attempt only: a retried fault would hide how many times it was answered.
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture(scope="session")
def emulator() -> Any:
    server = EmulatorServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_state(emulator: EmulatorServer) -> None:
    control_call(emulator.url, "POST", "/_layer/reset")


def control_call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Call the control endpoint; returns (HTTP status, decoded JSON)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
def control(emulator: EmulatorServer) -> Callable[..., tuple[int, Any]]:
    return lambda method, path, body=None: control_call(emulator.url, method, path, body)


def client_factory(url: str) -> Callable[..., Any]:
    """Factory for boto3 clients pointed at the emulator serving ``url``."""

    def make(service: str, region: str = "eu-west-1", access_key: str = ACCESS_KEY,
             secret_key: str = SECRET_KEY, session_token: str | None = None) -> Any:
        return boto3.client(
            service,
            endpoint_url=url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            aws_session_token=session_token,
            config=NO_RETRIES,
        )

    return make


@pytest.fixture
def client(emulator: EmulatorServer) -> Callable[..., Any]:
    """Factory for boto3 clients pointed at the shared emulator."""
    return client_factory(emulator.url)
