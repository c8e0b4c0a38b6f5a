"""EC2 request throttling: per-action token buckets (anchors.md §6.3) and RequestLimitExceeded."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from cnivpc.lab.ec2 import Ec2Lab
from cnivpc.lab.ec2.throttle import BucketSpec, Throttler, bucket_key, default_spec

from .conftest import Endpoint, make_client
from .test_strict import error, new_eni


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("key", "size", "refill"),
    [
        ("AssignPrivateIpAddresses", 100, 5),
        ("UnassignPrivateIpAddresses", 100, 5),
        ("CreateNetworkInterface", 100, 5),
        ("DeleteNetworkInterface", 100, 5),
        ("ModifyNetworkInterfaceAttribute", 100, 5),
        ("CreateTags", 100, 10),
        ("AttachNetworkInterface", 50, 5),  # generic mutating
        ("DetachNetworkInterface", 50, 5),
        ("DescribeSubnets", 100, 20),  # non-mutating
        ("DescribeNetworkInterfaces", 100, 20),  # filtered or paginated
        ("DescribeNetworkInterfaces/unfiltered", 50, 10),
        ("RunInstances", 5, 2),
    ],
)
def test_bucket_table(key: str, size: int, refill: int) -> None:
    assert default_spec(key) == BucketSpec(size, refill)


def test_unfiltered_describe_uses_the_small_bucket() -> None:
    assert bucket_key("DescribeNetworkInterfaces", unfiltered=True).endswith("/unfiltered")
    assert bucket_key("DescribeSubnets", unfiltered=True) == "DescribeSubnets"


def test_bucket_empties_and_refills() -> None:
    clock = FakeClock()
    throttler = Throttler(enabled=True, clock=clock)
    assert all(throttler.allow("AttachNetworkInterface", unfiltered=False) for _ in range(50))
    assert not throttler.allow("AttachNetworkInterface", unfiltered=False)
    assert throttler.allow("DetachNetworkInterface", unfiltered=False)  # its own bucket
    clock.now += 0.2  # 5 tokens/s -> one token
    assert throttler.allow("AttachNetworkInterface", unfiltered=False)
    assert not throttler.allow("AttachNetworkInterface", unfiltered=False)
    clock.now += 100  # never above the bucket size
    assert throttler.tokens("AttachNetworkInterface") == 50


def test_request_limit_exceeded_from_an_empty_bucket(endpoint: Endpoint, request: Any) -> None:
    eni = new_eni(endpoint)["NetworkInterfaceId"]
    client = make_client(endpoint.url, retries=0)
    if endpoint.lab:
        lab: Ec2Lab = request.getfixturevalue("lab")
        lab.control.set_throttling(True)
        lab.control.drain_bucket("AssignPrivateIpAddresses")
        with pytest.raises(ClientError) as exc:
            client.assign_private_ip_addresses(
                NetworkInterfaceId=eni, SecondaryPrivateIpAddressCount=1
            )
        assert error(exc) == ("RequestLimitExceeded", "Request limit exceeded.", 503)
        # Other actions have their own buckets.
        client.describe_network_interfaces(NetworkInterfaceIds=[eni])
        # A bucket of 3 that does not refill within the test: 3 calls pass, the 4th is throttled.
        lab.control.set_bucket("UnassignPrivateIpAddresses", 3, 0.001)
        for _ in range(3):
            with pytest.raises(ClientError) as exc:  # (the address is unknown: a 400, not a 503)
                client.unassign_private_ip_addresses(
                    NetworkInterfaceId=eni, PrivateIpAddresses=["10.0.16.200"]
                )
            assert error(exc)[0] == "InvalidParameterValue"
        with pytest.raises(ClientError) as exc:
            client.unassign_private_ip_addresses(
                NetworkInterfaceId=eni, PrivateIpAddresses=["10.0.16.200"]
            )
        assert error(exc)[0] == "RequestLimitExceeded"
    else:  # moto: no buckets -- 101 Assigns in a burst (the real bucket holds 100) all pass
        for _ in range(101):
            client.assign_private_ip_addresses(
                NetworkInterfaceId=eni, SecondaryPrivateIpAddressCount=1
            )


def test_botocore_retries_a_throttled_call(lab: Ec2Lab) -> None:
    client = make_client(lab.url, retries=3)
    lab.control.faults.throttle_next("DescribeVpcs", 2)
    out = client.describe_vpcs()
    assert out["ResponseMetadata"]["RetryAttempts"] == 2


def test_unfiltered_describe_draws_on_its_own_bucket(lab: Ec2Lab, ec2_client: Any) -> None:
    client = make_client(lab.url, retries=0)
    lab.control.set_throttling(True)
    lab.control.drain_bucket("DescribeNetworkInterfaces/unfiltered")
    with pytest.raises(ClientError) as exc:
        client.describe_network_interfaces()
    assert error(exc)[0] == "RequestLimitExceeded"
    client.describe_network_interfaces(Filters=[{"Name": "status", "Values": ["available"]}])
    client.describe_network_interfaces(MaxResults=5)
