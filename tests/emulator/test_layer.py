"""Tests of the emulator layer: its corrections of moto and its control endpoint.

Why: the Rust integration tests trust the emulator to behave like AWS; these
tests pin down each behaviour the layer adds, so a moto upgrade or a layer
change that breaks one fails here rather than as a confusing Rust test failure.
"""

from __future__ import annotations

import random
import threading
import time
import urllib.request
from typing import Any, Callable

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

IMAGE_ID = "ami-12c6146b"
DEFAULT_ACCOUNT = "123456789012"


def launch(ec2: Any, **metadata: Any) -> str:
    reservation = ec2.run_instances(
        ImageId=IMAGE_ID, MinCount=1, MaxCount=1, MetadataOptions=metadata or {}
    )
    return reservation["Instances"][0]["InstanceId"]


def metadata_of(ec2: Any, instance_id: str) -> dict[str, Any]:
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservations[0]["Instances"][0]["MetadataOptions"]


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    response = excinfo.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
    )


def region_names(response: dict[str, Any]) -> dict[str, str]:
    return {r["RegionName"]: r["OptInStatus"] for r in response["Regions"]}


# --------------------------------------------------------------------------
# Correction 1: unsent options keep their values
# --------------------------------------------------------------------------


def test_modify_keeps_options_not_sent(client):
    ec2 = client("ec2")
    instance_id = launch(ec2, HttpEndpoint="disabled", HttpPutResponseHopLimit=2)

    answer = ec2.modify_instance_metadata_options(InstanceId=instance_id, HttpTokens="required")

    for options in (answer["InstanceMetadataOptions"], metadata_of(ec2, instance_id)):
        assert options["HttpTokens"] == "required"
        assert options["HttpEndpoint"] == "disabled"
        assert options["HttpPutResponseHopLimit"] == 2


def test_modify_still_applies_options_that_are_sent(client):
    ec2 = client("ec2")
    instance_id = launch(ec2, HttpEndpoint="disabled", HttpPutResponseHopLimit=2)

    ec2.modify_instance_metadata_options(
        InstanceId=instance_id, HttpTokens="required", HttpPutResponseHopLimit=3
    )

    options = metadata_of(ec2, instance_id)
    assert (options["HttpTokens"], options["HttpPutResponseHopLimit"]) == ("required", 3)
    assert options["HttpEndpoint"] == "disabled"


def test_modify_unknown_instance_is_not_found(client):
    with pytest.raises(ClientError) as excinfo:
        client("ec2").modify_instance_metadata_options(
            InstanceId="i-0123456789abcdef0", HttpTokens="required"
        )
    assert error_of(excinfo)[1] == "InvalidInstanceID.NotFound"


# --------------------------------------------------------------------------
# Correction 2: DryRun
# --------------------------------------------------------------------------


def test_modify_dry_run_answers_dry_run_operation_and_changes_nothing(client):
    ec2 = client("ec2")
    instance_id = launch(ec2, HttpTokens="optional")

    with pytest.raises(ClientError) as excinfo:
        ec2.modify_instance_metadata_options(
            InstanceId=instance_id, HttpTokens="required", DryRun=True
        )

    status, code, message = error_of(excinfo)
    assert (status, code) == (412, "DryRunOperation")
    assert message == "Request would have succeeded, but DryRun flag is set."
    assert metadata_of(ec2, instance_id)["HttpTokens"] == "optional"


def test_dry_run_unauthorized_via_fault_rule(client, control):
    ec2 = client("ec2")
    instance_id = launch(ec2)
    control("POST", "/_layer/faults", {
        "action": "ModifyInstanceMetadataOptions", "params": {"DryRun": True},
        "status": 403, "code": "UnauthorizedOperation", "message": "You are not authorized",
    })

    with pytest.raises(ClientError) as excinfo:
        ec2.modify_instance_metadata_options(InstanceId=instance_id, HttpTokens="required", DryRun=True)

    assert error_of(excinfo)[:2] == (403, "UnauthorizedOperation")
    # The rule matches only dry runs: the real call still goes through.
    ec2.modify_instance_metadata_options(InstanceId=instance_id, HttpTokens="required")
    assert metadata_of(ec2, instance_id)["HttpTokens"] == "required"


# --------------------------------------------------------------------------
# Correction 3: pending for running instances
# --------------------------------------------------------------------------


def test_modify_reports_pending_for_running_and_applied_for_stopped(client):
    ec2 = client("ec2")
    running = launch(ec2)
    stopped = launch(ec2)
    ec2.stop_instances(InstanceIds=[stopped])

    running_answer = ec2.modify_instance_metadata_options(InstanceId=running, HttpTokens="required")
    stopped_answer = ec2.modify_instance_metadata_options(InstanceId=stopped, HttpTokens="required")

    assert running_answer["InstanceMetadataOptions"]["State"] == "pending"
    assert stopped_answer["InstanceMetadataOptions"]["State"] == "applied"


# --------------------------------------------------------------------------
# Correction 4: DescribeRegions
# --------------------------------------------------------------------------


