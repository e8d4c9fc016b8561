"""WSGI layer in front of moto that makes it behave like real AWS for imds-sweep.

Why this exists: the Rust integration tests of imds-sweep talk to moto over
HTTP, but moto 5.2 differs from real AWS in the few calls the tool depends on
(ModifyInstanceMetadataOptions and DescribeRegions), and the tests also need to
inject failures (access denied, throttling, slow regions) that moto cannot
produce on its own. This module wraps moto's in-process WSGI application and:

* identifies every AWS request (service, region, access key, account, action,
  parameters) from the SigV4 Authorization header and the request body;
* counts requests per ``service:Action`` so tests can assert on API usage;
* answers, delays or drops requests according to fault rules registered at
  runtime (optionally with a probability, drawn from one seedable generator,
  and optionally resetting the TCP connection before or after moto acts);
* corrects moto's deviations from real AWS, one small named function each
  (EC2 metadata options and regions, who may read an Organization, account-level
  IMDS defaults, and metadata changes that stay ``pending`` for a while);
* emulates a distant, busy AWS when asked: added latency per request and EC2's
  token-bucket request throttling, with statistics (throttled and faulted
  requests, CPU time, peak concurrency) for benchmarks;
* serves a JSON control API under ``/_layer/`` on the same port.

Every addition beyond the corrections is off by default. Seed a scenario
before switching latency or throttling on (seed.py suspends them anyway), so
that seeding is neither slowed down nor throttled.

Control API (JSON bodies; a malformed one answers 400 with ``{"error": ...}``):

* ``POST/GET/DELETE faults``: fault rules (see ``FaultRule``);
* ``GET/DELETE requests``: ``service:Action`` counts (DELETE clears all stats);
* ``GET stats``: counts, throttled counts, faulted total, CPU seconds, peak
  number of concurrent AWS requests;
* ``POST/GET regions``: region opt-in overrides;
* ``POST/GET seed``: ``{"seed": 42}`` restarts the random sequence;
* ``POST/GET pending``: ``{"seconds": 2.0}`` keeps metadata changes pending;
* ``POST/GET page-size``: ``{"max": 50}`` answers DescribeInstances pages of at most
  that many reservations, whatever MaxResults asks (AWS may return fewer than asked;
  ``{"max": null}`` turns it off), so that a client asking for large pages still
  gets several;
* ``POST/GET metadata-defaults``: account-level IMDS defaults per account/region;
* ``POST/GET latency``: ``{"ms": 50, "jitter_ms": 10}``;
* ``POST/GET buckets``: ``{"enabled": true, "classes": {name: {capacity, refill}}}``;
* ``POST reset``: all of the above and moto's state back to the start.

Everything that is not an AWS request (for instance ``/moto-api/``) is passed
to moto untouched; only a ``/moto-api/reset`` is followed by the one clean-up
that moto's reset forgets (see ``forget_organization_memberships``).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import re
import resource
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, NoReturn
from urllib.parse import parse_qsl, urlencode
from xml.sax.saxutils import escape

import botocore.session

from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.ec2.models.availability_zones_and_regions import RegionsAndZonesBackend
from moto.iam.models import get_account_id_from
from moto.organizations.models import OrganizationsBackend, organizations_backends
from moto.server import DomainDispatcherApplication, create_backend_app
from moto.utilities.utils import get_partition

CONTROL_PREFIX = "/_layer/"
MOTO_RESET_PATH = "/moto-api/reset"

EC2_NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"
QUERY_NAMESPACES = {
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
}
DEFAULT_QUERY_NAMESPACE = QUERY_NAMESPACES["sts"]

OPT_IN_STATUSES = ("opt-in-not-required", "opted-in", "not-opted-in")
ENABLED_OPT_IN_STATUSES = ("opt-in-not-required", "opted-in")

# Credential=AKID/20250101/eu-west-1/ec2/aws4_request (the date part is ignored).
_CREDENTIAL_RE = re.compile(r"Credential=([^/,\s]+)/[^/,\s]+/([^/,\s]+)/([^/,\s]+)/aws4_request")

# Organizations calls that AWS answers only to the management account and to
# delegated administrators: the read-only views of the organization's structure
# and accounts. (DescribeOrganization is not among them: every member may call
# it, and moto already answers it correctly for members.)
ORGANIZATIONS_ADMIN_READS = frozenset({
    "DescribeAccount",
    "DescribeOrganizationalUnit",
    "ListAccounts",
    "ListAccountsForParent",
    "ListChildren",
    "ListOrganizationalUnitsForParent",
    "ListParents",
    "ListRoots",
})

# Instance metadata options as named in the query API, mapped to the attribute
# names of moto's MetadataOptions object.
METADATA_OPTION_ATTRIBUTES = {
    "HttpTokens": "http_tokens",
    "HttpPutResponseHopLimit": "http_put_response_hop_limit",
    "HttpEndpoint": "http_endpoint",
    "HttpProtocolIpv6": "http_protocol_ipv6",
    "InstanceMetadataTags": "instance_metadata_tags",
}

Headers = list[tuple[str, str]]


# --------------------------------------------------------------------------
# Request identification
# --------------------------------------------------------------------------


@dataclass
class AwsRequest:
    """What the layer knows about one AWS API call."""

    service: str
    region: str
    access_key: str
    account: str
    action: str
    protocol: str  # "ec2", "query" or "json"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def counter_key(self) -> str:
        return f"{self.service}:{self.action}"


def read_body(environ: dict[str, Any]) -> bytes:
    """Read the whole request body and put an identical copy back for moto."""
    stream = environ.get("wsgi.input")
    length_text = environ.get("CONTENT_LENGTH") or ""
    if stream is None:
        body = b""
    elif length_text.isdigit():
        body = stream.read(int(length_text))
    elif environ.get("wsgi.input_terminated"):
        # Chunked upload without Content-Length: werkzeug terminates the stream.
        body = stream.read()
    else:
        body = b""
    replace_body(environ, body)
    return body


def replace_body(environ: dict[str, Any], body: bytes) -> None:
    """Make ``body`` the request body seen by the wrapped application."""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))


def _param_text(value: Any) -> str:
    """Render a parameter value the way it appears on the wire (for matching)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_params(environ: dict[str, Any], body: bytes, protocol: str) -> dict[str, str]:
    """Flat parameter map: form fields for query protocols, top-level scalars for JSON."""
    params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    if protocol == "json":
        try:
            document = json.loads(body or b"{}")
        except ValueError:
            document = {}
        if isinstance(document, dict):
            for key, value in document.items():
                if isinstance(value, (str, int, float, bool)):
                    params[key] = _param_text(value)
    else:
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def account_for(environ: dict[str, Any], access_key: str) -> str:
    """The account moto will act as, using moto's own order of precedence."""
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    if environ.get("HTTP_X_MOTO_ACCOUNT_ID"):
        return environ["HTTP_X_MOTO_ACCOUNT_ID"]
    return get_account_id_from(access_key) if access_key else DEFAULT_ACCOUNT_ID


