"""Populate a running emulator with a named scenario, through the public AWS API.

Why: the demo and manual testing of imds-sweep need a realistic-looking fleet
(several regions, a mix of IMDSv1/IMDSv2 instances in various states) without
hand-typing dozens of CLI calls. Seeding goes through boto3 rather than moto's
internals, so it exercises the same HTTP path as the tool itself.

    python seed.py --endpoint http://127.0.0.1:PORT --scenario org-demo
    python seed.py --endpoint http://127.0.0.1:PORT --scenario bench-wide --scale 0.1

It prints one line: a summary of what was created and how long it took.

Scenarios:

* ``demo``: one account (the demo access key's, 123456789012) with 12 instances;
* ``org-demo``: an AWS Organization managed by that account, with OUs, three
  active member accounts and a closed one, and 15 instances spread over the
  management and member accounts. Member instances are created through
  ``sts:AssumeRole`` into ``OrganizationAccountAccessRole``, as imds-sweep
  itself reaches member accounts;
* ``bench-wide``, ``bench-deep``, ``bench-many``: uniform fleets for
  benchmarks (see ``BENCH_SHAPES``), launched 50 instances per RunInstances
  call. ``--scale`` multiplies their instances per account and region (at
  least 2 remain), e.g. ``--scale 0.1`` for a quick check.

Order: seed first, then switch latency or throttling on. Seeding thousands
of instances through added latency or EC2 token buckets would be slow or
throttled, so seed.py suspends both while it runs (and restores them after),
including when the server was started with ``--latency-ms`` or ``--buckets``.
The seeding requests do appear in ``/_layer/requests`` and ``/_layer/stats``:
clear them (``DELETE /_layer/requests``) before measuring.

Add a fixed scenario by writing a ``def seed_x(endpoint) -> str`` function
(returning a one-line summary) and registering it with ``fixed`` in
``SCENARIOS``; a scalable one takes ``(endpoint, scale)``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import boto3

DEMO_ACCESS_KEY = "AKIADEMO00000000000"  # unknown to moto's IAM, so account 123456789012
DEMO_SECRET_KEY = "demo-secret"
IMAGE_ID = "ami-12c6146b"  # moto does not check that RunInstances AMIs exist
MEMBER_ROLE = "OrganizationAccountAccessRole"
ORGANIZATIONS_REGION = "us-east-1"


@dataclass(frozen=True)
class Credentials:
    """Explicit credentials for boto3 clients (never taken from the environment)."""

    access_key: str
    secret_key: str
    session_token: str | None = None


DEMO_CREDENTIALS = Credentials(DEMO_ACCESS_KEY, DEMO_SECRET_KEY)


@dataclass
class InstanceSpec:
    """One instance to create and the state to leave it in."""

    name: str
    region: str
    tokens: str = "optional"
    state: str = "running"  # running | stopped | terminated
    metadata: dict[str, Any] = field(default_factory=dict)  # extra MetadataOptions


def aws_client(
    service: str, endpoint: str, region: str, credentials: Credentials = DEMO_CREDENTIALS
) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.session_token,
    )


def launch(endpoint: str, spec: InstanceSpec, credentials: Credentials = DEMO_CREDENTIALS) -> str:
    """Create ``spec`` in the credentials' account and move it to its final state.

    Returns the instance id.
    """
    ec2 = aws_client("ec2", endpoint, spec.region, credentials)
    options = {"HttpTokens": spec.tokens, **spec.metadata}
    reservation = ec2.run_instances(
        ImageId=IMAGE_ID,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        MetadataOptions=options,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": spec.name}]}
        ],
    )
    instance_id = reservation["Instances"][0]["InstanceId"]
    if spec.state == "stopped":
        ec2.stop_instances(InstanceIds=[instance_id])
    elif spec.state == "terminated":
        ec2.terminate_instances(InstanceIds=[instance_id])
    return instance_id


def launch_all(
    endpoint: str, specs: list[InstanceSpec], credentials: Credentials = DEMO_CREDENTIALS
) -> list[str]:
    return [launch(endpoint, spec, credentials) for spec in specs]


def describe_fleet(specs: list[InstanceSpec]) -> str:
    """Instance, region, state and HttpTokens counts of ``specs``, as one phrase."""
    regions = sorted({s.region for s in specs})
    live = [s for s in specs if s.state != "terminated"]
    optional = sum(1 for s in live if s.tokens == "optional")
    states = Counter(s.state for s in specs)
    state_text = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    return (
        f"{len(specs)} instances in {len(regions)} regions ({', '.join(regions)}); "
        f"{state_text}; {optional} non-terminated with HttpTokens=optional"
    )


def summarize(name: str, specs: list[InstanceSpec]) -> str:
    return f"seeded scenario {name}: {describe_fleet(specs)}"


DEMO_FLEET = [
    InstanceSpec("web-1", "us-east-1"),
    InstanceSpec("web-2", "us-east-1"),
    InstanceSpec("api-gateway", "us-east-1", tokens="required"),
    InstanceSpec("batch-7", "us-east-1", state="stopped"),
    InstanceSpec("legacy-db", "us-east-1", metadata={"HttpEndpoint": "disabled"}),
    InstanceSpec("web-eu-1", "eu-west-1"),
    InstanceSpec("worker-eu-3", "eu-west-1", tokens="required"),
    InstanceSpec("k8s-node-a", "eu-west-1", metadata={"HttpPutResponseHopLimit": 2}),
    InstanceSpec("old-bastion", "eu-west-1", state="terminated"),
    InstanceSpec("web-ap-1", "ap-southeast-2"),
    InstanceSpec("reporting", "ap-southeast-2", state="stopped"),
    InstanceSpec("cache-ap-2", "ap-southeast-2", tokens="required", state="stopped"),
]


def seed_demo(endpoint: str) -> str:
    """The demo fleet: IMDSv1 stragglers among compliant instances in 3 regions."""
    launch_all(endpoint, DEMO_FLEET)
    return summarize("demo", DEMO_FLEET)


# --------------------------------------------------------------------------
# org-demo: an organization with member accounts
# --------------------------------------------------------------------------


@dataclass
class MemberSpec:
    """A member account to create, where to put it, what runs in it, and whether to close it."""

    name: str
    ou_path: tuple[str, ...] = ()  # OU names from the root; () keeps the account in the root
    fleet: list[InstanceSpec] = field(default_factory=list)
    closed: bool = False


# OU paths to create, parents before children.
ORG_DEMO_OUS: list[tuple[str, ...]] = [("Production",), ("Production", "Payments"), ("Sandbox",)]

ORG_DEMO_MANAGEMENT_FLEET = [
    InstanceSpec("mgmt-bastion", "us-east-1"),
    InstanceSpec("mgmt-ci-runner", "us-east-1", tokens="required"),
]

ORG_DEMO_MEMBERS = [
    MemberSpec("prod-web", ("Production",), [
        InstanceSpec("web-1", "us-east-1"),
        InstanceSpec("web-2", "us-east-1"),
        InstanceSpec("api-gateway", "us-east-1", tokens="required"),
        InstanceSpec("web-eu-1", "eu-west-1"),
        InstanceSpec("k8s-node-a", "eu-west-1", metadata={"HttpPutResponseHopLimit": 2}),
        InstanceSpec("old-bastion", "eu-west-1", state="terminated"),
    ]),
    MemberSpec("payments", ("Production", "Payments"), [
        InstanceSpec("payments-api", "us-east-1", tokens="required"),
        InstanceSpec("payments-batch", "eu-west-1", state="stopped"),
        InstanceSpec("legacy-db", "ap-southeast-2", metadata={"HttpEndpoint": "disabled"}),
        InstanceSpec("ledger", "ap-southeast-2", tokens="required", state="stopped"),
    ]),
    MemberSpec("sandbox-dev", ("Sandbox",), [
        InstanceSpec("dev-box-1", "ap-southeast-2"),
        InstanceSpec("dev-box-2", "ap-southeast-2", state="stopped"),
        InstanceSpec("experiment", "eu-west-1", tokens="required"),
    ]),
    MemberSpec("legacy-closed", closed=True),
]


def create_ous(
    organizations: Any, root_id: str, paths: list[tuple[str, ...]]
) -> dict[tuple[str, ...], str]:
    """Create the OUs named by ``paths``; returns path → OU id, with () → the root id."""
    ids: dict[tuple[str, ...], str] = {(): root_id}
    for path in paths:
        created = organizations.create_organizational_unit(ParentId=ids[path[:-1]], Name=path[-1])
        ids[path] = created["OrganizationalUnit"]["Id"]
    return ids


def member_credentials(endpoint: str, account_id: str) -> Credentials:
    """Temporary credentials of ``MEMBER_ROLE`` in ``account_id``, assumed by the management account."""
    sts = aws_client("sts", endpoint, ORGANIZATIONS_REGION)
    assumed = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/{MEMBER_ROLE}", RoleSessionName="imds-sweep-seed"
    )["Credentials"]
    return Credentials(assumed["AccessKeyId"], assumed["SecretAccessKey"], assumed["SessionToken"])


def seed_org_demo(endpoint: str) -> str:
    """An organization whose IMDSv1 stragglers are spread over member accounts and OUs."""
    organizations = aws_client("organizations", endpoint, ORGANIZATIONS_REGION)
    organization = organizations.create_organization(FeatureSet="ALL")["Organization"]
    management_id = organization["MasterAccountId"]
    root_id = organizations.list_roots()["Roots"][0]["Id"]
    ou_ids = create_ous(organizations, root_id, ORG_DEMO_OUS)
    launch_all(endpoint, ORG_DEMO_MANAGEMENT_FLEET)

    placement = {management_id: "management"}
    fleet = list(ORG_DEMO_MANAGEMENT_FLEET)
    instance_counts = {management_id: len(ORG_DEMO_MANAGEMENT_FLEET)}
    for member in ORG_DEMO_MEMBERS:
        status = organizations.create_account(
            AccountName=member.name, Email=f"{member.name}@example.com"
        )["CreateAccountStatus"]
        account_id = status["AccountId"]  # moto creates accounts synchronously (SUCCEEDED)
        if member.ou_path:
            organizations.move_account(
                AccountId=account_id, SourceParentId=root_id,
                DestinationParentId=ou_ids[member.ou_path],
            )
        placement[account_id] = "/".join(member.ou_path) or "root"
        if member.fleet:
            launch_all(endpoint, member.fleet, member_credentials(endpoint, account_id))
        fleet += member.fleet
        instance_counts[account_id] = len(member.fleet)
        if member.closed:
            organizations.close_account(AccountId=account_id)

    accounts = organizations.list_accounts()["Accounts"]
    account_text = ", ".join(
        f"{a['Id']} {a['Name']} ({placement[a['Id']]}, {a['State']}, "
        f"{instance_counts[a['Id']]} instances)"
        for a in accounts
    )
    return (
        f"seeded scenario org-demo: organization {organization['Id']} with {len(accounts)} "
        f"accounts [{account_text}] in {len(ORG_DEMO_OUS)} OUs; {describe_fleet(fleet)}"
    )


# --------------------------------------------------------------------------
# bench-*: large uniform fleets for benchmarks
# --------------------------------------------------------------------------

BATCH_SIZE = 50  # instances per RunInstances call (MinCount = MaxCount)
MIN_PER_REGION = 2  # so that even a tiny scale keeps one optional and one required instance


@dataclass(frozen=True)
class BenchShape:
    """The fleet of a benchmark scenario, before scaling."""

    members: int  # member accounts to create in a new organization; 0 = no organization
    regions: tuple[str, ...]
    per_region: int  # instances per account and region
    optional_share: float  # fraction of them launched with HttpTokens=optional

    def scaled_per_region(self, scale: float) -> int:
        return max(MIN_PER_REGION, round(self.per_region * scale))


BENCH_SHAPES = {
    # Many accounts and regions: the tool's fan-out and discovery dominate.
    "bench-wide": BenchShape(20, ("us-east-1", "eu-west-1", "ap-southeast-2"), 100, 0.5),
    # One big region of one account (the management account, no organization).
    "bench-deep": BenchShape(0, ("us-east-1",), 300, 1.0),
    # Many small accounts: per-account overhead (AssumeRole, discovery) dominates.
    "bench-many": BenchShape(12, ("us-east-1", "eu-west-1"), 10, 0.5),
}


def launch_batch(ec2: Any, count: int, tokens: str) -> None:
    """Launch ``count`` running instances with ``tokens``, BATCH_SIZE per call."""
    for offset in range(0, count, BATCH_SIZE):
        size = min(BATCH_SIZE, count - offset)
        ec2.run_instances(
            ImageId=IMAGE_ID,
            InstanceType="t3.micro",
            MinCount=size,
            MaxCount=size,
            MetadataOptions={"HttpTokens": tokens},
            TagSpecifications=[{
                "ResourceType": "instance",
                "Tags": [{"Key": "Name", "Value": f"bench-{tokens}"}],
            }],
        )


def launch_bench_fleet(
    endpoint: str, shape: BenchShape, per_region: int, credentials: Credentials
) -> int:
    """Fill every region of ``shape`` in the credentials' account; returns the optional count."""
    optional = int(per_region * shape.optional_share)
    for region in shape.regions:
        ec2 = aws_client("ec2", endpoint, region, credentials)
        launch_batch(ec2, optional, "optional")
        launch_batch(ec2, per_region - optional, "required")
    return optional * len(shape.regions)


