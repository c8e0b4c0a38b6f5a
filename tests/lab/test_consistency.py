"""EC2 eventual-consistency knobs (aws-reference.md §4). Off (0) by default; tests turn them on."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from cnivpc.lab.ec2 import Ec2Lab, topology
from cnivpc.lab.profiles import ZERO
from tests.support.lab import eventually

from .test_strict import error


def visible(client: Any, eni_id: str) -> bool:
    try:
        client.describe_network_interfaces(NetworkInterfaceIds=[eni_id])
    except ClientError:
        return False
    return True


def test_detach_passes_through_detaching(lab: Ec2Lab, ec2_client: Any) -> None:
    lab.control.set_profile(ZERO.with_overrides(name="slow-detach", detach_duration=0.4))
    topo = topology.create(lab)
    node = topo.run_instance("c5.xlarge")
    eni = ec2_client.create_network_interface(SubnetId=topo.pod_subnet())["NetworkInterface"]
    eni_id = eni["NetworkInterfaceId"]
    att = ec2_client.attach_network_interface(
        NetworkInterfaceId=eni_id, InstanceId=node.instance_id, DeviceIndex=1
    )
    ec2_client.detach_network_interface(AttachmentId=att["AttachmentId"])
    status = ec2_client.describe_network_interfaces(NetworkInterfaceIds=[eni_id])
    assert status["NetworkInterfaces"][0]["Status"] == "detaching"
    with pytest.raises(ClientError) as exc:
        ec2_client.delete_network_interface(NetworkInterfaceId=eni_id)
    assert error(exc) == (
        "InvalidParameterValue",
        f"Network interface '{eni_id}' is currently in use.",
        400,
    )
    # ... until the detach completes (an event: polled, not slept for).
    eventually(lambda: ec2_client.describe_network_interfaces(NetworkInterfaceIds=[eni_id])[
        "NetworkInterfaces"][0]["Status"] == "available")
    ec2_client.delete_network_interface(NetworkInterfaceId=eni_id)


def test_new_eni_is_briefly_unknown(lab: Ec2Lab, ec2_client: Any) -> None:
    lab.control.set_profile(ZERO.with_overrides(name="lagging", create_visibility_delay=0.4))
    topo = topology.create(lab)
    eni_id = ec2_client.create_network_interface(SubnetId=topo.pod_subnet())["NetworkInterface"][
        "NetworkInterfaceId"
    ]
    with pytest.raises(ClientError) as exc:
        ec2_client.create_tags(Resources=[eni_id], Tags=[{"Key": "k", "Value": "v"}])
    assert error(exc)[0] == "InvalidNetworkInterfaceID.NotFound"
    with pytest.raises(ClientError) as exc:
        ec2_client.describe_network_interfaces(NetworkInterfaceIds=[eni_id])
    assert error(exc) == (
        "InvalidNetworkInterfaceID.NotFound",
        f"The networkInterface ID '{eni_id}' does not exist",
        400,
    )
    eventually(lambda: visible(ec2_client, eni_id))
    ec2_client.create_tags(Resources=[eni_id], Tags=[{"Key": "k", "Value": "v"}])
    assert ec2_client.describe_network_interfaces(NetworkInterfaceIds=[eni_id])[
        "NetworkInterfaces"
    ][0]["TagSet"] == [{"Key": "k", "Value": "v"}]


def test_defaults_are_strongly_consistent(lab: Ec2Lab, ec2_client: Any) -> None:
    topo = topology.create(lab)
    node = topo.run_instance("c5.xlarge")
    eni_id = ec2_client.create_network_interface(SubnetId=topo.pod_subnet())["NetworkInterface"][
        "NetworkInterfaceId"
    ]
    ec2_client.create_tags(Resources=[eni_id], Tags=[{"Key": "k", "Value": "v"}])
    att = ec2_client.attach_network_interface(
        NetworkInterfaceId=eni_id, InstanceId=node.instance_id, DeviceIndex=1
    )
    ec2_client.detach_network_interface(AttachmentId=att["AttachmentId"])
    ec2_client.delete_network_interface(NetworkInterfaceId=eni_id)