def identify(environ: dict[str, Any], body: bytes) -> AwsRequest | None:
    """Describe a SigV4-signed request, or return None for anything else."""
    match = _CREDENTIAL_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if match is None:
        return None
    access_key, region, service = match.groups()
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if service == "ec2":
        protocol = "ec2"
    elif target or "json" in environ.get("CONTENT_TYPE", ""):
        protocol = "json"
    else:
        protocol = "query"
    params = parse_params(environ, body, protocol)
    if protocol == "json":
        action = target.rsplit(".", 1)[-1] if target else "Unknown"
    else:
        action = params.get("Action", "Unknown")
    return AwsRequest(
        service=service,
        region=region,
        access_key=access_key,
        account=account_for(environ, access_key),
        action=action,
        protocol=protocol,
        params=params,
    )


# --------------------------------------------------------------------------
# AWS-shaped responses
# --------------------------------------------------------------------------


@dataclass
class Reply:
    """A complete HTTP response, buffered so it can be inspected and rewritten."""

    status: int
    headers: Headers
    body: bytes

    def send(self, start_response: Callable[..., Any]) -> list[bytes]:
        reason = _REASONS.get(self.status, "Status")
        headers = [(k, v) for k, v in self.headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(self.body))))
        start_response(f"{self.status} {reason}", headers)
        return [self.body]


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def error_reply(req: AwsRequest, status: int, code: str, message: str) -> Reply:
    """An error in the wire format the SDK expects for ``req``'s service."""
    request_id = str(uuid.uuid4())
    headers: Headers = [("x-amzn-requestid", request_id)]
    if req.protocol == "json":
        headers += [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-errortype", code)]
        body = json.dumps({"__type": code, "message": message})
    elif req.protocol == "ec2":
        headers.append(("Content-Type", "text/xml;charset=UTF-8"))
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
    else:
        namespace = QUERY_NAMESPACES.get(req.service, DEFAULT_QUERY_NAMESPACE)
        headers.append(("Content-Type", "text/xml"))
        body = (
            f'<ErrorResponse xmlns="{namespace}"><Error><Type>Sender</Type>'
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    return Reply(status, headers, body.encode("utf-8"))


def json_reply(status: int, document: Any) -> Reply:
    """A control-endpoint response."""
    return Reply(status, [("Content-Type", "application/json")], json.dumps(document).encode())


# --------------------------------------------------------------------------
# Fault rules
# --------------------------------------------------------------------------

_RULE_FIELDS = (
    "service", "action", "region", "account", "access_key",
    "params", "status", "code", "message", "times", "delay_ms",
    "probability", "reset", "after",
)


@dataclass
class FaultRule:
    """One injected behaviour: answer an error, delay, or drop matching requests.

    A rule with neither ``status``, ``delay_ms`` nor ``reset`` forwards matching
    requests unchanged; its ``hits`` still count them, which makes it a cheap
    probe. ``probability`` makes the rule apply to only that fraction of the
    requests it matches (the others go on to later rules and moto). ``reset``
    aborts the TCP connection instead of answering; with ``after`` the request
    is first handled by moto, so the change happens but its answer is lost.
    """

    id: int
    service: str | None = None
    action: str | None = None
    region: str | None = None
    account: str | None = None
    access_key: str | None = None
    params: dict[str, str] | None = None
    status: int | None = None
    code: str = "InternalError"
    message: str = "Injected fault"
    times: int | None = None
    delay_ms: int = 0
    probability: float = 1.0
    reset: bool = False
    after: bool = False
    hits: int = 0

    def live(self) -> bool:
        return self.times is None or self.hits < self.times

    def matches(self, req: AwsRequest) -> bool:
        scalars = (
            (self.service, req.service),
            (self.action, req.action),
            (self.region, req.region),
            (self.account, req.account),
            (self.access_key, req.access_key),
        )
        if any(wanted is not None and wanted != actual for wanted, actual in scalars):
            return False
        return all(req.params.get(k) == v for k, v in (self.params or {}).items())


def _is_number(value: Any) -> bool:
    """True for JSON numbers (a bool is not one, although Python says it is an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_fault_rule(rule_id: int, document: Any) -> FaultRule:
    """Validate a POST /_layer/faults body; raises ValueError with a readable reason."""
    if not isinstance(document, dict):
        raise ValueError("fault rule must be a JSON object")
    unknown = sorted(set(document) - set(_RULE_FIELDS))
    if unknown:
        raise ValueError(f"unknown fault rule fields: {', '.join(unknown)}")
    values = {k: v for k, v in document.items() if v is not None}
    for name in ("service", "action", "region", "account", "access_key", "code", "message"):
        if name in values and not isinstance(values[name], str):
            raise ValueError(f"{name} must be a string")
    for name in ("status", "times", "delay_ms"):
        if name in values and (isinstance(values[name], bool) or not isinstance(values[name], int)):
            raise ValueError(f"{name} must be an integer")
    for name in ("reset", "after"):
        if name in values and not isinstance(values[name], bool):
            raise ValueError(f"{name} must be true or false")
    if "status" in values and not 100 <= values["status"] <= 599:
        raise ValueError("status must be an HTTP status code")
    if values.get("times", 1) < 1:
        raise ValueError("times must be at least 1 (or null for always)")
    if values.get("delay_ms", 0) < 0:
        raise ValueError("delay_ms must not be negative")
    if "probability" in values:
        if not _is_number(values["probability"]) or not 0 <= values["probability"] <= 1:
            raise ValueError("probability must be a number from 0 to 1")
        values["probability"] = float(values["probability"])
    if values.get("after") and not values.get("reset"):
        raise ValueError("after needs reset: it says when the connection is reset")
    if values.get("reset") and "status" in values:
        raise ValueError("a rule either answers a status or resets the connection, not both")
    if "params" in values:
        if not isinstance(values["params"], dict):
            raise ValueError("params must be an object")
        values["params"] = {str(k): _param_text(v) for k, v in values["params"].items()}
    return FaultRule(id=rule_id, **values)


class LayerRandom:
    """The layer's one source of randomness (fault probabilities, latency jitter).

    One seedable generator makes a test repeatable: after POST /_layer/seed the
    same sequence of requests gets the same draws. The lock makes each draw
    atomic; concurrent requests still draw in whatever order they arrive.
    """

    def __init__(self, seed: int | str | None = None) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self._random = random.Random(seed)

    @property
    def seed_value(self) -> int | str | None:
        with self._lock:
            return self._seed

    def reseed(self, seed: int | str | None) -> None:
        """Restart the sequence; None seeds from the operating system (not repeatable)."""
        with self._lock:
            self._seed = seed
            self._random.seed(seed)

    def chance(self, probability: float) -> bool:
        """True with the given probability; certain outcomes consume no draw."""
        if probability >= 1:
            return True
        if probability <= 0:
            return False
        with self._lock:
            return self._random.random() < probability

    def uniform(self, low: float, high: float) -> float:
        with self._lock:
            return self._random.uniform(low, high)


class FaultStore:
    """Thread-safe ordered list of fault rules."""

    def __init__(self, rng: LayerRandom) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._rng = rng

    def add(self, document: Any) -> FaultRule:
        with self._lock:
            rule = parse_fault_rule(next(self._ids), document)
            self._rules.append(rule)
            return rule

    def take(self, req: AwsRequest) -> FaultRule | None:
        """First live rule matching ``req`` that wins its probability draw.

        Counting the hit consumes one of its ``times``; a rule that loses its
        draw is not hit, and the next rules get their chance.
        """
        with self._lock:
            for rule in self._rules:
                if rule.live() and rule.matches(req) and self._rng.chance(rule.probability):
                    rule.hits += 1
                    return rule
            return None

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(rule) for rule in self._rules]

    def clear(self) -> int:
        with self._lock:
            count = len(self._rules)
            self._rules.clear()
            return count


class RequestCounter:
    """Thread-safe ``service:Action`` → count map."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


# --------------------------------------------------------------------------
# Connection faults
# --------------------------------------------------------------------------


class ConnectionAbort(ConnectionResetError):
    """Raised out of the WSGI application to drop the connection without an answer.

    werkzeug's dev server treats any ConnectionError from the application as a
    connection the client dropped: it writes nothing and stops serving that
    connection, so the only thing the client ever receives is the reset.
    """


def abort_connection(environ: dict[str, Any]) -> NoReturn:
    """Reset the request's TCP connection instead of answering it.

    SO_LINGER with a zero timeout makes the final close send an RST instead of
    an orderly FIN. Shutting down the reading side stops werkzeug from waiting
    for another request on this keep-alive connection (it sees end of input),
    so the close happens at once; server.py's request handler makes that close
    abortive (see ``LayerRequestHandler``). Needs werkzeug's dev server, which
    exposes the client socket as ``environ["werkzeug.socket"]``.
    """
    connection = environ.get("werkzeug.socket")
    if connection is None:
        raise RuntimeError("connection faults need werkzeug's server (no werkzeug.socket)")
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    try:
        connection.shutdown(socket.SHUT_RD)
    except OSError:
        pass  # the client has already gone: nothing left to reset
    raise ConnectionAbort("connection reset by an emulator fault rule")


# --------------------------------------------------------------------------
# Latency
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencySettings:
    """Added latency of every AWS request: ``ms`` plus or minus a uniform ``jitter_ms``."""

    ms: float = 0.0
    jitter_ms: float = 0.0


def parse_latency(document: Any) -> LatencySettings:
    """Validate a POST /_layer/latency body."""
    if not isinstance(document, dict):
        raise ValueError("body must be a JSON object")
    unknown = sorted(set(document) - {"ms", "jitter_ms"})
    if unknown:
        raise ValueError(f"unknown latency fields: {', '.join(unknown)}")
    values = {k: document.get(k, 0) for k in ("ms", "jitter_ms")}
    for name, value in values.items():
        if not _is_number(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative number")
    return LatencySettings(float(values["ms"]), float(values["jitter_ms"]))


class Latency:
    """Sleeps every AWS request for the configured latency, in its own thread.

    Only choosing the duration is done under a lock; the sleep itself holds
    none, so concurrent requests overlap as they would against a distant
    endpoint.
    """

    def __init__(self, rng: LayerRandom, settings: LatencySettings = LatencySettings()) -> None:
        self._lock = threading.Lock()
        self._rng = rng
        self._settings = settings

    @property
    def settings(self) -> LatencySettings:
        with self._lock:
            return self._settings

    def configure(self, settings: LatencySettings) -> None:
        with self._lock:
            self._settings = settings

    def wait(self) -> None:
        settings = self.settings
        if settings.ms <= 0 and settings.jitter_ms <= 0:
            return
        jitter = 0.0
        if settings.jitter_ms:
            jitter = self._rng.uniform(-settings.jitter_ms, settings.jitter_ms)
        time.sleep(max(0.0, settings.ms + jitter) / 1000)


# --------------------------------------------------------------------------
# EC2 request throttling (token buckets)
# --------------------------------------------------------------------------
#
# EC2 throttles each account per region and per class of action with token
# buckets: every request takes a token, an empty bucket answers 503
# RequestLimitExceeded, and tokens come back at a steady refill rate.
# https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html


@dataclass(frozen=True)
class BucketClass:
    """Size and refill rate (tokens per second) of one class of EC2 actions."""

    capacity: float
    refill: float


DEFAULT_BUCKET_CLASSES = {
    "ModifyInstanceMetadataOptions": BucketClass(capacity=100.0, refill=5.0),
    "DescribeInstances": BucketClass(capacity=100.0, refill=20.0),
    "default": BucketClass(capacity=100.0, refill=20.0),
}


@dataclass(frozen=True)
class BucketSettings:
    """Whether EC2 requests are throttled, and the bucket of each action class.

    An action without a class of its own uses the ``default`` class.
    """

    enabled: bool = False
    classes: dict[str, BucketClass] = field(default_factory=lambda: dict(DEFAULT_BUCKET_CLASSES))

    def class_of(self, action: str) -> str:
        return action if action in self.classes else "default"

    def describe(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "classes": {k: asdict(v) for k, v in self.classes.items()}}


def parse_bucket_settings(document: Any) -> BucketSettings:
    """Validate a POST /_layer/buckets body; given classes replace the built-in ones by name."""
    if not isinstance(document, dict):
        raise ValueError("body must be a JSON object")
    unknown = sorted(set(document) - {"enabled", "classes"})
    if unknown:
        raise ValueError(f"unknown bucket fields: {', '.join(unknown)}")
    enabled = document.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValueError("enabled must be true or false")
    given = document.get("classes") or {}
    if not isinstance(given, dict):
        raise ValueError("classes must be an object of action name to {capacity, refill}")
    classes = dict(DEFAULT_BUCKET_CLASSES)
    for name, spec in given.items():
        if not isinstance(spec, dict) or set(spec) != {"capacity", "refill"}:
            raise ValueError(f"class {name} must be an object with capacity and refill")
        if not _is_number(spec["capacity"]) or spec["capacity"] < 1:
            raise ValueError(f"class {name}: capacity must be a number of at least 1")
        if not _is_number(spec["refill"]) or spec["refill"] < 0:
            raise ValueError(f"class {name}: refill must be a non-negative number")
        classes[name] = BucketClass(float(spec["capacity"]), float(spec["refill"]))
    return BucketSettings(enabled, classes)


@dataclass
class _Bucket:
    tokens: float
    updated: float  # time.monotonic() of the last refill


class TokenBuckets:
    """One token bucket per (account, region, action class), for EC2 requests only.

    Buckets start full and refill continuously:
    ``tokens = min(capacity, tokens + elapsed * refill)``. New settings start
    over with full buckets.
    """

    def __init__(self, settings: BucketSettings = BucketSettings()) -> None:
        self._lock = threading.Lock()
        self._settings = settings
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}

    @property
    def settings(self) -> BucketSettings:
        with self._lock:
            return self._settings

    def configure(self, settings: BucketSettings) -> None:
        with self._lock:
            self._settings = settings
            self._buckets.clear()

    def take(self, req: AwsRequest) -> bool:
        """Take a token for ``req``; False means it is throttled."""
        if req.service != "ec2":
            return True
        now = time.monotonic()
        with self._lock:
            if not self._settings.enabled:
                return True
            name = self._settings.class_of(req.action)
            spec = self._settings.classes[name]
            key = (req.account, req.region, name)
            bucket = self._buckets.setdefault(key, _Bucket(spec.capacity, now))
            bucket.tokens = min(spec.capacity, bucket.tokens + (now - bucket.updated) * spec.refill)
            bucket.updated = now
            if bucket.tokens < 1:
                return False
            bucket.tokens -= 1
            return True


def throttled_reply(req: AwsRequest) -> Reply:
    """EC2's answer to a request that found its token bucket empty."""
    return error_reply(req, 503, "RequestLimitExceeded", "Request limit exceeded.")


# --------------------------------------------------------------------------
# Concurrency statistics
# --------------------------------------------------------------------------


class InFlight:
    """Number of AWS requests being handled right now, and the most seen at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = 0
        self._peak = 0

    @contextmanager
    def track(self) -> Iterator[None]:
        with self._lock:
            self._current += 1
            self._peak = max(self._peak, self._current)
        try:
            yield
        finally:
            with self._lock:
                self._current -= 1

    @property
    def peak(self) -> int:
        with self._lock:
            return self._peak

    def reset_peak(self) -> None:
        """Start a new measurement; requests still in flight count towards it."""
        with self._lock:
            self._peak = self._current


def cpu_seconds() -> float:
    """CPU time (user + system) this process has used so far, all threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------
# Region opt-in state
# --------------------------------------------------------------------------


def aws_partition_regions() -> list[str]:
    """EC2 regions of the commercial ``aws`` partition, from botocore's endpoint data."""
    session = botocore.session.get_session()
    return sorted(session.get_available_regions("ec2", partition_name="aws"))


class RegionOptIns:
    """Per-account region opt-in status, defaulting to moto's classification."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._overrides: dict[tuple[str, str], str] = {}
        self.regions = aws_partition_regions()
        self._default_enabled = set(RegionsAndZonesBackend.regions_opt_in_not_required)

    def status(self, account: str, region: str) -> str:
        with self._lock:
            override = self._overrides.get((account, region))
        if override is not None:
            return override
        return "opt-in-not-required" if region in self._default_enabled else "not-opted-in"

    def set(self, account: str, region: str, status: str) -> None:
        if region not in self.regions:
            raise ValueError(f"unknown region {region!r}")
        if status not in OPT_IN_STATUSES:
            raise ValueError(f"opt_in_status must be one of {', '.join(OPT_IN_STATUSES)}")
        with self._lock:
            self._overrides[(account, region)] = status

    def overrides(self) -> list[dict[str, str]]:
        with self._lock:
            return [
                {"account": a, "region": r, "opt_in_status": s}
                for (a, r), s in sorted(self._overrides.items())
            ]

    def clear(self) -> None:
        with self._lock:
            self._overrides.clear()


# --------------------------------------------------------------------------
# Corrections of moto 5.2 deviations from real AWS
# --------------------------------------------------------------------------


def is_true(value: str | None) -> bool:
    return (value or "").lower() == "true"


def find_instance(req: AwsRequest) -> Any | None:
    """moto's Instance object addressed by ``req``'s InstanceId, or None."""
    instance_id = req.params.get("InstanceId")
    if not instance_id:
        return None
    try:
        return ec2_backends[req.account][req.region].get_instance(instance_id)
    except (KeyError, EC2ClientError):
        return None


def fill_unsent_metadata_options(instance: Any, body: bytes) -> bytes:
    """Correction 1: moto resets every option the request leaves out; AWS keeps them.

    Adds the instance's current value of each unsent option to the form body.
    """
    current = instance.metadata_options
    pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    sent = {key for key, _ in pairs}
    for param, attribute in METADATA_OPTION_ATTRIBUTES.items():
        value = getattr(current, attribute, None)
        if param not in sent and value is not None:
            pairs.append((param, str(value)))
    return urlencode(pairs).encode("utf-8")


def dry_run_reply(req: AwsRequest) -> Reply:
    """What EC2 answers to an authorized request that has DryRun=true."""
    return error_reply(
        req, 412, "DryRunOperation", "Request would have succeeded, but DryRun flag is set."
    )


def dry_run_modify_metadata_options(req: AwsRequest) -> Reply | None:
    """Correction 2: moto ignores DryRun here; AWS answers 412 DryRunOperation, changing nothing."""
    return dry_run_reply(req) if is_true(req.params.get("DryRun")) else None


def report_pending_for_running(reply: Reply) -> Reply:
    """Correction 3: AWS reports the change as ``pending`` on a running instance."""
    if reply.status == 200:
        reply.body = reply.body.replace(b"<state>applied</state>", b"<state>pending</state>", 1)
    return reply


class PendingMetadataChanges:
    """Correction 3b: a metadata change on a running instance takes a while to apply.

    AWS reports ``metadataOptions/state`` as ``pending`` in DescribeInstances
    until the instance has picked the change up; moto applies it at once. With
    ``seconds`` > 0 the layer marks moto's new MetadataOptions object pending
    after a successful change and flips it back to ``applied`` at the first EC2
    request after the delay (lazily: no timer threads). Off (0 s) by default.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds = 0.0
        # (account, region, instance id) -> (moto MetadataOptions, monotonic deadline)
        self._pending: dict[tuple[str, str, str], tuple[Any, float]] = {}

    @property
    def seconds(self) -> float:
        with self._lock:
            return self._seconds

    def configure(self, seconds: float) -> None:
        with self._lock:
            self._seconds = seconds

    def start(self, req: AwsRequest, instance: Any) -> None:
        """Mark ``instance``'s (just changed) metadata options pending for ``seconds``."""
        with self._lock:
            if self._seconds <= 0:
                return
            options = instance.metadata_options
            options.state = "pending"
            key = (req.account, req.region, instance.id)
            self._pending[key] = (options, time.monotonic() + self._seconds)

    def settle(self) -> None:
        """Report every change whose delay has passed as ``applied``."""
        now = time.monotonic()
        with self._lock:
            for key, (options, deadline) in list(self._pending.items()):
                if deadline <= now:
                    options.state = "applied"
                    del self._pending[key]

    def clear(self) -> None:
        with self._lock:
            self._seconds = 0.0
            self._pending.clear()


def parse_page_size(document: Any) -> int | None:
    """Validate a POST /_layer/page-size body; returns the cap, or None for none."""
    if not isinstance(document, dict) or set(document) != {"max"}:
        raise ValueError('body must be {"max": N} or {"max": null}')
    cap = document["max"]
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise ValueError("max must be a positive integer or null")
    return cap


def cap_max_results(environ: dict[str, Any], body: bytes, cap: int) -> None:
    """Lower a request's MaxResults to ``cap``, rewriting the body moto will read."""
    fields = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    capped = [
        (key, str(cap) if key == "MaxResults" and value.isdigit() and int(value) > cap else value)
        for key, value in fields
    ]
    replace_body(environ, urlencode(capped).encode())


def parse_pending(document: Any) -> float:
    """Validate a POST /_layer/pending body; returns the delay in seconds."""
    if not isinstance(document, dict) or set(document) - {"seconds"}:
        raise ValueError('body must be {"seconds": N}')
    seconds = document.get("seconds", 0)
    if not _is_number(seconds) or seconds < 0:
        raise ValueError("seconds must be a non-negative number")
    return float(seconds)


# Account-level IMDS defaults: control field -> (XML element, allowed values or None for any).
METADATA_DEFAULT_FIELDS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "http_tokens": ("httpTokens", ("optional", "required", "no-preference")),
    "http_put_response_hop_limit": ("httpPutResponseHopLimit", None),
    "http_endpoint": ("httpEndpoint", ("enabled", "disabled")),
    "instance_metadata_tags": ("instanceMetadataTags", ("enabled", "disabled")),
    "http_tokens_enforced": ("httpTokensEnforced", ("enabled", "disabled")),
    "managed_by": ("managedBy", ("account", "declarative-policy")),
    "managed_exception_message": ("managedExceptionMessage", None),
}


def parse_metadata_defaults(document: Any) -> tuple[str, str, dict[str, Any]]:
    """Validate a POST /_layer/metadata-defaults body; returns (account, region, settings)."""
    if not isinstance(document, dict):
        raise ValueError("body must be a JSON object")
    unknown = sorted(set(document) - {"account", "region"} - set(METADATA_DEFAULT_FIELDS))
    if unknown:
        raise ValueError(f"unknown metadata-defaults fields: {', '.join(unknown)}")
    account, region = document.get("account"), document.get("region")
    if not isinstance(account, str) or not isinstance(region, str):
        raise ValueError("account and region are required strings")
    settings = {k: v for k, v in document.items() if k in METADATA_DEFAULT_FIELDS and v is not None}
    for name, value in settings.items():
        allowed = METADATA_DEFAULT_FIELDS[name][1]
        if name == "http_put_response_hop_limit":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64:
                raise ValueError("http_put_response_hop_limit must be an integer from 1 to 64")
        elif not isinstance(value, str) or (allowed is not None and value not in allowed):
            expected = f"one of {', '.join(allowed)}" if allowed else "a string"
            raise ValueError(f"{name} must be {expected}")
    return account, region, settings


class MetadataDefaults:
    """Correction 9: account-level IMDS defaults per (account, region).

    moto has no GetInstanceMetadataDefaults. The layer answers it from
    settings made through the control API (none by default: an empty
    ``<accountLevel/>``, as for an account that never set any), and enforces
    the two settings that forbid IMDSv1 on ModifyInstanceMetadataOptions.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings: dict[tuple[str, str], dict[str, Any]] = {}

    def set(self, account: str, region: str, settings: dict[str, Any]) -> None:
        """Replace the defaults of (account, region); empty settings forget them."""
        with self._lock:
            self._settings[(account, region)] = dict(settings)

    def get(self, account: str, region: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._settings.get((account, region), {}))

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"account": account, "region": region, **settings}
                for (account, region), settings in sorted(self._settings.items())
            ]

    def clear(self) -> None:
        with self._lock:
            self._settings.clear()


def metadata_defaults_reply(req: AwsRequest, settings: dict[str, Any]) -> Reply:
    """GetInstanceMetadataDefaults as AWS answers it; unset fields are left out."""
    if is_true(req.params.get("DryRun")):
        return dry_run_reply(req)
    fields = "".join(
        f"<{element}>{escape(str(settings[name]))}</{element}>"
        for name, (element, _) in METADATA_DEFAULT_FIELDS.items()
        if name in settings
    )
    account_level = f"<accountLevel>{fields}</accountLevel>" if fields else "<accountLevel/>"
    request_id = str(uuid.uuid4())
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<GetInstanceMetadataDefaultsResponse xmlns="{EC2_NAMESPACE}">'
        f"<requestId>{request_id}</requestId>{account_level}</GetInstanceMetadataDefaultsResponse>"
    )
    headers = [("Content-Type", "text/xml;charset=UTF-8"), ("x-amzn-requestid", request_id)]
    return Reply(200, headers, body.encode("utf-8"))


def refuse_optional_tokens_when_enforced(req: AwsRequest, settings: dict[str, Any]) -> Reply | None:
    """Refuse HttpTokens=optional where IMDSv2 is enforced, as AWS does; nothing changes.

    Enforcement comes from HttpTokensEnforced=enabled or from a declarative
    policy managing the defaults (whose custom message, if any, is quoted).
    """
    if req.params.get("HttpTokens") != "optional":
        return None
    where = f"account {req.account} in {req.region}"
    if settings.get("managed_by") == "declarative-policy":
        custom = settings.get("managed_exception_message")
        message = (
            f"HttpTokens=optional is not allowed: IMDSv2 is required by a declarative policy "
            f"for {where}." + (f" {custom}" if custom else "")
        )
    elif settings.get("http_tokens_enforced") == "enabled":
        message = (
            f"HttpTokens=optional is not allowed: IMDSv2 enforcement (HttpTokensEnforced) "
            f"is enabled for {where}."
        )
    else:
        return None
    return error_reply(req, 400, "InvalidParameterValue", message)


def _region_filters(params: dict[str, str]) -> dict[str, set[str]]:
    """Filter.N.Name / Filter.N.Value.M pairs of a query request."""
    names = {k.split(".")[1]: v for k, v in params.items() if re.fullmatch(r"Filter\.\d+\.Name", k)}
    filters: dict[str, set[str]] = {}
    for index, name in names.items():
        prefix = f"Filter.{index}.Value."
        filters.setdefault(name, set()).update(v for k, v in params.items() if k.startswith(prefix))
    return filters


def describe_regions(req: AwsRequest, opt_ins: RegionOptIns) -> Reply:
    """Correction 4: answer DescribeRegions like AWS does, instead of forwarding to moto.

    moto ignores AllRegions and the opt-in-status filter and lists GovCloud and
    China regions. Here only the aws partition is listed, each region with its
    opt-in status for the calling account; disabled regions appear only with
    AllRegions=true. RegionName.N and the region-name, endpoint and
    opt-in-status filters narrow the result.
    """
    if is_true(req.params.get("DryRun")):
        return dry_run_reply(req)
    wanted_names = {v for k, v in req.params.items() if re.fullmatch(r"RegionName\.\d+", k)}
    filters = _region_filters(req.params)
    include_disabled = is_true(req.params.get("AllRegions"))
    items = []
    for region in opt_ins.regions:
        status = opt_ins.status(req.account, region)
        endpoint = f"ec2.{region}.amazonaws.com"
        fields = {"region-name": region, "endpoint": endpoint, "opt-in-status": status}
        if wanted_names and region not in wanted_names:
            continue
        if not include_disabled and status not in ENABLED_OPT_IN_STATUSES:
            continue
        if any(name in fields and fields[name] not in values for name, values in filters.items()):
            continue
        items.append(
            f"<item><regionName>{region}</regionName><regionEndpoint>{endpoint}</regionEndpoint>"
            f"<optInStatus>{status}</optInStatus></item>"
        )
    request_id = str(uuid.uuid4())
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<DescribeRegionsResponse xmlns="{EC2_NAMESPACE}"><requestId>{request_id}</requestId>'
        f"<regionInfo>{''.join(items)}</regionInfo></DescribeRegionsResponse>"
    )
    headers = [("Content-Type", "text/xml;charset=UTF-8"), ("x-amzn-requestid", request_id)]
    return Reply(200, headers, body.encode("utf-8"))


# --------------------------------------------------------------------------
# Corrections of moto 5.2's Organizations model
# --------------------------------------------------------------------------
#
# moto keeps one Organizations backend per account. The organization (its
# accounts, OUs and delegated administrators) lives only in the management
# account's backend; ``organizations_backends.master_accounts`` maps each member
# account id to (management account id, partition). A member or an account in
# no organization that calls a list/describe action therefore gets its own,
# empty backend's view (an empty list or a NotFound error) instead of AWS's
# AccessDeniedException or AWSOrganizationsNotInUseException.


@dataclass(frozen=True)
class OrgStanding:
    """How an account relates to an organization, as far as reading it goes."""

    role: str  # "management", "delegated-admin", "member" or "none"
    management_account: str | None = None


def organization_standing(account: str, region: str) -> OrgStanding:
    """Classify ``account`` from moto's Organizations backends (in ``region``'s partition)."""
    partition = get_partition(region)
    if organizations_backends[account][partition].org is not None:
        return OrgStanding("management", account)
    membership = organizations_backends.master_accounts.get(account)
    if membership is None:
        return OrgStanding("none")
    management_account, management_partition = membership
    management: OrganizationsBackend = organizations_backends[management_account][management_partition]
    if any(admin.account.id == account for admin in management.admins):
        return OrgStanding("delegated-admin", management_account)
    return OrgStanding("member", management_account)


def refuse_outside_organization(req: AwsRequest, standing: OrgStanding) -> Reply | None:
    """Correction 5: an account in no organization gets AWSOrganizationsNotInUseException.

    moto answers ListAccounts and the like with an empty list instead.
    """
    if standing.role != "none":
        return None
    return error_reply(
        req, 400, "AWSOrganizationsNotInUseException",
        "Your account is not a member of an organization.",
    )


def refuse_plain_member(req: AwsRequest, standing: OrgStanding) -> Reply | None:
    """Correction 6: a member that is not a delegated administrator gets AccessDeniedException.

    moto answers from the member's own empty backend (or, for ListRoots, from
    the management account's backend) instead.
    """
    if standing.role != "member":
        return None
    return error_reply(
        req, 400, "AccessDeniedException", "You don't have permissions to access this resource."
    )


def act_as_account(environ: dict[str, Any], account: str) -> None:
    """Correction 7: make moto answer the request as ``account``.

    Used to answer a delegated administrator from the management account's
    backend, where the organization lives. moto reads the account from the
    ``x-moto-account-id`` header before looking at the access key; only a
    ``MOTO_ACCOUNT_ID`` environment variable (not used by the emulator) would
    take precedence over it.
    """
    environ["HTTP_X_MOTO_ACCOUNT_ID"] = account


def forget_organization_memberships() -> None:
    """Correction 8: moto's reset drops every organization but not ``master_accounts``.

    A stale entry would make a former member look like a member of an
    organization that no longer exists (moto itself then crashes on
    DescribeOrganization, and cannot create an organization from that account).
    """
    organizations_backends.master_accounts.clear()


# --------------------------------------------------------------------------
# The WSGI layer
# --------------------------------------------------------------------------


def reset_moto() -> None:
    """Forget all moto state, as moto's own POST /moto-api/reset does."""
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()
    forget_organization_memberships()