ENABLED_OPT_IN = ("opt-in-not-required", "opted-in")


def warm_regions(endpoint: str, credentials: Credentials) -> int:
    """Touch EC2 in every region enabled for the credentials' account; returns how many.

    moto builds an account-region's EC2 backend (default VPC, subnets, security
    group...) on its first request there, a few milliseconds of CPU under its one
    lock that AWS has no counterpart of. Doing it while seeding keeps it out of the
    measured runs, so that a benchmark of many small accounts measures the tool
    and the latency, not moto's lazy set-up.
    """
    listed = aws_client("ec2", endpoint, ORGANIZATIONS_REGION, credentials).describe_regions(
        AllRegions=True
    )["Regions"]
    enabled = [r["RegionName"] for r in listed if r.get("OptInStatus") in ENABLED_OPT_IN]
    for region in enabled:
        aws_client("ec2", endpoint, region, credentials).describe_instances(MaxResults=5)
    return len(enabled)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def seed_bench(name: str, endpoint: str, scale: float) -> str:
    """Seed the benchmark scenario ``name`` at ``scale``; returns its summary."""
    shape = BENCH_SHAPES[name]
    per_region = shape.scaled_per_region(scale)
    accounts: list[Credentials] = []
    org_text = "no organization, the management account only"
    if shape.members:
        organizations = aws_client("organizations", endpoint, ORGANIZATIONS_REGION)
        organization = organizations.create_organization(FeatureSet="ALL")["Organization"]
        for index in range(1, shape.members + 1):
            member = f"bench-member-{index:02d}"
            status = organizations.create_account(AccountName=member, Email=f"{member}@example.com")
            accounts.append(member_credentials(endpoint, status["CreateAccountStatus"]["AccountId"]))
        org_text = f"organization {organization['Id']} with {shape.members} member accounts"
    else:
        accounts.append(DEMO_CREDENTIALS)
    optional = sum(launch_bench_fleet(endpoint, shape, per_region, c) for c in accounts)
    warmed = sum(warm_regions(endpoint, c) for c in accounts)
    total = per_region * len(shape.regions) * len(accounts)
    return (
        f"seeded scenario {name} (scale {scale:g}): {org_text}; {total} instances "
        f"({per_region} per account and region) in {plural(len(shape.regions), 'region')} "
        f"({', '.join(shape.regions)}); {optional} with HttpTokens=optional; "
        f"{warmed} account-regions warmed up"
    )


