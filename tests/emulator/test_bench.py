"""Tests of bench.py's arithmetic: the lower bound, the scaling of a partial run, reports.

Why: a benchmark's verdict is only as good as the bound it divides by; these pin
the formulas documented in docs/performance.md without running the tool.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import (
    Pair,
    Run,
    Scenario,
    extrapolate,
    lower_bound,
    pair_critical_path,
    prefix_calls,
    read_reports,
)

ORG_COUNTS = {
    "sts:GetCallerIdentity": 1,
    "organizations:DescribeOrganization": 1,
    "organizations:ListAccounts": 2,
    "sts:AssumeRole": 20,
    "ec2:DescribeRegions": 21,
}


def test_prefix_is_the_identity_check_then_the_organization_described_while_listed():
    # DescribeOrganization goes alongside the two ListAccounts pages.
    assert prefix_calls(ORG_COUNTS) == 3
    assert prefix_calls({"sts:GetCallerIdentity": 1, "organizations:DescribeOrganization": 1}) == 2
    # OU listing comes after the accounts are listed.
    with_ous = {**ORG_COUNTS, "organizations:ListOrganizationalUnitsForParent": 2}
    assert prefix_calls(with_ous) == 5


def test_critical_path_of_a_member_pair_within_the_burst():
    # 4 prefix + AssumeRole + DescribeRegions + DescribeInstances, 1 read before the changes,
    # 7 rounds of 8, 1 read-back.
    pair = Pair("111111111111", "eu-west-1", member=True, changes=50)
    expected = (7 + 1 + 7 + 1) * 0.05
    assert pair_critical_path(pair, 4, 0.05, 8, modifies=True) == pytest.approx(expected)


def test_critical_path_beyond_the_burst_is_the_refill_time():
    # 300 changes: 2 reads before them, 200 beyond the burst at 5/s plus one call, 2 read-back.
    pair = Pair("123456789012", "us-east-1", member=False, changes=300)
    expected = 4 * 0.05 + 2 * 0.05 + (200 / 5 + 0.05) + 2 * 0.05
    assert pair_critical_path(pair, 2, 0.05, 8, modifies=True) == pytest.approx(expected)


def test_a_scan_has_no_modification_on_its_critical_path():
    pair = Pair("123456789012", "us-east-1", member=False, changes=300)
    assert pair_critical_path(pair, 2, 0.05, 8, modifies=False) == pytest.approx(4 * 0.05)


def test_lower_bound_takes_the_largest_component_and_ignores_throttled_calls():
    pairs = [Pair("1", "us-east-1", False, 0), Pair("2", "us-east-1", True, 10)]
    counts = {"sts:GetCallerIdentity": 1, "ec2:DescribeInstances": 640}
    bound = lower_bound(pairs, counts, {"ec2:DescribeInstances": 1}, 0.1, 64, 0.5, modifies=True)
    assert bound.spread == pytest.approx(640 * 0.1 / 64)
    assert bound.critical_pair == "2/us-east-1"
    assert bound.value == bound.spread
    assert bound.limit == "calls/in flight"


def test_concurrency_one_puts_every_call_on_one_lane():
    pairs = [Pair("1", "us-east-1", False, 10)]
    bound = lower_bound(pairs, {"ec2:X": 100}, {}, 0.05, 1, 0.0, modifies=True)
    assert bound.spread == pytest.approx(5.0)
    # DescribeRegions, DescribeInstances, 1 read before, 10 modifications one by one, 1 after.
    assert bound.critical_path == pytest.approx((2 + 1 + 10 + 1) * 0.05)


def test_extrapolation_scales_by_api_calls():
    assert extrapolate(50.0, 800, 3200) == pytest.approx(200.0)


def test_expected_instances_follow_seed_shapes():
    assert Scenario("wide", 50).instances(1) == 6000
    assert Scenario("deep", 50).instances(1) == 300
    assert Scenario("many", 250).instances(0.1) == 48  # at least 2 per account and region


def test_reports_and_pairs_are_read_from_json_lines(tmp_path: Path):
    scan = {
        "kind": "scan_report",
        "accounts": [{
            "account_id": "2", "access": {"type": "assumed_role"},
            "regions": [{"region": "eu-west-1", "instances": [{"change": True}, {"change": False}]}],
        }],
    }
    enforcement = {"kind": "enforcement_report", "succeeded": 1, "failed": 0, "elapsed_seconds": 0.5}
    out = tmp_path / "out"
    out.write_text(json.dumps(scan) + "\n" + json.dumps(enforcement) + "\n")
    read_scan, read_enforcement = read_reports(out)
    run = Run(
        label="t", concurrency=64, latency_s=0.05, wall=1.0, exit_code=0, peak_mb=1.0,
        tool_cpu=0.1, emulator_cpu=0.2, counts={}, throttled={}, in_flight_peak=1,
        scan=read_scan, enforcement=read_enforcement, stderr_tail="",
    )
    assert run.pairs() == [Pair("2", "eu-west-1", True, 1)]
    assert (run.succeeded, run.failed, run.enforce_seconds) == (1, 0, 0.5)