def test_describe_regions_default_lists_only_enabled_aws_regions(client):
    regions = region_names(client("ec2").describe_regions())

    assert "us-east-1" in regions and "eu-west-1" in regions
    assert "ap-east-1" not in regions  # an opt-in region, not opted in by default
    assert set(regions.values()) <= {"opt-in-not-required", "opted-in"}
    assert not [r for r in regions if r.startswith(("us-gov-", "cn-"))]


def test_describe_regions_all_regions_includes_disabled_ones(client):
    ec2 = client("ec2")
    enabled = region_names(ec2.describe_regions())
    everything = region_names(ec2.describe_regions(AllRegions=True))

    assert everything["ap-east-1"] == "not-opted-in"
    assert set(enabled) < set(everything)
    assert not [r for r in everything if r.startswith(("us-gov-", "cn-"))]
    endpoints = {r["RegionName"]: r["Endpoint"] for r in ec2.describe_regions()["Regions"]}
    assert endpoints["eu-west-1"] == "ec2.eu-west-1.amazonaws.com"


def test_describe_regions_region_names_and_opt_in_filter(client):
    ec2 = client("ec2")
    named = ec2.describe_regions(RegionNames=["eu-west-1", "ap-east-1"], AllRegions=True)
    filtered = ec2.describe_regions(
        AllRegions=True, Filters=[{"Name": "opt-in-status", "Values": ["not-opted-in"]}]
    )

    assert region_names(named) == {"eu-west-1": "opt-in-not-required", "ap-east-1": "not-opted-in"}
    assert "ap-east-1" in region_names(filtered)
    assert set(region_names(filtered).values()) == {"not-opted-in"}


def test_region_opt_in_override_applies_to_that_account_only(client, control):
    other_account = "222222222222"
    credentials = client("sts", "us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::{other_account}:role/imds-sweep", RoleSessionName="test"
    )["Credentials"]
    other = client(
        "ec2",
        access_key=credentials["AccessKeyId"],
        secret_key=credentials["SecretAccessKey"],
        session_token=credentials["SessionToken"],
    )
    status, _ = control("POST", "/_layer/regions", {
        "account": other_account, "region": "ap-east-1", "opt_in_status": "opted-in",
    })

    assert status == 200
    assert region_names(other.describe_regions())["ap-east-1"] == "opted-in"
    assert "ap-east-1" not in region_names(client("ec2").describe_regions())


def test_region_override_can_disable_a_default_region(client, control):
    control("POST", "/_layer/regions", {
        "account": DEFAULT_ACCOUNT, "region": "eu-west-3", "opt_in_status": "not-opted-in",
    })
    assert "eu-west-3" not in region_names(client("ec2").describe_regions())


def test_region_override_rejects_unknown_status(control):
    status, body = control("POST", "/_layer/regions", {
        "account": DEFAULT_ACCOUNT, "region": "ap-east-1", "opt_in_status": "enabled",
    })
    assert status == 400 and "opt_in_status" in body["error"]


# --------------------------------------------------------------------------
# Corrections 5-8: who may read an organization
# --------------------------------------------------------------------------

ACCESS_DENIED = (400, "AccessDeniedException", "You don't have permissions to access this resource.")
NOT_IN_USE = (400, "AWSOrganizationsNotInUseException", "Your account is not a member of an organization.")
DELEGATED_SERVICE = "ssm.amazonaws.com"


@pytest.fixture
def organization(client) -> dict[str, Any]:
    """An organization managed by the default account, with one OU and one member in it."""
    management = client("organizations", "us-east-1")
    management.create_organization(FeatureSet="ALL")
    root_id = management.list_roots()["Roots"][0]["Id"]
    ou_id = management.create_organizational_unit(ParentId=root_id, Name="Workloads")[
        "OrganizationalUnit"]["Id"]
    member = management.create_account(AccountName="member", Email="member@example.com")[
        "CreateAccountStatus"]["AccountId"]
    management.move_account(AccountId=member, SourceParentId=root_id, DestinationParentId=ou_id)
    return {"management": management, "member": member, "root_id": root_id, "ou_id": ou_id}


def client_as(client, account: str, service: str = "organizations") -> Any:
    """A client with credentials of a role assumed in ``account``."""
    credentials = client("sts", "us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
        RoleSessionName="layer-test",
    )["Credentials"]
    return client(
        service, "us-east-1", credentials["AccessKeyId"], credentials["SecretAccessKey"],
        credentials["SessionToken"],
    )


def organization_reads(org: dict[str, Any]) -> dict[str, Callable[[Any], Any]]:
    """Every corrected read action, as a call on an Organizations client."""
    return {
        "ListAccounts": lambda c: c.list_accounts(),
        "ListAccountsForParent": lambda c: c.list_accounts_for_parent(ParentId=org["ou_id"]),
        "ListOrganizationalUnitsForParent":
            lambda c: c.list_organizational_units_for_parent(ParentId=org["root_id"]),
        "ListChildren": lambda c: c.list_children(ParentId=org["root_id"], ChildType="ACCOUNT"),
        "ListRoots": lambda c: c.list_roots(),
        "DescribeAccount": lambda c: c.describe_account(AccountId=org["member"]),
        "DescribeOrganizationalUnit":
            lambda c: c.describe_organizational_unit(OrganizationalUnitId=org["ou_id"]),
        "ListParents": lambda c: c.list_parents(ChildId=org["member"]),
    }