# --------------------------------------------------------------------------
# Suspending latency and throttling while seeding
# --------------------------------------------------------------------------


def control_call(endpoint: str, method: str, path: str, body: Any = None) -> Any:
    """Call the emulator's control API; returns the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{endpoint}/_layer/{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@contextmanager
def switches_suspended(endpoint: str) -> Iterator[None]:
    """Seed at full speed: switch latency and throttling off, then back as they were."""
    latency = control_call(endpoint, "GET", "latency")
    buckets = control_call(endpoint, "GET", "buckets")
    control_call(endpoint, "POST", "latency", {"ms": 0, "jitter_ms": 0})
    control_call(endpoint, "POST", "buckets", {"enabled": False})
    try:
        yield
    finally:
        control_call(endpoint, "POST", "latency", latency)
        control_call(endpoint, "POST", "buckets", buckets)  # buckets start over full


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

Scenario = Callable[[str, float], str]


def fixed(seed: Callable[[str], str]) -> Scenario:
    """Adapt a scenario that cannot be scaled to the (endpoint, scale) signature."""
    return lambda endpoint, _scale: seed(endpoint)


def bench(name: str) -> Scenario:
    return lambda endpoint, scale: seed_bench(name, endpoint, scale)


SCENARIOS: dict[str, Scenario] = {
    "demo": fixed(seed_demo),
    "org-demo": fixed(seed_org_demo),
    **{name: bench(name) for name in BENCH_SHAPES},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="emulator URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("--scenario", default="demo", choices=sorted(SCENARIOS))
    parser.add_argument(
        "--scale", type=float, default=1.0,
        help="multiply the instances per account and region of a bench-* scenario (at least 2 remain)",
    )
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    if args.scale != 1.0 and args.scenario not in BENCH_SHAPES:
        parser.error(f"--scale applies to the bench-* scenarios only, not {args.scenario}")
    started = time.monotonic()
    with switches_suspended(args.endpoint):
        summary = SCENARIOS[args.scenario](args.endpoint, args.scale)
    print(f"{summary}; took {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
