"""WSGI layer in front of moto that makes it behave like real AWS for imds-sweep.

Why this exists: the Rust integration tests of imds-sweep talk to moto over
HTTP, but moto 5.2 differs from real AWS in the few calls the tool depends on
(ModifyInstanceMetadataOptions and DescribeRegions), and the tests also need to
inject failures (access denied, throttling, slow regions) that moto cannot
produce on its own. This module wraps moto's in-process WSGI application and:

* identifies every AWS request (service, region, access key, account, action,
  parameters) from the SigV4 Authorization header and the request body;
* counts requests per ``service:Action`` so tests can assert on API usage;
* answers or delays requests according to fault rules registered at runtime;
* corrects moto's deviations from real AWS, one small named function each
  (EC2 metadata options and regions, and who may read an Organization);
* serves a JSON control API under ``/_layer/`` on the same port.

Everything that is not an AWS request (for instance ``/moto-api/``) is passed
to moto untouched; only a ``/moto-api/reset`` is followed by the one clean-up
that moto's reset forgets (see ``forget_organization_memberships``).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable
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
)


@dataclass
class FaultRule:
    """One injected behaviour: answer an error and/or delay matching requests.

    A rule with neither ``status`` nor ``delay_ms`` forwards matching requests
    unchanged; its ``hits`` still count them, which makes it a cheap probe.
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
    if "status" in values and not 100 <= values["status"] <= 599:
        raise ValueError("status must be an HTTP status code")
    if values.get("times", 1) < 1:
        raise ValueError("times must be at least 1 (or null for always)")
    if values.get("delay_ms", 0) < 0:
        raise ValueError("delay_ms must not be negative")
    if "params" in values:
        if not isinstance(values["params"], dict):
            raise ValueError("params must be an object")
        values["params"] = {str(k): _param_text(v) for k, v in values["params"].items()}
    return FaultRule(id=rule_id, **values)


class FaultStore:
    """Thread-safe ordered list of fault rules."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)

    def add(self, document: Any) -> FaultRule:
        with self._lock:
            rule = parse_fault_rule(next(self._ids), document)
            self._rules.append(rule)
            return rule

    def take(self, req: AwsRequest) -> FaultRule | None:
        """First live rule matching ``req``; counting the hit consumes one of its ``times``."""
        with self._lock:
            for rule in self._rules:
                if rule.live() and rule.matches(req):
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

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


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


class EmulatorLayer:
    """WSGI application: control endpoint, fault injection and corrections around moto."""

    def __init__(self, app: Callable[..., Iterable[bytes]] | None = None, verbose: bool = False):
        self.app = app or DomainDispatcherApplication(create_backend_app)
        self.verbose = verbose
        self.faults = FaultStore()
        self.counts = RequestCounter()
        self.opt_ins = RegionOptIns()

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
        return self.handle_aws(req, environ, body).send(start_response)

    # -- AWS requests ------------------------------------------------------

    def handle_aws(self, req: AwsRequest, environ: dict[str, Any], body: bytes) -> Reply:
        self.counts.add(req.counter_key)
        rule = self.faults.take(req)
        if rule is not None:
            if rule.delay_ms:
                time.sleep(rule.delay_ms / 1000)
            if rule.status is not None:
                return error_reply(req, rule.status, rule.code, rule.message)
        try:
            return self.answer(req, environ, body)
        except Exception as exc:  # noqa: BLE001 - any moto crash becomes a visible AWS error
            if self.verbose:
                traceback.print_exc(file=sys.stderr)
            return error_reply(req, 500, "InternalError", f"emulator: {type(exc).__name__}: {exc}")

    def answer(self, req: AwsRequest, environ: dict[str, Any], body: bytes) -> Reply:
        """Apply the corrections that concern ``req``, forwarding to moto where needed."""
        if req.service == "ec2" and req.action == "DescribeRegions":
            return describe_regions(req, self.opt_ins)
        if req.service == "ec2" and req.action == "ModifyInstanceMetadataOptions":
            dry_run = dry_run_modify_metadata_options(req)
            if dry_run is not None:
                return dry_run
            instance = find_instance(req)
            if instance is None:
                return self.forward(environ)
            was_running = instance.state == "running"
            replace_body(environ, fill_unsent_metadata_options(instance, body))
            reply = self.forward(environ)
            return report_pending_for_running(reply) if was_running else reply
        if req.service == "organizations" and req.action in ORGANIZATIONS_ADMIN_READS:
            return self.answer_organization_read(req, environ)
        return self.forward(environ)

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
            ("regions", "POST"): self._set_region,
            ("regions", "GET"): lambda _: json_reply(200, self.opt_ins.overrides()),
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

    def _add_fault(self, document: Any) -> Reply:
        return json_reply(200, {"id": self.faults.add(document).id})

    def _clear_counts(self, _: Any) -> Reply:
        self.counts.clear()
        return json_reply(200, {"counts": {}})

    def _set_region(self, document: Any) -> Reply:
        if not isinstance(document, dict):
            raise ValueError("body must be a JSON object")
        account = document.get("account") or DEFAULT_ACCOUNT_ID
        region, status = document.get("region"), document.get("opt_in_status")
        if not isinstance(region, str) or not isinstance(status, str):
            raise ValueError("region and opt_in_status are required strings")
        self.opt_ins.set(str(account), region, status)
        return json_reply(200, {"account": account, "region": region, "opt_in_status": status})

    def _reset(self, _: Any) -> Reply:
        self.faults.clear()
        self.counts.clear()
        self.opt_ins.clear()
        reset_moto()
        return json_reply(200, {"status": "ok"})
