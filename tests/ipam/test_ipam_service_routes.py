"""AWS service routes (``routeServicePrefixLists``) through the built zipapp on a lab node: the
CIDRs of the S3 and DynamoDB managed prefix lists of the node's region (as EC2 lists them) are
routed over the ENI like the VPC's own, read once and cached (the next ADD makes no EC2 call for
them), and a failure to read them never fails a pod (no service routes, a warning)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support.cli import Cli, lab_cli
from tests.support.lab import make_client

pytestmark = [pytest.mark.netns, pytest.mark.artifact]


def service_cidrs(c: Cli, names: list[str]) -> set[str]:
    """The IPv4 CIDRs EC2 lists for ``names`` (com.amazonaws.<region>.<name>)."""
    client = make_client(c.ipam.lab)
    region = c.ipam.lab.region
    lists = client.describe_managed_prefix_lists(Filters=[{
        "Name": "prefix-list-name",
        "Values": [f"com.amazonaws.{region}.{n}" for n in names]}])["PrefixLists"]
    assert len(lists) == len(names)
    return {e["Cidr"] for pl in lists for e in client.get_managed_prefix_list_entries(
        PrefixListId=pl["PrefixListId"])["Entries"] if ":" not in e["Cidr"]}


def test_s3_and_dynamodb_are_routed_over_the_eni(node: Callable[..., Cli]) -> None:
    c = node("c5.xlarge", routeServicePrefixLists=["s3", "dynamodb"], warmIPTarget=0)
    expected = service_cidrs(c, ["s3", "dynamodb"])
    assert expected
    first = c.ipam.add("pod-a")
    assert first.code == 0, first.doc
    gateway = first.doc["ips"][0]["gateway"]
    routes: list[dict[str, Any]] = first.doc["routes"]
    via_eni = {r["dst"] for r in routes if r.get("gw") == gateway}
    assert expected <= via_eni, expected - via_eni
    # Read once: the next ADD routes the same from the cache, with no EC2 call of its own.
    calls = c.ipam.ec2_calls()
    assert calls.get("DescribeManagedPrefixLists") == 1
    assert calls.get("GetManagedPrefixListEntries") == 2
    second = c.ipam.add("pod-b")
    assert second.code == 0 and {r["dst"] for r in second.doc["routes"]} >= expected
    assert c.ipam.ec2_calls() == calls


def test_an_unreadable_prefix_list_never_fails_a_pod(node: Callable[..., Cli]) -> None:
    c = node("c5.xlarge", routeServicePrefixLists=["s3"], warmIPTarget=0)
    s3 = service_cidrs(c, ["s3"])
    # An IAM policy without the prefix-list reads (the node role of an older install).
    lab_cli(c.ipam, "fault", "deny", "DescribeManagedPrefixLists")
    reply = c.ipam.add("pod-a")
    assert reply.code == 0, reply.doc
    assert not ({r["dst"] for r in reply.doc["routes"]} & s3)
    log = (c.ipam.workdir / "cnivpc.log").read_text()
    assert "cannot read the service prefix lists s3" in log