@dataclass(frozen=True)
class StartupSwitches:
    """Latency and throttling the server starts with, and POST /_layer/reset returns to.

    Off unless server.py was given ``--latency-ms``/``--jitter-ms``/``--buckets``.
    """

    latency: LatencySettings = LatencySettings()
    buckets: BucketSettings = BucketSettings()


class EmulatorLayer:
    """WSGI application: control endpoint, fault injection and corrections around moto.

    An AWS request goes through these steps, in order (see ``handle_aws``):
    counted; added latency; EC2 token bucket (an empty one answers 503 without
    reaching the rest, like AWS's front door); fault rules; corrections and moto.
    """

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]] | None = None,
        verbose: bool = False,
        startup: StartupSwitches = StartupSwitches(),
    ):
        self.app = app or DomainDispatcherApplication(create_backend_app)
        self.verbose = verbose
        self.startup = startup
        self.rng = LayerRandom()
        self.faults = FaultStore(self.rng)
        self.counts = RequestCounter()
        self.throttled = RequestCounter()
        self.faulted = RequestCounter()
        self.in_flight = InFlight()
        self.opt_ins = RegionOptIns()
        self.latency = Latency(self.rng, startup.latency)
        self.buckets = TokenBuckets(startup.buckets)
        self.pending = PendingMetadataChanges()
        self.page_size: int | None = None
        self.metadata_defaults = MetadataDefaults()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "").startswith(CONTROL_PREFIX):
            return self.control(environ).send(start_response)
        body = read_body(environ)
        req = identify(environ, body)
        if req is None:
            if environ.get("PATH_INFO") == MOTO_RESET_PATH:
                reply = self.forward(environ)
                forget_organization_memberships()
                return reply.send(start_response)
            return self.app(environ, start_response)
        with self.in_flight.track():
            reply = self.handle_aws(req, environ, body)
        return reply.send(start_response)

    # -- AWS requests ------------------------------------------------------

    def handle_aws(self, req: AwsRequest, environ: dict[str, Any], body: bytes) -> Reply:
        """Answer ``req``; raises ConnectionAbort when a fault rule resets the connection."""
        self.counts.add(req.counter_key)
        self.latency.wait()
        if not self.buckets.take(req):
            self.throttled.add(req.counter_key)
            return throttled_reply(req)
        rule = self.faults.take(req)
        if rule is not None:
            self.faulted.add(req.counter_key)
            if rule.delay_ms:
                time.sleep(rule.delay_ms / 1000)
            if rule.reset and not rule.after:
                abort_connection(environ)
            if rule.status is not None:
                return error_reply(req, rule.status, rule.code, rule.message)
        reply = self.answer_safely(req, environ, body)
        if rule is not None and rule.reset:
            abort_connection(environ)  # "after": moto has made the change; the answer is lost
        return reply

    def answer_safely(self, req: AwsRequest, environ: dict[str, Any], body: bytes) -> Reply:
        """``answer``, with any moto crash turned into a visible AWS error."""
        try:
            return self.answer(req, environ, body)
        except Exception as exc:  # noqa: BLE001 - any moto crash becomes a visible AWS error
            if self.verbose:
                traceback.print_exc(file=sys.stderr)
            return error_reply(req, 500, "InternalError", f"emulator: {type(exc).__name__}: {exc}")

    def answer(self, req: AwsRequest, environ: dict[str, Any], body: bytes) -> Reply:
        """Apply the corrections that concern ``req``, forwarding to moto where needed."""
        if req.service == "ec2":
            self.pending.settle()
            if req.action == "DescribeRegions":
                return describe_regions(req, self.opt_ins)
            if req.action == "GetInstanceMetadataDefaults":
                return metadata_defaults_reply(req, self.metadata_defaults.get(req.account, req.region))
            if req.action == "ModifyInstanceMetadataOptions":
                return self.answer_modify_metadata_options(req, environ, body)
            if req.action == "DescribeInstances" and self.page_size is not None:
                cap_max_results(environ, body, self.page_size)
        if req.service == "organizations" and req.action in ORGANIZATIONS_ADMIN_READS:
            return self.answer_organization_read(req, environ)
        return self.forward(environ)

    def answer_modify_metadata_options(
        self, req: AwsRequest, environ: dict[str, Any], body: bytes
    ) -> Reply:
        """ModifyInstanceMetadataOptions with corrections 1, 2, 3, 3b and 9."""
        settings = self.metadata_defaults.get(req.account, req.region)
        # A refused change fails even as a dry run: it would not have succeeded.
        early = (
            refuse_optional_tokens_when_enforced(req, settings)
            or dry_run_modify_metadata_options(req)
        )
        if early is not None:
            return early
        instance = find_instance(req)
        if instance is None:
            return self.forward(environ)
        was_running = instance.state == "running"
        replace_body(environ, fill_unsent_metadata_options(instance, body))
        reply = self.forward(environ)
        if not was_running:
            return reply
        if reply.status == 200:
            self.pending.start(req, instance)
        return report_pending_for_running(reply)

    def answer_organization_read(self, req: AwsRequest, environ: dict[str, Any]) -> Reply:
        """Answer a read of the organization as AWS would for the calling account."""
        standing = organization_standing(req.account, req.region)
        refusal = refuse_outside_organization(req, standing) or refuse_plain_member(req, standing)
        if refusal is not None:
            return refusal
        if standing.role == "delegated-admin":
            act_as_account(environ, standing.management_account)
        return self.forward(environ)

    def forward(self, environ: dict[str, Any]) -> Reply:
        """Run moto on ``environ`` and buffer its whole response."""
        captured: dict[str, Any] = {}

        def capture(status: str, headers: Headers, exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"] = int(status.split(" ", 1)[0])
            captured["headers"] = list(headers)
            return lambda chunk: None

        result = self.app(environ, capture)
        try:
            payload = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return Reply(captured["status"], captured["headers"], payload)

    # -- control endpoint --------------------------------------------------

    def control(self, environ: dict[str, Any]) -> Reply:
        path = environ["PATH_INFO"][len(CONTROL_PREFIX):].strip("/")
        method = environ.get("REQUEST_METHOD", "GET")
        routes: dict[tuple[str, str], Callable[[Any], Reply]] = {
            ("faults", "POST"): self._add_fault,
            ("faults", "GET"): lambda _: json_reply(200, self.faults.snapshot()),
            ("faults", "DELETE"): lambda _: json_reply(200, {"cleared": self.faults.clear()}),
            ("requests", "GET"): lambda _: json_reply(200, {"counts": self.counts.snapshot()}),
            ("requests", "DELETE"): self._clear_counts,
            ("stats", "GET"): lambda _: json_reply(200, self.stats()),
            ("regions", "POST"): self._set_region,
            ("regions", "GET"): lambda _: json_reply(200, self.opt_ins.overrides()),
            ("seed", "POST"): self._set_seed,
            ("seed", "GET"): lambda _: json_reply(200, {"seed": self.rng.seed_value}),
            ("pending", "POST"): self._set_pending,
            ("pending", "GET"): lambda _: json_reply(200, {"seconds": self.pending.seconds}),
            ("page-size", "POST"): self._set_page_size,
            ("page-size", "GET"): lambda _: json_reply(200, {"max": self.page_size}),
            ("metadata-defaults", "POST"): self._set_metadata_defaults,
            ("metadata-defaults", "GET"): lambda _: json_reply(200, self.metadata_defaults.snapshot()),
            ("latency", "POST"): self._set_latency,
            ("latency", "GET"): lambda _: json_reply(200, asdict(self.latency.settings)),
            ("buckets", "POST"): self._set_buckets,
            ("buckets", "GET"): lambda _: json_reply(200, self.buckets.settings.describe()),
            ("reset", "POST"): self._reset,
        }
        handler = routes.get((path, method))
        if handler is None:
            if any(route == path for route, _ in routes):
                return json_reply(405, {"error": f"{method} not allowed on {CONTROL_PREFIX}{path}"})
            return json_reply(404, {"error": f"no control route {CONTROL_PREFIX}{path}"})
        raw = read_body(environ)
        try:
            document = json.loads(raw) if raw.strip() else None
        except ValueError as exc:
            return json_reply(400, {"error": f"invalid JSON: {exc}"})
        try:
            return handler(document)
        except ValueError as exc:
            return json_reply(400, {"error": str(exc)})

    def stats(self) -> dict[str, Any]:
        """GET /_layer/stats: request counts, throttled and faulted requests, load figures.

        ``faulted`` counts the requests a fault rule took (its ``hits``: error,
        reset, delay or mere probe); ``cpu_seconds`` is this whole process's
        CPU time, so in-process (pytest) it includes the test code too.
        """
        return {
            "counts": self.counts.snapshot(),
            "throttled": self.throttled.snapshot(),
            "faulted": self.faulted.total(),
            "cpu_seconds": cpu_seconds(),
            "in_flight_peak": self.in_flight.peak,
        }

    def _add_fault(self, document: Any) -> Reply:
        return json_reply(200, {"id": self.faults.add(document).id})

    def _clear_counts(self, _: Any) -> Reply:
        self.clear_stats()
        return json_reply(200, {"counts": {}})

    def clear_stats(self) -> None:
        """Start counting afresh (CPU time excepted: it is the process's, cumulative)."""
        self.counts.clear()
        self.throttled.clear()
        self.faulted.clear()
        self.in_flight.reset_peak()

    def _set_region(self, document: Any) -> Reply:
        if not isinstance(document, dict):
            raise ValueError("body must be a JSON object")
        account = document.get("account") or DEFAULT_ACCOUNT_ID
        region, status = document.get("region"), document.get("opt_in_status")
        if not isinstance(region, str) or not isinstance(status, str):
            raise ValueError("region and opt_in_status are required strings")
        self.opt_ins.set(str(account), region, status)
        return json_reply(200, {"account": account, "region": region, "opt_in_status": status})

    def _set_seed(self, document: Any) -> Reply:
        if not isinstance(document, dict) or set(document) != {"seed"}:
            raise ValueError('body must be {"seed": N}')
        seed = document["seed"]
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, str))):
            raise ValueError("seed must be an integer, a string or null")
        self.rng.reseed(seed)
        return json_reply(200, {"seed": seed})

    def _set_pending(self, document: Any) -> Reply:
        self.pending.configure(parse_pending(document))
        return json_reply(200, {"seconds": self.pending.seconds})

    def _set_page_size(self, document: Any) -> Reply:
        self.page_size = parse_page_size(document)
        return json_reply(200, {"max": self.page_size})

    def _set_metadata_defaults(self, document: Any) -> Reply:
        account, region, settings = parse_metadata_defaults(document)
        self.metadata_defaults.set(account, region, settings)
        return json_reply(200, {"account": account, "region": region, **settings})

    def _set_latency(self, document: Any) -> Reply:
        self.latency.configure(parse_latency(document))
        return json_reply(200, asdict(self.latency.settings))

    def _set_buckets(self, document: Any) -> Reply:
        self.buckets.configure(parse_bucket_settings(document))
        return json_reply(200, self.buckets.settings.describe())

    def _reset(self, _: Any) -> Reply:
        self.faults.clear()
        self.clear_stats()
        self.opt_ins.clear()
        self.pending.clear()
        self.page_size = None
        self.metadata_defaults.clear()
        self.latency.configure(self.startup.latency)
        self.buckets.configure(self.startup.buckets)
        self.rng.reseed(None)
        reset_moto()
        return json_reply(200, {"status": "ok"})
