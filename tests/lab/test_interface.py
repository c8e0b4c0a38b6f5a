"""The lab's public interface as the fabric helper and other tests use it."""

from __future__ import annotations

from typing import Any

import pytest

from cnivpc.lab.ec2 import AttachmentEvent, Ec2Lab, topology
from cnivpc.lab.profiles import AWS_LIKE, ZERO, LatencyProfile, get_profile


def test_url_app_backend(lab: Ec2Lab) -> None:
    assert lab.url.startswith("http://127.0.0.1:")
    assert callable(lab.app)
    assert lab.backend.region_name == "us-east-1"


def test_reset_is_fast_and_clean(lab: Ec2Lab, ec2_client: Any) -> None:
    import time

    topology.create(lab)
    before = len(ec2_client.describe_vpcs()["Vpcs"])
    costs = []
    for _ in range(3):
        # CPU time, not wall: the run queue of a loaded 2-core machine is not the lab's cost.
        started = time.process_time()
        lab.reset()
        costs.append(time.process_time() - started)
    assert min(costs) < 0.3  # ~50 ms (moto reloads its AMI catalogue)
    after = len(ec2_client.describe_vpcs()["Vpcs"])
    assert (before, after) == (2, 1)  # ours + moto's default VPC, then the default only


def test_topology_layout(lab: Ec2Lab, ec2_client: Any) -> None:
    topo = topology.create(lab, secondary_cidr="100.64.0.0/16")
    vpc = ec2_client.describe_vpcs(VpcIds=[topo.vpc_id])["Vpcs"][0]
    cidrs = {a["CidrBlock"] for a in vpc["CidrBlockAssociationSet"]}
    assert cidrs == {"10.0.0.0/16", "100.64.0.0/16"}
    pods = ec2_client.describe_subnets(Filters=[{"Name": "tag:cnivpc", "Values": ["pods"]}])
    assert {s["SubnetId"] for s in pods["Subnets"]} == set(topo.pod_subnets.values())
    assert {s["CidrBlock"] for s in pods["Subnets"]} == {"100.64.0.0/20", "100.64.16.0/20"}
    node = ec2_client.describe_subnets(SubnetIds=[topo.node_subnet()])["Subnets"][0]
    assert node["CidrBlock"] == "10.0.0.0/24"
    assert node["AvailabilityZone"] == "us-east-1a"


def test_run_instance(topo: topology.Topology, ec2_client: Any) -> None:
    info = topo.run_instance("m5.large")
    assert info.private_ip == "10.0.0.4"  # the first address after AWS's 4 reserved ones
    eni = ec2_client.describe_network_interfaces(NetworkInterfaceIds=[info.eni_id])
    eni = eni["NetworkInterfaces"][0]
    assert eni["MacAddress"] == info.mac
    assert eni["Attachment"]["InstanceId"] == info.instance_id
    assert eni["Attachment"]["DeviceIndex"] == 0
    # AWS: a NIC created at launch is deleted with the instance.
    assert eni["Attachment"]["DeleteOnTermination"] is True
    second = topo.run_instance("m5.large")
    assert second.private_ip == "10.0.0.5"


def test_instance_type_limits_come_from_describe_instance_types(ec2_client: Any) -> None:
    from cnivpc.lab.ec2.limits import limits_for

    for name, enis, ips in (("c5.xlarge", 4, 15), ("m5.24xlarge", 15, 50), ("t3.small", 3, 4)):
        got = ec2_client.describe_instance_types(InstanceTypes=[name])["InstanceTypes"][0]
        net = got["NetworkInfo"]
        limits = limits_for(name)
        assert (limits.max_enis, limits.ipv4_per_eni) == (enis, ips)
        assert (net["MaximumNetworkInterfaces"], net["Ipv4AddressesPerInterface"]) == (enis, ips)


def test_attach_and_detach_callbacks(lab: Ec2Lab, topo: topology.Topology, ec2_client: Any) -> None:
    seen: list[tuple[str, AttachmentEvent]] = []
    on_a = lab.on_attach(lambda e: seen.append(("attach", e)))
    on_d = lab.on_detach(lambda e: seen.append(("detach", e)))
    try:
        node = topo.run_instance("c5.xlarge")
        eni = ec2_client.create_network_interface(SubnetId=topo.pod_subnet())["NetworkInterface"]
        att = ec2_client.attach_network_interface(
            NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=node.instance_id, DeviceIndex=1
        )
        ec2_client.detach_network_interface(AttachmentId=att["AttachmentId"])
        assert [k for k, _ in seen] == ["attach", "detach"]
        event = seen[0][1]
        assert (event.instance_id, event.eni_id, event.mac, event.device_index) == (
            node.instance_id,
            eni["NetworkInterfaceId"],
            eni["MacAddress"],
            1,
        )
        assert event.attachment_id == att["AttachmentId"]
        assert seen[1][1].reason == "detach"
    finally:
        lab.remove_callback(on_a)
        lab.remove_callback(on_d)


def test_terminate_fires_detach_events(
    lab: Ec2Lab, topo: topology.Topology, ec2_client: Any
) -> None:
    seen: list[AttachmentEvent] = []
    cb = lab.on_detach(seen.append)
    try:
        node = topo.run_instance("c5.xlarge")
        kept = ec2_client.create_network_interface(SubnetId=topo.pod_subnet())["NetworkInterface"]
        ec2_client.attach_network_interface(
            NetworkInterfaceId=kept["NetworkInterfaceId"],
            InstanceId=node.instance_id,
            DeviceIndex=1,
        )
        ec2_client.terminate_instances(InstanceIds=[node.instance_id])
        reasons = {e.eni_id: e.reason for e in seen}
        assert reasons == {
            node.eni_id: "delete-on-termination",
            kept["NetworkInterfaceId"]: "terminate",
        }
    finally:
        lab.remove_callback(cb)


def test_profiles() -> None:
    assert get_profile("zero") is ZERO
    assert get_profile("aws-like") is AWS_LIKE
    assert all(getattr(ZERO, f) == 0 for f in ("attach_visible_delay", "imds_lag"))
    assert AWS_LIKE.latency("AssignPrivateIpAddresses").mean == pytest.approx(0.5)
    assert AWS_LIKE.latency("CreateNetworkInterface").mean >= 1.0
    assert AWS_LIKE.attach_visible_delay > 0 and AWS_LIKE.imds_lag > 0
    custom = ZERO.with_overrides(name="x", imds_lag=1.5)
    assert isinstance(custom, LatencyProfile) and custom.imds_lag == 1.5
    with pytest.raises(ValueError, match="unknown latency profile"):
        get_profile("nope")
