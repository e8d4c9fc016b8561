"""Populate a running emulator with a named scenario, through the public AWS API.

Why: the demo and manual testing of imds-sweep need a realistic-looking fleet
(several regions, a mix of IMDSv1/IMDSv2 instances in various states) without
hand-typing dozens of CLI calls. Seeding goes through boto3 rather than moto's
internals, so it exercises the same HTTP path as the tool itself.

    python seed.py --endpoint http://127.0.0.1:PORT --scenario demo

Add a scenario by writing a ``def seed_x(endpoint) -> str`` function (returning
a one-line summary) and registering it in ``SCENARIOS``.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import boto3

DEMO_ACCESS_KEY = "AKIADEMO00000000000"
DEMO_SECRET_KEY = "demo-secret"
IMAGE_ID = "ami-12c6146b"  # moto does not check that RunInstances AMIs exist


@dataclass
class InstanceSpec:
    """One instance to create and the state to leave it in."""

    name: str
    region: str
    tokens: str = "optional"
    state: str = "running"  # running | stopped | terminated
    metadata: dict[str, Any] = field(default_factory=dict)  # extra MetadataOptions


def ec2_client(endpoint: str, region: str) -> Any:
    return boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=DEMO_ACCESS_KEY,
        aws_secret_access_key=DEMO_SECRET_KEY,
    )


def launch(endpoint: str, spec: InstanceSpec) -> str:
    """Create ``spec`` and move it to its final state; returns the instance id."""
    ec2 = ec2_client(endpoint, spec.region)
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


def summarize(name: str, specs: list[InstanceSpec]) -> str:
    regions = sorted({s.region for s in specs})
    live = [s for s in specs if s.state != "terminated"]
    optional = sum(1 for s in live if s.tokens == "optional")
    states = Counter(s.state for s in specs)
    state_text = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    return (
        f"seeded scenario {name}: {len(specs)} instances in {len(regions)} regions "
        f"({', '.join(regions)}); {state_text}; {optional} non-terminated with HttpTokens=optional"
    )


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
    for spec in DEMO_FLEET:
        launch(endpoint, spec)
    return summarize("demo", DEMO_FLEET)


SCENARIOS: dict[str, Callable[[str], str]] = {
    "demo": seed_demo,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="emulator URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("--scenario", default="demo", choices=sorted(SCENARIOS))
    args = parser.parse_args(argv)
    print(SCENARIOS[args.scenario](args.endpoint))
    return 0


if __name__ == "__main__":
    sys.exit(main())