def without_metadata(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def account_ids(response: dict[str, Any]) -> set[str]:
    return {a["Id"] for a in response["Accounts"]}


def test_member_is_denied_organization_reads(client, organization):
    member = client_as(client, organization["member"])

    errors = {}
    for action, call in organization_reads(organization).items():
        with pytest.raises(ClientError) as excinfo:
            call(member)
        errors[action] = error_of(excinfo)

    assert errors == {action: ACCESS_DENIED for action in organization_reads(organization)}
    # Members may still describe the organization they belong to.
    assert member.describe_organization()["Organization"]["MasterAccountId"] == DEFAULT_ACCOUNT


def test_delegated_administrator_reads_the_organization(client, organization):
    management = organization["management"]
    management.register_delegated_administrator(
        AccountId=organization["member"], ServicePrincipal=DELEGATED_SERVICE
    )
    admin = client_as(client, organization["member"])

    assert account_ids(admin.list_accounts()) == {DEFAULT_ACCOUNT, organization["member"]}
    assert account_ids(admin.list_accounts_for_parent(ParentId=organization["ou_id"])) == {
        organization["member"]
    }
    assert admin.list_roots()["Roots"][0]["Id"] == organization["root_id"]
    assert admin.describe_account(AccountId=DEFAULT_ACCOUNT)["Account"]["Name"] == "master"
    # Every corrected read answers the administrator exactly as the management account.
    for action, call in organization_reads(organization).items():
        assert without_metadata(call(admin)) == without_metadata(call(management)), action


def test_deregistered_administrator_is_denied_again(client, organization):
    management, member = organization["management"], organization["member"]
    management.register_delegated_administrator(AccountId=member, ServicePrincipal=DELEGATED_SERVICE)
    management.deregister_delegated_administrator(AccountId=member, ServicePrincipal=DELEGATED_SERVICE)

    with pytest.raises(ClientError) as excinfo:
        client_as(client, member).list_accounts()
    assert error_of(excinfo) == ACCESS_DENIED


def test_account_outside_any_organization_gets_not_in_use(client, organization):
    outsider = client_as(client, "444455556666")

    errors = {}
    for action, call in organization_reads(organization).items():
        with pytest.raises(ClientError) as excinfo:
            call(outsider)
        errors[action] = error_of(excinfo)

    assert errors == {action: NOT_IN_USE for action in organization_reads(organization)}


def test_management_without_organization_gets_not_in_use(client):
    with pytest.raises(ClientError) as excinfo:
        client("organizations", "us-east-1").list_accounts()
    assert error_of(excinfo) == NOT_IN_USE


def test_management_account_reads_are_unaffected(client, organization):
    management, member = organization["management"], organization["member"]

    accounts = management.list_accounts()["Accounts"]
    children = management.list_children(ParentId=organization["ou_id"], ChildType="ACCOUNT")

    assert {a["Id"]: (a["Name"], a["State"]) for a in accounts} == {
        DEFAULT_ACCOUNT: ("master", "ACTIVE"), member: ("member", "ACTIVE"),
    }
    assert children["Children"] == [{"Id": member, "Type": "ACCOUNT"}]
    assert management.describe_account(AccountId=member)["Account"]["Email"] == "member@example.com"
    ous = management.list_organizational_units_for_parent(ParentId=organization["root_id"])
    assert [ou["Name"] for ou in ous["OrganizationalUnits"]] == ["Workloads"]


def test_fault_rules_still_apply_to_organization_reads(client, organization, control):
    control("POST", "/_layer/faults", {
        "service": "organizations", "action": "ListAccounts", "status": 400,
        "code": "TooManyRequestsException", "message": "slow down", "times": 1,
    })
    with pytest.raises(ClientError) as excinfo:
        organization["management"].list_accounts()
    assert error_of(excinfo) == (400, "TooManyRequestsException", "slow down")
    assert len(organization["management"].list_accounts()["Accounts"]) == 2


@pytest.mark.parametrize("reset_path", ["/_layer/reset", "/moto-api/reset"])
def test_reset_forgets_organization_memberships(client, organization, emulator, reset_path):
    member = organization["member"]
    request = urllib.request.Request(emulator.url + reset_path, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200

    # Credentials do not survive a reset either: assume the role again.
    former_member = client_as(client, member)
    with pytest.raises(ClientError) as excinfo:
        former_member.describe_organization()
    assert error_of(excinfo) == NOT_IN_USE
    created = former_member.create_organization(FeatureSet="ALL")
    assert created["Organization"]["MasterAccountId"] == member


# --------------------------------------------------------------------------
# Identification
# --------------------------------------------------------------------------


def test_assumed_role_key_maps_to_role_account(client):
    credentials = client("sts", "us-east-1").assume_role(
        RoleArn="arn:aws:iam::333333333333:role/x", RoleSessionName="session"
    )["Credentials"]
    sts = client(
        "sts", "us-east-1", credentials["AccessKeyId"], credentials["SecretAccessKey"],
        credentials["SessionToken"],
    )
    assert sts.get_caller_identity()["Account"] == "333333333333"
    assert client("sts", "us-east-1").get_caller_identity()["Account"] == DEFAULT_ACCOUNT


def test_fault_matches_on_account(client, control):
    control("POST", "/_layer/faults", {
        "account": DEFAULT_ACCOUNT, "service": "ec2", "status": 403, "code": "AuthFailure",
    })
    with pytest.raises(ClientError) as excinfo:
        client("ec2").describe_instances()
    assert error_of(excinfo)[1] == "AuthFailure"


# --------------------------------------------------------------------------
# Fault rules
# --------------------------------------------------------------------------


def test_fault_n_times_then_success(client, control):
    ec2 = client("ec2")
    _, created = control("POST", "/_layer/faults", {
        "service": "ec2", "action": "DescribeInstances", "status": 503,
        "code": "RequestLimitExceeded", "message": "Request limit exceeded.", "times": 2,
    })

    for _ in range(2):
        with pytest.raises(ClientError) as excinfo:
            ec2.describe_instances()
        assert error_of(excinfo) == (503, "RequestLimitExceeded", "Request limit exceeded.")
    ec2.describe_instances()

    _, rules = control("GET", "/_layer/faults")
    assert [(r["id"], r["hits"]) for r in rules] == [(created["id"], 2)]


def test_fault_without_times_always_applies(client, control):
    control("POST", "/_layer/faults", {
        "service": "sts", "status": 403, "code": "AccessDenied", "message": "denied",
    })
    sts = client("sts", "us-east-1")
    for _ in range(3):
        with pytest.raises(ClientError) as excinfo:
            sts.get_caller_identity()
        assert error_of(excinfo) == (403, "AccessDenied", "denied")


def test_fault_matches_on_region(client, control):
    control("POST", "/_layer/faults", {
        "region": "ap-southeast-2", "status": 401, "code": "AuthFailure", "message": "bad region",
    })
    client("ec2", "eu-west-1").describe_instances()
    with pytest.raises(ClientError):
        client("ec2", "ap-southeast-2").describe_instances()


def test_fault_params_match_one_instance(client, control):
    ec2 = client("ec2")
    target, other = launch(ec2), launch(ec2)
    control("POST", "/_layer/faults", {
        "action": "ModifyInstanceMetadataOptions", "params": {"InstanceId": target},
        "status": 400, "code": "IncorrectInstanceState", "message": "busy",
    })

    with pytest.raises(ClientError) as excinfo:
        ec2.modify_instance_metadata_options(InstanceId=target, HttpTokens="required")
    ec2.modify_instance_metadata_options(InstanceId=other, HttpTokens="required")

    assert error_of(excinfo)[1] == "IncorrectInstanceState"
    assert metadata_of(ec2, target)["HttpTokens"] == "optional"
    assert metadata_of(ec2, other)["HttpTokens"] == "required"


def test_first_live_rule_wins(client, control):
    control("POST", "/_layer/faults", {"service": "ec2", "status": 400, "code": "First", "times": 1})
    control("POST", "/_layer/faults", {"service": "ec2", "status": 400, "code": "Second", "times": 1})
    ec2 = client("ec2")
    codes = []
    for _ in range(2):
        with pytest.raises(ClientError) as excinfo:
            ec2.describe_instances()
        codes.append(error_of(excinfo)[1])
    assert codes == ["First", "Second"]
    ec2.describe_instances()


def test_delayed_request_is_forwarded_and_does_not_block_others(client, control):
    delay = 0.8
    control("POST", "/_layer/faults", {"region": "us-west-2", "delay_ms": int(delay * 1000)})
    slow_client, fast_client = client("ec2", "us-west-2"), client("ec2", "eu-west-1")
    launch(slow_client)
    outcome: dict[str, Any] = {}

    def slow_call() -> None:
        started = time.monotonic()
        outcome["reservations"] = slow_client.describe_instances()["Reservations"]
        outcome["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=slow_call)
    thread.start()
    time.sleep(0.1)
    started = time.monotonic()
    fast_client.describe_instances()
    fast_elapsed = time.monotonic() - started
    thread.join()

    assert outcome["elapsed"] >= delay
    assert len(outcome["reservations"]) == 1  # forwarded to moto after the delay
    assert fast_elapsed < delay / 2


def test_delay_with_status_delays_then_fails(client, control):
    control("POST", "/_layer/faults", {
        "service": "ec2", "status": 500, "code": "InternalError", "delay_ms": 300,
    })
    started = time.monotonic()
    with pytest.raises(ClientError) as excinfo:
        client("ec2").describe_instances()
    assert time.monotonic() - started >= 0.3
    assert error_of(excinfo)[:2] == (500, "InternalError")


def test_query_and_json_error_formats(client, control):
    control("POST", "/_layer/faults", {"service": "iam", "status": 403, "code": "AccessDenied", "message": "iam no"})
    control("POST", "/_layer/faults", {
        "service": "organizations", "status": 400,
        "code": "AWSOrganizationsNotInUseException", "message": "not in an org",
    })
    errors = {}
    for name, call in {
        "iam": lambda: client("iam", "us-east-1").list_users(),
        "organizations": lambda: client("organizations", "us-east-1").describe_organization(),
    }.items():
        with pytest.raises(ClientError) as excinfo:
            call()
        errors[name] = error_of(excinfo)
        assert excinfo.value.response["ResponseMetadata"]["RequestId"]
    assert errors == {
        "iam": (403, "AccessDenied", "iam no"),
        "organizations": (400, "AWSOrganizationsNotInUseException", "not in an org"),
    }


# --------------------------------------------------------------------------
# Control endpoint
# --------------------------------------------------------------------------


def test_request_counts_include_faulted_and_reset(client, control):
    control("POST", "/_layer/faults", {"action": "GetCallerIdentity", "status": 403, "code": "AccessDenied", "times": 1})
    sts, ec2 = client("sts", "us-east-1"), client("ec2")
    with pytest.raises(ClientError):
        sts.get_caller_identity()
    sts.get_caller_identity()
    ec2.describe_instances()
    ec2.describe_regions()
    client("organizations", "us-east-1").create_organization(FeatureSet="ALL")

    _, counts = control("GET", "/_layer/requests")
    assert counts == {"counts": {
        "ec2:DescribeInstances": 1,
        "ec2:DescribeRegions": 1,
        "organizations:CreateOrganization": 1,
        "sts:GetCallerIdentity": 2,
    }}
    control("DELETE", "/_layer/requests")
    assert control("GET", "/_layer/requests")[1] == {"counts": {}}


def test_delete_faults_clears_rules(client, control):
    control("POST", "/_layer/faults", {"service": "ec2", "status": 403, "code": "AuthFailure"})
    assert control("DELETE", "/_layer/faults") == (200, {"cleared": 1})
    assert control("GET", "/_layer/faults") == (200, [])
    client("ec2").describe_instances()


def test_reset_clears_everything(client, control):
    ec2 = client("ec2")
    launch(ec2)
    control("POST", "/_layer/regions", {"account": DEFAULT_ACCOUNT, "region": "ap-east-1", "opt_in_status": "opted-in"})
    control("POST", "/_layer/faults", {"service": "sts", "status": 403, "code": "AccessDenied"})

    assert control("POST", "/_layer/reset") == (200, {"status": "ok"})

    assert control("GET", "/_layer/faults")[1] == []
    assert control("GET", "/_layer/requests")[1] == {"counts": {}}
    assert control("GET", "/_layer/regions")[1] == []
    assert ec2.describe_instances()["Reservations"] == []
    assert "ap-east-1" not in region_names(ec2.describe_regions())
    client("sts", "us-east-1").get_caller_identity()


@pytest.mark.parametrize("rule, fragment", [
    ({"service": "ec2", "status": 403, "time": 2}, "unknown fault rule fields"),
    ({"status": "403"}, "status must be an integer"),
    ({"status": 403, "times": 0}, "times must be at least 1"),
    ({"status": 403, "params": ["InstanceId"]}, "params must be an object"),
    ([1, 2], "JSON object"),
    ({"status": 403, "probability": 1.5}, "probability must be a number from 0 to 1"),
    ({"status": 403, "probability": True}, "probability must be a number from 0 to 1"),
    ({"reset": "yes"}, "reset must be true or false"),
    ({"after": True}, "after needs reset"),
    ({"reset": True, "status": 500}, "not both"),
])
def test_invalid_fault_rules_are_rejected(control, rule, fragment):
    status, body = control("POST", "/_layer/faults", rule)
    assert status == 400 and fragment in body["error"]
    assert control("GET", "/_layer/faults")[1] == []


def test_unknown_control_route_and_method(control):
    assert control("GET", "/_layer/nope")[0] == 404
    assert control("PUT", "/_layer/faults", {})[0] == 405


def test_unsigned_requests_pass_through_to_moto(emulator):
    request = urllib.request.Request(emulator.url + "/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


# --------------------------------------------------------------------------
# Probabilistic faults and connection resets
# --------------------------------------------------------------------------


def fault_pattern(client, control, seed: int, calls: int = 20) -> list[bool]:
    """Which of ``calls`` DescribeInstances a 30 % rule fails, after seeding the layer."""
    control("DELETE", "/_layer/faults")
    assert control("POST", "/_layer/seed", {"seed": seed}) == (200, {"seed": seed})
    control("POST", "/_layer/faults", {
        "action": "DescribeInstances", "status": 503, "code": "Unavailable", "probability": 0.3,
    })
    ec2 = client("ec2")
    pattern = []
    for _ in range(calls):
        try:
            ec2.describe_instances()
            pattern.append(False)
        except ClientError as error:
            assert error.response["Error"]["Code"] == "Unavailable"
            pattern.append(True)
    return pattern


def test_probability_with_fixed_seed_is_reproducible(client, control):
    first = fault_pattern(client, control, seed=42)
    second = fault_pattern(client, control, seed=42)

    assert first == second
    # One draw per matching request, from random.Random(seed): the subset is predictable.
    draws = random.Random(42)
    assert first == [draws.random() < 0.3 for _ in first]
    assert 0 < sum(first) < len(first)
    assert control("GET", "/_layer/faults")[1][0]["hits"] == sum(second)  # misses are not hits


def test_probability_miss_falls_through_to_later_rules(client, control):
    control("POST", "/_layer/faults", {
        "service": "ec2", "status": 400, "code": "Never", "probability": 0,
    })
    control("POST", "/_layer/faults", {"service": "ec2", "status": 400, "code": "Second", "times": 1})
    ec2 = client("ec2")
    with pytest.raises(ClientError) as excinfo:
        ec2.describe_instances()
    assert error_of(excinfo)[1] == "Second"
    ec2.describe_instances()  # the 0 % rule still never applies
    assert [rule["hits"] for rule in control("GET", "/_layer/faults")[1]] == [0, 1]


def test_reset_fault_drops_the_connection_before_moto(client, control):
    ec2 = client("ec2")
    instance_id = launch(ec2, HttpTokens="optional")
    control("POST", "/_layer/faults", {
        "action": "ModifyInstanceMetadataOptions", "reset": True, "times": 1,
    })

    with pytest.raises(ConnectionClosedError) as excinfo:
        ec2.modify_instance_metadata_options(InstanceId=instance_id, HttpTokens="required")

    # An RST, not an orderly close (which urllib3 would report as RemoteDisconnected).
    assert "ConnectionResetError" in repr(excinfo.value.kwargs.get("error"))
    assert metadata_of(ec2, instance_id)["HttpTokens"] == "optional"
    # Only that one request was faulted; the next one goes through.
    ec2.modify_instance_metadata_options(InstanceId=instance_id, HttpTokens="required")
    assert metadata_of(ec2, instance_id)["HttpTokens"] == "required"


def test_reset_after_makes_the_change_but_loses_the_answer(client, control):
    ec2 = client("ec2")
    instance_id = launch(ec2, HttpTokens="optional")
    control("POST", "/_layer/faults", {
        "action": "ModifyInstanceMetadataOptions", "reset": True, "after": True,
    })

    with pytest.raises(ConnectionClosedError):
        ec2.modify_instance_metadata_options(InstanceId=instance_id, HttpTokens="required")

    assert metadata_of(ec2, instance_id)["HttpTokens"] == "required"
    assert control("GET", "/_layer/stats")[1]["faulted"] == 1


# --------------------------------------------------------------------------
# Metadata changes that take time
# --------------------------------------------------------------------------


def test_change_is_pending_for_the_configured_time_then_applied(client, control):
    ec2 = client("ec2")
    instance_id = launch(ec2)
    ec2.modify_instance_metadata_options(InstanceId=instance_id, HttpTokens="required")
    assert metadata_of(ec2, instance_id)["State"] == "applied"  # off by default

    assert control("POST", "/_layer/pending", {"seconds": 0.5}) == (200, {"seconds": 0.5})
    ec2.modify_instance_metadata_options(InstanceId=instance_id, HttpTokens="optional")

    pending = metadata_of(ec2, instance_id)
    assert (pending["State"], pending["HttpTokens"]) == ("pending", "optional")
    time.sleep(0.6)
    applied = metadata_of(ec2, instance_id)
    assert (applied["State"], applied["HttpTokens"]) == ("applied", "optional")


def test_page_size_caps_describe_instances_pages_whatever_max_results_asks(client, control):
    ec2 = client("ec2")
    launched = {launch(ec2) for _ in range(5)}
    page = ec2.describe_instances(MaxResults=1000)
    assert len(page["Reservations"]) == 5 and "NextToken" not in page  # off by default

    assert control("POST", "/_layer/page-size", {"max": 2}) == (200, {"max": 2})
    seen, pages, token = set(), 0, None
    while True:
        extra = {"NextToken": token} if token else {}
        page = ec2.describe_instances(MaxResults=1000, **extra)
        pages += 1
        assert len(page["Reservations"]) <= 2
        seen |= {i["InstanceId"] for r in page["Reservations"] for i in r["Instances"]}
        token = page.get("NextToken")
        if not token:
            break
    assert (pages, seen) == (3, launched)
    assert control("POST", "/_layer/page-size", {"max": 0})[0] == 400
    assert control("POST", "/_layer/page-size", {"max": None}) == (200, {"max": None})


def test_change_on_stopped_instance_is_never_pending(client, control):
    ec2 = client("ec2")
    instance_id = launch(ec2)
    ec2.stop_instances(InstanceIds=[instance_id])
    control("POST", "/_layer/pending", {"seconds": 5})

    answer = ec2.modify_instance_metadata_options(InstanceId=instance_id, HttpTokens="required")

    assert answer["InstanceMetadataOptions"]["State"] == "applied"
    assert metadata_of(ec2, instance_id)["State"] == "applied"


# --------------------------------------------------------------------------
# Account-level IMDS defaults
# --------------------------------------------------------------------------


def test_metadata_defaults_are_empty_until_set(client, control):
    ec2 = client("ec2")
    assert ec2.get_instance_metadata_defaults()["AccountLevel"] == {}

    status, _ = control("POST", "/_layer/metadata-defaults", {
        "account": DEFAULT_ACCOUNT, "region": "eu-west-1", "http_tokens": "required",
        "http_tokens_enforced": "enabled", "managed_by": "declarative-policy",
        "managed_exception_message": "IMDSv2 is mandated by policy",
    })

    assert status == 200
    assert ec2.get_instance_metadata_defaults()["AccountLevel"] == {
        "HttpTokens": "required",
        "HttpTokensEnforced": "enabled",
        "ManagedBy": "declarative-policy",
        "ManagedExceptionMessage": "IMDSv2 is mandated by policy",
    }
    # Per account and region: another region of the same account is untouched.
    assert client("ec2", "us-east-1").get_instance_metadata_defaults()["AccountLevel"] == {}
    assert control("GET", "/_layer/metadata-defaults")[1][0]["region"] == "eu-west-1"


@pytest.mark.parametrize("defaults, fragment", [
    ({"http_tokens_enforced": "enabled"}, "HttpTokensEnforced"),
    ({"managed_by": "declarative-policy", "managed_exception_message": "Ask the CCoE."},
     "declarative policy"),
])
def test_enforced_defaults_refuse_optional_tokens(client, control, defaults, fragment):
    ec2 = client("ec2")
    instance_id = launch(ec2, HttpTokens="required")
    control("POST", "/_layer/metadata-defaults", {
        "account": DEFAULT_ACCOUNT, "region": "eu-west-1", **defaults,
    })

    with pytest.raises(ClientError) as excinfo:
        ec2.modify_instance_metadata_options(InstanceId=instance_id, HttpTokens="optional")

    status, code, message = error_of(excinfo)
    assert (status, code) == (400, "InvalidParameterValue")
    assert fragment in message
    assert defaults.get("managed_exception_message", "") in message
    assert metadata_of(ec2, instance_id)["HttpTokens"] == "required"
    # Requiring IMDSv2 is still allowed.
    ec2.modify_instance_metadata_options(InstanceId=instance_id, HttpTokens="required")


def test_metadata_defaults_reject_unknown_values(control):
    status, body = control("POST", "/_layer/metadata-defaults", {
        "account": DEFAULT_ACCOUNT, "region": "eu-west-1", "http_tokens_enforced": "on",
    })
    assert status == 400 and "http_tokens_enforced must be one of" in body["error"]


# --------------------------------------------------------------------------
# Latency
# --------------------------------------------------------------------------


def test_latency_delays_requests_that_overlap(client, control):
    assert control("POST", "/_layer/latency", {"ms": 300}) == (200, {"ms": 300.0, "jitter_ms": 0.0})
    clients = [client("ec2"), client("ec2", "us-east-1")]
    durations: list[float] = []

    def call(ec2: Any) -> None:
        started = time.monotonic()
        ec2.describe_instances()
        durations.append(time.monotonic() - started)

    started = time.monotonic()
    threads = [threading.Thread(target=call, args=(ec2,)) for ec2 in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started

    assert min(durations) >= 0.3
    assert elapsed < 0.55  # in sequence they would take at least 0.6 s
    assert control("GET", "/_layer/stats")[1]["in_flight_peak"] == 2


def test_latency_jitter_stays_within_bounds(client, control):
    control("POST", "/_layer/latency", {"ms": 100, "jitter_ms": 50})
    sts = client("sts", "us-east-1")
    for _ in range(3):
        started = time.monotonic()
        sts.get_caller_identity()
        assert 0.05 <= time.monotonic() - started < 0.3


@pytest.mark.parametrize("body", [{"ms": -1}, {"ms": "50"}, {"ms": 50, "jitter": 10}, [50]])
def test_invalid_latency_is_rejected(control, body):
    assert control("POST", "/_layer/latency", body)[0] == 400
    assert control("GET", "/_layer/latency")[1] == {"ms": 0.0, "jitter_ms": 0.0}


# --------------------------------------------------------------------------
# EC2 token buckets
# --------------------------------------------------------------------------


def throttled_calls(call: Callable[[], Any], attempts: int) -> list[bool]:
    """Run ``call`` ``attempts`` times; True where it was throttled."""
    outcome = []
    for _ in range(attempts):
        try:
            call()
            outcome.append(False)
        except ClientError as error:
            status = error.response["ResponseMetadata"]["HTTPStatusCode"]
            assert (status, error.response["Error"]["Code"]) == (503, "RequestLimitExceeded")
            assert error.response["Error"]["Message"] == "Request limit exceeded."
            outcome.append(True)
    return outcome


def test_buckets_throttle_after_capacity_and_refill(client, control):
    ec2 = client("ec2")
    status, settings = control("POST", "/_layer/buckets", {
        "enabled": True, "classes": {"DescribeInstances": {"capacity": 3, "refill": 2}},
    })
    assert status == 200 and settings["classes"]["DescribeInstances"] == {"capacity": 3.0, "refill": 2.0}
    assert settings["classes"]["default"] == {"capacity": 100.0, "refill": 20.0}  # built-in kept

    assert throttled_calls(ec2.describe_instances, 5) == [False, False, False, True, True]
    ec2.describe_regions()  # another class (default) has its own bucket
    # 2 tokens/s: about 0.1 token came back during the calls; now one more, not two.
    time.sleep(0.5)
    assert throttled_calls(ec2.describe_instances, 2) == [False, True]

    stats = control("GET", "/_layer/stats")[1]
    assert stats["throttled"] == {"ec2:DescribeInstances": 3}
    assert stats["counts"]["ec2:DescribeInstances"] == 7  # throttled requests are counted too


def test_buckets_are_per_account_and_region_and_ec2_only(client, control):
    control("POST", "/_layer/buckets", {"classes": {"default": {"capacity": 1, "refill": 0}}})
    assert throttled_calls(client("ec2", "us-east-1").describe_regions, 2) == [False, True]
    assert throttled_calls(client("ec2", "eu-west-1").describe_regions, 1) == [False]
    other_account = client_as(client, "222222222222", "ec2")  # in us-east-1 too
    assert throttled_calls(other_account.describe_regions, 1) == [False]
    assert throttled_calls(client("sts", "us-east-1").get_caller_identity, 3) == [False] * 3


def test_buckets_off_by_default_and_disable(client, control):
    assert control("GET", "/_layer/buckets")[1]["enabled"] is False
    control("POST", "/_layer/buckets", {
        "enabled": False, "classes": {"default": {"capacity": 1, "refill": 0}},
    })
    assert throttled_calls(client("ec2").describe_regions, 3) == [False] * 3
    status, body = control("POST", "/_layer/buckets", {
        "classes": {"default": {"capacity": 0, "refill": 1}},
    })
    assert status == 400 and "capacity" in body["error"]


# --------------------------------------------------------------------------
# Statistics and reset of the new switches
# --------------------------------------------------------------------------


def test_stats_report_counts_throttles_faults_and_load(client, control):
    control("POST", "/_layer/faults", {
        "action": "GetCallerIdentity", "status": 403, "code": "AccessDenied", "times": 2,
    })
    control("POST", "/_layer/buckets", {"classes": {"DescribeInstances": {"capacity": 1, "refill": 0}}})
    sts, ec2 = client("sts", "us-east-1"), client("ec2")
    assert throttled_calls(ec2.describe_instances, 2) == [False, True]
    for _ in range(3):
        try:
            sts.get_caller_identity()
        except ClientError:
            pass

    status, stats = control("GET", "/_layer/stats")
    assert status == 200
    assert stats["counts"] == control("GET", "/_layer/requests")[1]["counts"] == {
        "ec2:DescribeInstances": 2, "sts:GetCallerIdentity": 3,
    }
    assert stats["throttled"] == {"ec2:DescribeInstances": 1}
    assert stats["faulted"] == 2
    assert stats["in_flight_peak"] == 1
    assert stats["cpu_seconds"] > 0

    control("DELETE", "/_layer/requests")
    cleared = control("GET", "/_layer/stats")[1]
    assert (cleared["counts"], cleared["throttled"], cleared["faulted"]) == ({}, {}, 0)
    assert cleared["in_flight_peak"] == 0
    assert cleared["cpu_seconds"] >= stats["cpu_seconds"]  # cumulative, never reset


def test_reset_restores_every_switch(client, control):
    control("POST", "/_layer/seed", {"seed": 7})
    control("POST", "/_layer/pending", {"seconds": 3})
    control("POST", "/_layer/metadata-defaults", {
        "account": DEFAULT_ACCOUNT, "region": "eu-west-1", "http_tokens": "required",
    })
    control("POST", "/_layer/latency", {"ms": 20, "jitter_ms": 5})
    control("POST", "/_layer/buckets", {"classes": {"DescribeInstances": {"capacity": 1, "refill": 0}}})
    ec2 = client("ec2")
    assert throttled_calls(ec2.describe_instances, 2) == [False, True]

    control("POST", "/_layer/reset")

    assert control("GET", "/_layer/seed")[1] == {"seed": None}
    assert control("GET", "/_layer/pending")[1] == {"seconds": 0.0}
    assert control("GET", "/_layer/metadata-defaults")[1] == []
    assert control("GET", "/_layer/latency")[1] == {"ms": 0.0, "jitter_ms": 0.0}
    assert control("GET", "/_layer/buckets")[1]["enabled"] is False
    stats = control("GET", "/_layer/stats")[1]
    assert (stats["counts"], stats["throttled"], stats["faulted"]) == ({}, {}, 0)
    assert ec2.get_instance_metadata_defaults()["AccountLevel"] == {}
    assert throttled_calls(ec2.describe_instances, 3) == [False] * 3
