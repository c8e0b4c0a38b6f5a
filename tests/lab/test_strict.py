"""Strictness rules: each test runs against the lab *and* against an unmodified moto server.

The ``endpoint`` fixture is parametrised: for ``lab`` the test asserts AWS's behaviour
(aws-reference.md §3); for ``plain`` it asserts the moto 5.2.5 gap measured in harness.md §3 -- so
every rule here is shown to fail on plain moto and to hold on the lab. Everything goes over HTTP
through botocore, the real wire.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from .conftest import Endpoint, make_client


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response: Any = exc.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def new_eni(ep: Endpoint, subnet: str | None = None, **kwargs: Any) -> dict[str, Any]:
    eni: dict[str, Any] = ep.client.create_network_interface(
        SubnetId=subnet or ep.topo.pod_subnet(), **kwargs
    )["NetworkInterface"]
    return eni


def attach(ep: Endpoint, eni_id: str, instance_id: str, index: int) -> str:
    out: str = ep.client.attach_network_interface(
        NetworkInterfaceId=eni_id, InstanceId=instance_id, DeviceIndex=index
    )["AttachmentId"]
    return out


def describe_eni(ep: Endpoint, eni_id: str) -> dict[str, Any]:
    eni: dict[str, Any] = ep.client.describe_network_interfaces(NetworkInterfaceIds=[eni_id])[
        "NetworkInterfaces"
    ][0]
    return eni


def ips_of(eni: dict[str, Any]) -> list[str]:
    return [a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"]]


# -- ENIs per instance -----------------------------------------------------------------------------
def test_attachment_limit_from_instance_type(endpoint: Endpoint) -> None:
    node = endpoint.topo.run_instance("c5.xlarge")  # 4 ENIs
    for index in (1, 2, 3):
        attach(endpoint, new_eni(endpoint)["NetworkInterfaceId"], node.instance_id, index)
    fifth = new_eni(endpoint)["NetworkInterfaceId"]
    if endpoint.lab:
        with pytest.raises(ClientError) as exc:
            attach(endpoint, fifth, node.instance_id, 4)
        assert error(exc) == (
            "AttachmentLimitExceeded",
            "Interface count 5 exceeds the limit for c5.xlarge",
            400,
        )
        assert describe_eni(endpoint, fifth)["Status"] == "available"
    else:  # moto: no limit at all
        attach(endpoint, fifth, node.instance_id, 4)
        assert describe_eni(endpoint, fifth)["Status"] == "in-use"


# -- IPv4 addresses per ENI ------------------------------------------------------------------------
def test_private_ip_limit_counts_existing_plus_new_all_or_nothing(endpoint: Endpoint) -> None:
    node = endpoint.topo.run_instance("c5.xlarge")  # 15 IPv4 per ENI
    eni = new_eni(endpoint, SecondaryPrivateIpAddressCount=10)  # 11 slots used
    eni_id = eni["NetworkInterfaceId"]
    attach(endpoint, eni_id, node.instance_id, 1)
    if endpoint.lab:
        with pytest.raises(ClientError) as exc:
            endpoint.client.assign_private_ip_addresses(
                NetworkInterfaceId=eni_id, SecondaryPrivateIpAddressCount=5
            )
        assert error(exc) == (
            "PrivateIpAddressLimitExceeded",
            "Number of private addresses will exceed limit.",
            400,
        )
        assert len(ips_of(describe_eni(endpoint, eni_id))) == 11  # nothing was assigned
        endpoint.client.assign_private_ip_addresses(
            NetworkInterfaceId=eni_id, SecondaryPrivateIpAddressCount=4
        )
        assert len(ips_of(describe_eni(endpoint, eni_id))) == 15
        # The primary ENI counts its primary address too.
        with pytest.raises(ClientError) as exc:
            endpoint.client.assign_private_ip_addresses(
                NetworkInterfaceId=node.eni_id, SecondaryPrivateIpAddressCount=15
            )
        assert error(exc)[0] == "PrivateIpAddressLimitExceeded"
    else:  # moto: 27 addresses on a c5.xlarge ENI
        endpoint.client.assign_private_ip_addresses(
            NetworkInterfaceId=eni_id, SecondaryPrivateIpAddressCount=16
        )
        assert len(ips_of(describe_eni(endpoint, eni_id))) == 27


def test_create_over_the_largest_per_eni_limit(endpoint: Endpoint) -> None:
    if endpoint.lab:
        with pytest.raises(ClientError) as exc:
            new_eni(endpoint, SecondaryPrivateIpAddressCount=50)
        assert error(exc)[0] == "PrivateIpAddressLimitExceeded"
    else:
        assert len(ips_of(new_eni(endpoint, SecondaryPrivateIpAddressCount=50))) == 51


def test_attach_checks_the_enis_addresses_against_the_type(endpoint: Endpoint) -> None:
    node = endpoint.topo.run_instance("t3.small")  # 4 IPv4 per ENI
    eni_id = new_eni(endpoint, SecondaryPrivateIpAddressCount=5)["NetworkInterfaceId"]
    if endpoint.lab:
        with pytest.raises(ClientError) as exc:
            attach(endpoint, eni_id, node.instance_id, 1)
        assert error(exc)[0] == "InvalidInterface.IpAddressLimitExceeded"
    else:
        attach(endpoint, eni_id, node.instance_id, 1)


# -- device index ----------------------------------------------------------------------------------
def test_device_index_must_be_free(endpoint: Endpoint) -> None:
    node = endpoint.topo.run_instance("c5.xlarge")
    first = new_eni(endpoint)["NetworkInterfaceId"]
    second = new_eni(endpoint)["NetworkInterfaceId"]
    attach(endpoint, first, node.instance_id, 1)
    if endpoint.lab:
        with pytest.raises(ClientError) as exc:
            attach(endpoint, second, node.instance_id, 1)
        assert error(exc) == (
            "InvalidParameterValue",
            f"Instance '{node.instance_id}' already has an interface attached at device index '1'.",
            400,
        )
    else:  # moto: accepted; the earlier ENI is silently replaced in the instance's map
        attach(endpoint, second, node.instance_id, 1)
        assert describe_eni(endpoint, first)["Attachment"]["DeviceIndex"] == 1
        assert describe_eni(endpoint, second)["Attachment"]["DeviceIndex"] == 1


def test_attach_an_eni_that_is_already_attached(endpoint: Endpoint) -> None:
    a = endpoint.topo.run_instance("c5.xlarge")
    b = endpoint.topo.run_instance("c5.xlarge")
    eni = new_eni(endpoint)["NetworkInterfaceId"]
    attach(endpoint, eni, a.instance_id, 1)
    if endpoint.lab:
        with pytest.raises(ClientError) as exc:
            attach(endpoint, eni, b.instance_id, 1)
        assert error(exc) == ("InvalidNetworkInterface.InUse", f"Interface: [{eni}] in use.", 400)
    else:
        attach(endpoint, eni, b.instance_id, 1)
        assert describe_eni(endpoint, eni)["Attachment"]["InstanceId"] == b.instance_id


# -- addresses in a subnet -------------------------------------------------------------------------
def test_no_duplicate_private_ip_in_a_subnet(endpoint: Endpoint) -> None:
    owner = new_eni(endpoint, SecondaryPrivateIpAddressCount=1)
    taken = ips_of(owner)[1]
    other = new_eni(endpoint)["NetworkInterfaceId"]
    if endpoint.lab:
        with pytest.raises(ClientError) as exc:
            endpoint.client.assign_private_ip_addresses(
                NetworkInterfaceId=other, PrivateIpAddresses=[taken]
            )
        assert error(exc) == (
            "InvalidIPAddress.InUse",
            "The specified address is already in use.",
            400,
        )
        with pytest.raises(ClientError) as exc:
            new_eni(endpoint, PrivateIpAddress=owner["PrivateIpAddress"])
        assert error(exc)[0] == "InvalidIPAddress.InUse"
        # AllowReassignment moves it instead.
        endpoint.client.assign_private_ip_addresses(
            NetworkInterfaceId=other, PrivateIpAddresses=[taken], AllowReassignment=True
        )
        assert taken in ips_of(describe_eni(endpoint, other))
        assert taken not in ips_of(describe_eni(endpoint, owner["NetworkInterfaceId"]))
    else:  # moto: the same address on two ENIs
        endpoint.client.assign_private_ip_addresses(
            NetworkInterfaceId=other, PrivateIpAddresses=[taken]
        )
        assert taken in ips_of(describe_eni(endpoint, other))
        assert taken in ips_of(describe_eni(endpoint, owner["NetworkInterfaceId"]))


def test_subnet_exhaustion_with_five_reserved_addresses(endpoint: Endpoint) -> None:
    tiny = endpoint.client.create_subnet(
        VpcId=endpoint.topo.vpc_id, CidrBlock="10.0.200.0/28", AvailabilityZone="us-east-1a"
    )["Subnet"]
    assert tiny["AvailableIpAddressCount"] == 11  # 16 - network, router, DNS, future, broadcast
    eni = new_eni(endpoint, tiny["SubnetId"], SecondaryPrivateIpAddressCount=8)  # 9 used
    assert all(ip.rsplit(".", 1)[1] not in {"0", "1", "2", "3", "15"} for ip in ips_of(eni)) or (
        not endpoint.lab
    )

    def free() -> int:
        subnet = endpoint.client.describe_subnets(SubnetIds=[tiny["SubnetId"]])["Subnets"][0]
        count: int = subnet["AvailableIpAddressCount"]
        return count

    if endpoint.lab:
        with pytest.raises(ClientError) as exc:
            endpoint.client.assign_private_ip_addresses(
                NetworkInterfaceId=eni["NetworkInterfaceId"], SecondaryPrivateIpAddressCount=3
            )
        assert error(exc) == (
            "InsufficientFreeAddressesInSubnet",
            "The specified subnet does not have enough free addresses to satisfy the request.",
            400,
        )
        assert free() == 2
        new_eni(endpoint, tiny["SubnetId"], SecondaryPrivateIpAddressCount=1)
        assert free() == 0
        with pytest.raises(ClientError) as exc:
            new_eni(endpoint, tiny["SubnetId"])
        assert error(exc) == (
            "InvalidParameterValue",
            "There aren't sufficient free Ipv4 addresses or prefixes",
            400,
        )
    else:  # moto: the free count goes negative
        endpoint.client.assign_private_ip_addresses(
            NetworkInterfaceId=eni["NetworkInterfaceId"], SecondaryPrivateIpAddressCount=5
        )
        assert free() < 0


def test_explicit_address_must_be_a_usable_subnet_address(endpoint: Endpoint) -> None:
    eni = new_eni(endpoint)["NetworkInterfaceId"]
    # 10.0.16.2 is the pod subnet's DNS address; 10.99.0.9 is not in the subnet at all.
    for address in ("10.0.16.2", "10.99.0.9"):
        if endpoint.lab:
            with pytest.raises(ClientError) as exc:
                endpoint.client.assign_private_ip_addresses(
                    NetworkInterfaceId=eni, PrivateIpAddresses=[address]
                )
            assert error(exc)[0] == "InvalidParameterValue"
        else:
            endpoint.client.assign_private_ip_addresses(
                NetworkInterfaceId=eni, PrivateIpAddresses=[address]
            )


# -- Assign's answer -------------------------------------------------------------------------------
def test_assign_lists_only_the_new_addresses(endpoint: Endpoint) -> None:
    eni = new_eni(endpoint, SecondaryPrivateIpAddressCount=1)
    before = set(ips_of(eni))
    out = endpoint.client.assign_private_ip_addresses(
        NetworkInterfaceId=eni["NetworkInterfaceId"], SecondaryPrivateIpAddressCount=2
    )
    listed = [a["PrivateIpAddress"] for a in out["AssignedPrivateIpAddresses"]]
    after = set(ips_of(describe_eni(endpoint, eni["NetworkInterfaceId"])))
    if endpoint.lab:
        assert len(listed) == 2
        assert set(listed) == after - before
    else:  # moto: every address of the ENI, primary included
        assert set(listed) == after
        assert len(listed) == 4


# -- Unassign --------------------------------------------------------------------------------------
def test_unassign_unknown_or_primary_address(endpoint: Endpoint) -> None:
    eni = new_eni(endpoint, SecondaryPrivateIpAddressCount=1)
    eni_id = eni["NetworkInterfaceId"]
    primary, secondary = ips_of(eni)
    if endpoint.lab:
        with pytest.raises(ClientError) as exc:
            endpoint.client.unassign_private_ip_addresses(
                NetworkInterfaceId=eni_id, PrivateIpAddresses=[secondary, "10.0.16.200"]
            )
        assert error(exc) == (
            "InvalidParameterValue",
            f"Some of the specified addresses are not assigned to interface {eni_id}",
            400,
        )
        assert secondary in ips_of(describe_eni(endpoint, eni_id))  # whole call failed
        with pytest.raises(ClientError) as exc:
            endpoint.client.unassign_private_ip_addresses(
                NetworkInterfaceId=eni_id, PrivateIpAddresses=[primary]
            )
        code, message, _ = error(exc)
        assert code == "InvalidParameterValue"
        assert message.endswith("The primary IP address of an interface cannot be unassigned.")
    else:  # moto: unknown address ignored silently, primary removed
        endpoint.client.unassign_private_ip_addresses(
            NetworkInterfaceId=eni_id, PrivateIpAddresses=[secondary, "10.0.16.200"]
        )
        endpoint.client.unassign_private_ip_addresses(
            NetworkInterfaceId=eni_id, PrivateIpAddresses=[primary]
        )
        assert ips_of(describe_eni(endpoint, eni_id)) == []


# -- DeleteOnTermination ---------------------------------------------------------------------------
def test_delete_on_termination_is_honoured(endpoint: Endpoint) -> None:
    node = endpoint.topo.run_instance("c5.xlarge")
    doomed = new_eni(endpoint)["NetworkInterfaceId"]
    kept = new_eni(endpoint)["NetworkInterfaceId"]
    att = attach(endpoint, doomed, node.instance_id, 1)
    attach(endpoint, kept, node.instance_id, 2)
    assert describe_eni(endpoint, doomed)["Attachment"]["DeleteOnTermination"] is False
    endpoint.client.modify_network_interface_attribute(
        NetworkInterfaceId=doomed,
        Attachment={"AttachmentId": att, "DeleteOnTermination": True},
    )
    flag = describe_eni(endpoint, doomed)["Attachment"]["DeleteOnTermination"]
    endpoint.client.terminate_instances(InstanceIds=[node.instance_id])
    left = {
        e["NetworkInterfaceId"]: e
        for e in endpoint.client.describe_network_interfaces()["NetworkInterfaces"]
    }
    if endpoint.lab:
        assert flag is True
        assert doomed not in left
        assert node.eni_id not in left  # launched with the instance: deleted with it
        assert left[kept]["Status"] == "available"  # detached, not deleted
        assert "Attachment" not in left[kept]
    else:  # moto: the flag is ignored; the ENI survives and stays "in-use" on a dead instance
        assert flag is False
        assert doomed in left
        assert left[kept]["Status"] == "in-use"


# -- Delete / Detach -------------------------------------------------------------------------------
def test_delete_attached_eni_is_refused(endpoint: Endpoint) -> None:
    node = endpoint.topo.run_instance("c5.xlarge")
    eni = new_eni(endpoint)["NetworkInterfaceId"]
    attach(endpoint, eni, node.instance_id, 1)
    if endpoint.lab:
        with pytest.raises(ClientError) as exc:
            endpoint.client.delete_network_interface(NetworkInterfaceId=eni)
        assert error(exc) == (
            "InvalidParameterValue",
            f"Network interface '{eni}' is currently in use.",
            400,
        )
    else:
        endpoint.client.delete_network_interface(NetworkInterfaceId=eni)


def test_detach_primary_is_refused(endpoint: Endpoint) -> None:
    node = endpoint.topo.run_instance("c5.xlarge")
    attach(endpoint, new_eni(endpoint)["NetworkInterfaceId"], node.instance_id, 1)
    if endpoint.lab:
        with pytest.raises(ClientError) as exc:
            endpoint.client.detach_network_interface(AttachmentId=node.attachment_id)
        assert error(exc) == (
            "OperationNotPermitted",
            "The network interface at device index 0 and networkCard index 0 cannot be detached.",
            400,
        )
    else:
        endpoint.client.detach_network_interface(AttachmentId=node.attachment_id)
        assert describe_eni(endpoint, node.eni_id)["Status"] == "available"


# -- filters ---------------------------------------------------------------------------------------
def test_filter_attachment_device_index(endpoint: Endpoint) -> None:
    node = endpoint.topo.run_instance("c5.xlarge")
    eni = new_eni(endpoint)["NetworkInterfaceId"]
    attach(endpoint, eni, node.instance_id, 2)
    filters = [
        {"Name": "attachment.device-index", "Values": ["2"]},
        {"Name": "attachment.instance-id", "Values": [node.instance_id]},
    ]
    if endpoint.lab:
        got = endpoint.client.describe_network_interfaces(Filters=filters)["NetworkInterfaces"]
        assert [e["NetworkInterfaceId"] for e in got] == [eni]
    else:  # moto: FilterNotImplementedError -> HTTP 500 -> botocore cannot even parse it
        with pytest.raises(Exception) as exc:
            endpoint.client.describe_network_interfaces(Filters=filters)
        assert (
            "500" in str(exc.value)
            or "InternalError" in str(exc.value)
            or (type(exc.value).__name__ == "ResponseParserError")
        )


def test_filter_private_ip_matches_secondary_addresses(endpoint: Endpoint) -> None:
    eni = new_eni(endpoint, SecondaryPrivateIpAddressCount=2)
    secondary = ips_of(eni)[2]
    found = {}
    for name in ("addresses.private-ip-address", "private-ip-address"):
        got = endpoint.client.describe_network_interfaces(
            Filters=[{"Name": name, "Values": [secondary]}]
        )["NetworkInterfaces"]
        found[name] = [e["NetworkInterfaceId"] for e in got]
    if endpoint.lab:
        assert found == {k: [eni["NetworkInterfaceId"]] for k in found}
    else:  # moto: primary address only
        assert found == {k: [] for k in found}


def test_filters_that_moto_already_gets_right(endpoint: Endpoint) -> None:
    """Regression guard (no moto gap): tags and attachment.instance-id behave on both."""
    node = endpoint.topo.run_instance("c5.xlarge")
    tagged = new_eni(
        endpoint,
        TagSpecifications=[
            {"ResourceType": "network-interface", "Tags": [{"Key": "cnivpc", "Value": "pod-eni"}]}
        ],
    )["NetworkInterfaceId"]
    attach(endpoint, tagged, node.instance_id, 1)
    by_tag = endpoint.client.describe_network_interfaces(
        Filters=[{"Name": "tag:cnivpc", "Values": ["pod-eni"]}]
    )["NetworkInterfaces"]
    assert [e["NetworkInterfaceId"] for e in by_tag] == [tagged]
    by_key = endpoint.client.describe_network_interfaces(
        Filters=[{"Name": "tag-key", "Values": ["cnivpc"]}]
    )["NetworkInterfaces"]
    assert [e["NetworkInterfaceId"] for e in by_key] == [tagged]
    on_node = endpoint.client.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": [node.instance_id]}]
    )["NetworkInterfaces"]
    assert {e["NetworkInterfaceId"] for e in on_node} == {node.eni_id, tagged}


# -- pagination ------------------------------------------------------------------------------------
def test_describe_network_interfaces_paginates(endpoint: Endpoint) -> None:
    made = {new_eni(endpoint)["NetworkInterfaceId"] for _ in range(7)}
    flt = [{"Name": "subnet-id", "Values": [endpoint.topo.pod_subnet()]}]
    first = endpoint.client.describe_network_interfaces(Filters=flt, MaxResults=5)
    if endpoint.lab:
        assert len(first["NetworkInterfaces"]) == 5 and first.get("NextToken")
        second = endpoint.client.describe_network_interfaces(
            Filters=flt, MaxResults=5, NextToken=first["NextToken"]
        )
        assert len(second["NetworkInterfaces"]) == 2 and not second.get("NextToken")
        seen = {e["NetworkInterfaceId"] for e in first["NetworkInterfaces"]} | {
            e["NetworkInterfaceId"] for e in second["NetworkInterfaces"]
        }
        assert seen == made
        paginator = endpoint.client.get_paginator("describe_network_interfaces")
        pages = list(paginator.paginate(Filters=flt, PaginationConfig={"PageSize": 5}))
        assert [len(p["NetworkInterfaces"]) for p in pages] == [5, 2]
    else:  # moto: MaxResults ignored, everything at once, no NextToken
        assert len(first["NetworkInterfaces"]) == 7 and "NextToken" not in first


def test_max_results_bounds(endpoint: Endpoint) -> None:
    eni = new_eni(endpoint)["NetworkInterfaceId"]
    calls: list[dict[str, Any]] = [
        {"MaxResults": 4},
        {"MaxResults": 1001},
        {"MaxResults": 5, "NetworkInterfaceIds": [eni]},
    ]
    # botocore refuses MaxResults < 5 client-side; switch that off to reach the server.
    client = make_client(endpoint.url, validate=False)
    for kwargs in calls:
        if endpoint.lab:
            with pytest.raises(ClientError) as exc:
                client.describe_network_interfaces(**kwargs)
            code = error(exc)[0]
            wanted = (
                "InvalidParameterCombination"
                if "NetworkInterfaceIds" in kwargs
                else ("InvalidParameterValue")
            )
            assert code == wanted
        else:
            client.describe_network_interfaces(**kwargs)


def test_describe_subnets_and_instance_types_paginate(endpoint: Endpoint) -> None:
    subnets = endpoint.client.describe_subnets(MaxResults=5)
    # A filter keeps moto's answer small (all ~1400 types take seconds to serialise).
    c5 = [{"Name": "instance-type", "Values": ["c5.*"]}]
    types = endpoint.client.describe_instance_types(MaxResults=5, Filters=c5)
    if endpoint.lab:
        assert len(subnets["Subnets"]) == 5 and subnets.get("NextToken")
        assert len(types["InstanceTypes"]) == 5 and types.get("NextToken")
        nxt = endpoint.client.describe_instance_types(
            MaxResults=5, Filters=c5, NextToken=types["NextToken"]
        )
        assert all(t["InstanceType"].startswith("c5.") for t in nxt["InstanceTypes"])
        assert {t["InstanceType"] for t in nxt["InstanceTypes"]}.isdisjoint(
            {t["InstanceType"] for t in types["InstanceTypes"]}
        )
        with pytest.raises(ClientError) as exc:
            make_client(endpoint.url, validate=False).describe_instance_types(MaxResults=101)
        assert error(exc)[0] == "InvalidParameterValue"
    else:
        assert len(subnets["Subnets"]) > 5 and "NextToken" not in subnets
        assert len(types["InstanceTypes"]) > 5 and "NextToken" not in types


def test_attach_across_availability_zones(endpoint: Endpoint) -> None:
    node = endpoint.topo.run_instance("c5.xlarge")  # us-east-1a
    other_az = new_eni(endpoint, endpoint.topo.pod_subnet("us-east-1b"))["NetworkInterfaceId"]
    if endpoint.lab:
        with pytest.raises(ClientError) as exc:
            attach(endpoint, other_az, node.instance_id, 1)
        assert error(exc)[0] == "InvalidParameterCombination"
    else:
        attach(endpoint, other_az, node.instance_id, 1)
