"""IPv6 and the AWS service prefix lists in the lab, over the wire (botocore -> HTTP -> lab).

The ``endpoint`` tests also run against an unmodified moto server and assert its gap; the others
are lab-only. What is checked: the standard topology's VPC has an Amazon-provided /56 and every
subnet a /64 of it (and ``ipv6=False`` keeps an IPv4-only VPC); AssignIpv6Addresses hands out free
addresses of the ENI's /64 (never the reserved ones, never another ENI's) and /80 prefixes,
answers with only the new ones, counts addresses and prefixes against the type's
``Ipv6AddressesPerInterface`` and takes prefixes on Nitro types only; UnassignIpv6Addresses is all
or nothing; CreateNetworkInterface takes IPv6 too; IMDS lists ``ipv6s``/``ipv6-prefix`` with the
same lag as IPv4 and the subnet and VPC IPv6 blocks; the S3 and DynamoDB prefix lists of the lab's
region hold the lab's CIDRs in all three prefix-list calls.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cnivpc.lab.ec2 import Ec2Lab, topology
from cnivpc.lab.ec2.rules6 import SERVICE_CIDRS
from cnivpc.lab.imds import ImdsServer, moto_source
from tests.fabric.imdsutil import meta

from .conftest import REGION, Endpoint
from .test_strict import attach, error, new_eni

LIMIT = ("PrivateIpAddressLimitExceeded", "Number of IPv6 addresses will exceed limit.", 400)


def v6_of(eni: dict[str, Any]) -> list[str]:
    return [a["Ipv6Address"] for a in eni.get("Ipv6Addresses", [])]


def v6_prefixes_of(eni: dict[str, Any]) -> list[str]:
    return [p["Ipv6Prefix"] for p in eni.get("Ipv6Prefixes", [])]


def describe(client: Any, eni_id: str) -> dict[str, Any]:
    out: dict[str, Any] = client.describe_network_interfaces(NetworkInterfaceIds=[eni_id])[
        "NetworkInterfaces"][0]
    return out


def attached(client: Any, topo: topology.Topology, instance_type: str = "m5.large") -> str:
    node = topo.run_instance(instance_type)
    eni: str = client.create_network_interface(SubnetId=topo.pod_subnet())["NetworkInterface"][
        "NetworkInterfaceId"]
    client.attach_network_interface(NetworkInterfaceId=eni, InstanceId=node.instance_id,
                                    DeviceIndex=1)
    return eni


def usable(address: str, subnet_cidr: str) -> bool:
    net = ipaddress.IPv6Network(subnet_cidr)
    addr = ipaddress.IPv6Address(address)
    return addr in net and int(addr) - int(net.network_address) >= 4 and (
        addr != net.broadcast_address)


# -- the VPC and its subnets -----------------------------------------------------------------------
def test_vpc_gets_a_56_and_each_subnet_a_64(ec2_client: Any, topo: topology.Topology) -> None:
    vpc = ec2_client.describe_vpcs(VpcIds=[topo.vpc_id])["Vpcs"][0]
    blocks = [a["Ipv6CidrBlock"] for a in vpc["Ipv6CidrBlockAssociationSet"]]
    assert [a["Ipv6CidrBlockState"]["State"] for a in vpc["Ipv6CidrBlockAssociationSet"]] == [
        "associated"]
    assert blocks == [topo.vpc_ipv6_cidr]
    vpc_net = ipaddress.IPv6Network(blocks[0])
    assert vpc_net.prefixlen == 56
    subnets = ec2_client.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [topo.vpc_id]}])
    seen = set()
    for subnet in subnets["Subnets"]:
        (assoc,) = subnet["Ipv6CidrBlockAssociationSet"]
        assert assoc["Ipv6CidrBlockState"] == {"State": "associated"}
        net = ipaddress.IPv6Network(assoc["Ipv6CidrBlock"])
        assert net.prefixlen == 64 and net.subnet_of(vpc_net)
        assert topo.subnet_ipv6[subnet["SubnetId"]] == str(net)
        seen.add(net)
    assert len(seen) == 4  # two AZs x (node, pod), all distinct


def test_ipv4_only_labs_have_no_ipv6(lab: Ec2Lab, ec2_client: Any) -> None:
    topo = topology.create(lab, ipv6=False)
    vpc = ec2_client.describe_vpcs(VpcIds=[topo.vpc_id])["Vpcs"][0]
    assert not vpc.get("Ipv6CidrBlockAssociationSet")
    eni = ec2_client.create_network_interface(SubnetId=topo.pod_subnet())["NetworkInterface"]
    with pytest.raises(ClientError) as exc:
        ec2_client.assign_ipv6_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                         Ipv6AddressCount=1)
    # moto: HTTP 500 (no IPv6 block to pick from)
    assert error(exc) == ("InvalidParameterValue",
                          f"Subnet {topo.pod_subnet()} does not have an associated IPv6 CIDR "
                          "block.", 400)


# -- addresses -------------------------------------------------------------------------------------
def test_assign_addresses_lists_only_the_new_ones(ec2_client: Any,
                                                  topo: topology.Topology) -> None:
    eni = attached(ec2_client, topo)
    first = ec2_client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=3)
    second = ec2_client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=2)
    assert len(first["AssignedIpv6Addresses"]) == 3 and len(second["AssignedIpv6Addresses"]) == 2
    both = first["AssignedIpv6Addresses"] + second["AssignedIpv6Addresses"]
    assert len(set(both)) == 5
    assert sorted(v6_of(describe(ec2_client, eni))) == sorted(both)
    cidr = topo.subnet_ipv6[topo.pod_subnet()]
    assert all(usable(a, cidr) for a in both)


def test_explicit_addresses_are_checked(ec2_client: Any, topo: topology.Topology) -> None:
    eni = attached(ec2_client, topo)
    other = attached(ec2_client, topo)
    net = ipaddress.IPv6Network(topo.subnet_ipv6[topo.pod_subnet()])
    chosen = str(net.network_address + 0x1234)
    out = ec2_client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6Addresses=[chosen])
    assert out["AssignedIpv6Addresses"] == [chosen]
    cases = [
        ([chosen], other, ("InvalidIPAddress.InUse", "The specified address is already in use.")),
        ([str(net.network_address + 2)], other,
         ("InvalidParameterValue",
          f"Address {net.network_address + 2} is in subnet's reserved address range")),
        (["2001:db8::1"], other,
         ("InvalidParameterValue", "Address 2001:db8::1 does not fall within the subnet's "
          f"address range ({topo.pod_subnet()}).")),
        (["not-an-address"], other,
         ("InvalidParameterValue", "Invalid IPv6 address: not-an-address")),
    ]
    for addresses, target, (code, message) in cases:
        with pytest.raises(ClientError) as exc:
            ec2_client.assign_ipv6_addresses(NetworkInterfaceId=target, Ipv6Addresses=addresses)
        assert error(exc) == (code, message, 400)
    assert v6_of(describe(ec2_client, other)) == []


def test_the_per_eni_limit_counts_addresses_and_prefixes(ec2_client: Any,
                                                         topo: topology.Topology) -> None:
    eni = attached(ec2_client, topo)  # m5.large: 10 IPv6 per ENI
    ec2_client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=6)
    ec2_client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6PrefixCount=3)
    for extra in ({"Ipv6AddressCount": 2}, {"Ipv6PrefixCount": 2}):
        with pytest.raises(ClientError) as exc:
            ec2_client.assign_ipv6_addresses(NetworkInterfaceId=eni, **extra)
        assert error(exc) == LIMIT
    ec2_client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=1)  # the 10th
    described = describe(ec2_client, eni)
    assert len(v6_of(described)) == 7 and len(v6_prefixes_of(described)) == 3
    types = ec2_client.describe_instance_types(InstanceTypes=["m5.large"])["InstanceTypes"]
    assert types[0]["NetworkInfo"]["Ipv6AddressesPerInterface"] == 10
    assert types[0]["NetworkInfo"]["Ipv6Supported"] is True


def test_unassign_is_all_or_nothing(ec2_client: Any, topo: topology.Topology) -> None:
    eni = attached(ec2_client, topo)
    held = ec2_client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=2)[
        "AssignedIpv6Addresses"]
    prefix = ec2_client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6PrefixCount=1)[
        "AssignedIpv6Prefixes"]
    net = ipaddress.IPv6Network(topo.subnet_ipv6[topo.pod_subnet()])
    stranger = str(net.network_address + 0x77)
    with pytest.raises(ClientError) as exc:
        ec2_client.unassign_ipv6_addresses(NetworkInterfaceId=eni,
                                           Ipv6Addresses=[held[0], stranger])
    assert error(exc)[:2] == ("InvalidParameterValue",
                              f"Some of the specified addresses are not assigned to interface "
                              f"{eni}")
    assert sorted(v6_of(describe(ec2_client, eni))) == sorted(held)  # nothing removed
    out = ec2_client.unassign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6Addresses=[held[0]],
                                             Ipv6Prefixes=prefix)
    assert out["UnassignedIpv6Addresses"] == [held[0]]
    assert out["UnassignedIpv6Prefixes"] == prefix
    described = describe(ec2_client, eni)
    assert v6_of(described) == [held[1]] and v6_prefixes_of(described) == []


# -- /80 prefixes ----------------------------------------------------------------------------------
def test_prefixes_are_free_aligned_80s(ec2_client: Any, topo: topology.Topology) -> None:
    eni = attached(ec2_client, topo)
    addresses = ec2_client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=2)[
        "AssignedIpv6Addresses"]
    out = ec2_client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6PrefixCount=4)
    assert "AssignedIpv6Addresses" not in out or out["AssignedIpv6Addresses"] == []
    prefixes = out["AssignedIpv6Prefixes"]
    subnet = ipaddress.IPv6Network(topo.subnet_ipv6[topo.pod_subnet()])
    blocks = [ipaddress.IPv6Network(p) for p in prefixes]  # strict: host bits zero
    assert len(set(blocks)) == 4
    for block in blocks:
        assert block.prefixlen == 80 and block.subnet_of(subnet)
        assert block.network_address != subnet.network_address  # holds no reserved address
        assert not any(ipaddress.IPv6Address(a) in block for a in addresses)
    assert v6_prefixes_of(describe(ec2_client, eni)) == prefixes
    # a caller-chosen prefix must be a free /80 of the subnet
    taken = prefixes[0]
    other = attached(ec2_client, topo)
    for bad, code in ((taken, "InvalidIPAddress.InUse"),
                      (str(subnet.network_address) + "/80", "InvalidParameterValue"),
                      (str(subnet.network_address + (1 << 48)) + "/96", "InvalidParameterValue")):
        with pytest.raises(ClientError) as exc:
            ec2_client.assign_ipv6_addresses(NetworkInterfaceId=other, Ipv6Prefixes=[bad])
        assert error(exc)[0] == code
    free = str(ipaddress.IPv6Network((int(subnet.network_address) + (0xBEEF << 48), 80)))
    if free not in prefixes:
        got = ec2_client.assign_ipv6_addresses(NetworkInterfaceId=other, Ipv6Prefixes=[free])
        assert got["AssignedIpv6Prefixes"] == [free]


def test_prefixes_on_nitro_only_and_one_mode_per_call(ec2_client: Any,
                                                       topo: topology.Topology) -> None:
    xen = attached(ec2_client, topo, "m4.large")
    with pytest.raises(ClientError) as exc:
        ec2_client.assign_ipv6_addresses(NetworkInterfaceId=xen, Ipv6PrefixCount=1)
    assert error(exc) == ("InvalidParameterValue", "IPv6 prefix delegation is not supported for "
                          "the instance type 'm4.large'.", 400)
    assert ec2_client.assign_ipv6_addresses(NetworkInterfaceId=xen, Ipv6AddressCount=1)[
        "AssignedIpv6Addresses"]  # addresses are fine on xen
    with pytest.raises(ClientError) as exc:
        ec2_client.assign_ipv6_addresses(NetworkInterfaceId=xen, Ipv6AddressCount=1,
                                         Ipv6PrefixCount=1)
    assert error(exc)[0] == "InvalidParameterCombination"
    # an unattached ENI holding /80s cannot go onto a xen type
    eni = ec2_client.create_network_interface(SubnetId=topo.pod_subnet(), Ipv6PrefixCount=1)[
        "NetworkInterface"]
    node = topo.run_instance("m4.large")
    with pytest.raises(ClientError) as exc:
        ec2_client.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                            InstanceId=node.instance_id, DeviceIndex=1)
    assert error(exc)[0] == "InvalidParameterValue"
    # more IPv6 than the type's per-ENI budget (t3.small: 4) cannot be attached either
    big = ec2_client.create_network_interface(SubnetId=topo.pod_subnet(), Ipv6AddressCount=5)[
        "NetworkInterface"]
    small = topo.run_instance("t3.small")
    with pytest.raises(ClientError) as exc:
        ec2_client.attach_network_interface(NetworkInterfaceId=big["NetworkInterfaceId"],
                                            InstanceId=small.instance_id, DeviceIndex=1)
    assert error(exc)[0] == "InvalidInterface.IpAddressLimitExceeded"


def test_ipv6_at_launch_is_a_loud_lab_gap(ec2_client: Any, topo: topology.Topology) -> None:
    with pytest.raises(ClientError) as exc:
        ec2_client.run_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="m5.large",
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": topo.node_subnet(),
                                "Ipv6AddressCount": 1}])
    assert error(exc)[0] == "LabNotImplemented"


def test_create_network_interface_with_ipv6(ec2_client: Any, topo: topology.Topology) -> None:
    cidr = topo.subnet_ipv6[topo.pod_subnet()]
    eni = ec2_client.create_network_interface(SubnetId=topo.pod_subnet(), Ipv6AddressCount=2)[
        "NetworkInterface"]
    assert len(v6_of(eni)) == 2 and all(usable(a, cidr) for a in v6_of(eni))
    assert v6_of(describe(ec2_client, eni["NetworkInterfaceId"])) == v6_of(eni)
    chosen = str(ipaddress.IPv6Network(cidr).network_address + 0xABC)
    eni2 = ec2_client.create_network_interface(SubnetId=topo.pod_subnet(),
                                               Ipv6Addresses=[{"Ipv6Address": chosen}])[
        "NetworkInterface"]
    assert v6_of(eni2) == [chosen]
    with pytest.raises(ClientError) as exc:  # the same address twice in a subnet
        ec2_client.create_network_interface(SubnetId=topo.pod_subnet(),
                                            Ipv6Addresses=[{"Ipv6Address": chosen}])
    assert error(exc)[0] == "InvalidIPAddress.InUse"
    eni3 = ec2_client.create_network_interface(SubnetId=topo.pod_subnet(), Ipv6PrefixCount=2)[
        "NetworkInterface"]
    assert len(v6_prefixes_of(eni3)) == 2
    assert v6_prefixes_of(describe(ec2_client, eni3["NetworkInterfaceId"])) == v6_prefixes_of(eni3)


# -- IMDS ------------------------------------------------------------------------------------------
def test_imds_lists_ipv6_with_the_address_lag(lab: Ec2Lab, ec2_client: Any,
                                              topo: topology.Topology) -> None:
    node = topo.run_instance("m5.large")
    eni = ec2_client.create_network_interface(SubnetId=topo.pod_subnet())["NetworkInterface"]
    ec2_client.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                        InstanceId=node.instance_id, DeviceIndex=1)
    lag = 2.0
    with ImdsServer(moto_source(lab.backend, lab.lock), lag=lag, remove_lag=lag) as imds:
        url = imds.listen_tcp(node.instance_id)

        def get(path: str) -> tuple[int, str]:
            return meta(url, path)

        mac = f"network/interfaces/macs/{eni['MacAddress']}/"
        deadline = time.monotonic() + 10
        while get(mac + "device-number")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert get(mac + "ipv6s")[0] == 404 and get(mac + "ipv6-prefix")[0] == 404
        assert get(mac + "subnet-ipv6-cidr-blocks") == (200, topo.subnet_ipv6[topo.pod_subnet()])
        assert get(mac + "vpc-ipv6-cidr-blocks") == (200, topo.vpc_ipv6_cidr)
        eni_id = eni["NetworkInterfaceId"]
        addrs = ec2_client.assign_ipv6_addresses(NetworkInterfaceId=eni_id, Ipv6AddressCount=2)[
            "AssignedIpv6Addresses"]
        prefixes = ec2_client.assign_ipv6_addresses(NetworkInterfaceId=eni_id,
                                                    Ipv6PrefixCount=1)["AssignedIpv6Prefixes"]
        assigned_at = time.monotonic()
        wanted = {"ipv6s": "\n".join(addrs), "ipv6-prefix": "\n".join(prefixes)}
        seen_missing = False
        while any(get(mac + k) != (200, v) for k, v in wanted.items()):
            seen_missing = True
            assert time.monotonic() - assigned_at < lag + 10
            time.sleep(0.05)
        assert seen_missing and time.monotonic() - assigned_at >= lag * 0.9


# -- AWS service prefix lists ----------------------------------------------------------------------
def test_service_prefix_lists_hold_the_labs_cidrs(ec2_client: Any,
                                                  topo: topology.Topology) -> None:
    names = {f"com.amazonaws.{REGION}.{s}": s for s in SERVICE_CIDRS}
    managed = ec2_client.describe_managed_prefix_lists(
        Filters=[{"Name": "prefix-list-name", "Values": list(names)}])["PrefixLists"]
    assert sorted(p["PrefixListName"] for p in managed) == sorted(names)
    ids = {}
    for plist in managed:
        assert plist["OwnerId"] == "AWS" and plist["AddressFamily"] == "IPv4"
        entries = ec2_client.get_managed_prefix_list_entries(PrefixListId=plist["PrefixListId"])
        cidrs = [e["Cidr"] for e in entries["Entries"]]
        assert cidrs == list(SERVICE_CIDRS[names[plist["PrefixListName"]]])
        ids[plist["PrefixListName"]] = plist["PrefixListId"]
    old = ec2_client.describe_prefix_lists()["PrefixLists"]
    # the older call: the same ids, with the CIDRs in ``Cidrs`` (moto answers without them)
    assert {p["PrefixListName"]: p["PrefixListId"] for p in old} == ids
    for p in old:
        assert p["Cidrs"] == list(SERVICE_CIDRS[names[p["PrefixListName"]]])
    only = ec2_client.describe_prefix_lists(PrefixListIds=[ids[f"com.amazonaws.{REGION}.s3"]])
    assert [p["PrefixListName"] for p in only["PrefixLists"]] == [f"com.amazonaws.{REGION}.s3"]
    for call in (lambda: ec2_client.get_managed_prefix_list_entries(PrefixListId="pl-00000000"),
                 lambda: ec2_client.describe_prefix_lists(PrefixListIds=["pl-00000000"])):
        with pytest.raises(ClientError) as exc:
            call()
        assert error(exc)[0] == "InvalidPrefixListID.NotFound"


# -- moto's gaps, measured on an unmodified moto server beside the lab ---------------------------
def _attached(ep: Endpoint) -> str:
    node = ep.topo.run_instance("m5.large")
    eni = new_eni(ep)["NetworkInterfaceId"]
    attach(ep, eni, node.instance_id, 1)
    return str(eni)


def test_assign_answers_only_the_new_addresses_and_keeps_the_limit(endpoint: Endpoint) -> None:
    eni = _attached(endpoint)
    first = endpoint.client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=8)
    second = endpoint.client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=2)
    if not endpoint.lab:  # moto: every address of the ENI, and no per-ENI limit
        assert len(second["AssignedIpv6Addresses"]) == 10
        endpoint.client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=5)
        assert len(v6_of(describe(endpoint.client, eni))) == 15  # m5.large allows 10
        return
    assert len(second["AssignedIpv6Addresses"]) == 2
    assert not set(second["AssignedIpv6Addresses"]) & set(first["AssignedIpv6Addresses"])
    with pytest.raises(ClientError) as exc:
        endpoint.client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=1)
    assert error(exc) == LIMIT


def test_prefixes_and_duplicates(endpoint: Endpoint) -> None:
    eni, other = _attached(endpoint), _attached(endpoint)
    out = endpoint.client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6PrefixCount=1)
    mine = endpoint.client.assign_ipv6_addresses(NetworkInterfaceId=eni, Ipv6AddressCount=1)[
        "AssignedIpv6Addresses"][-1]
    if not endpoint.lab:
        # moto: the prefix request is accepted and nothing is assigned; the same address on
        # a second ENI is accepted too
        assert not out.get("AssignedIpv6Prefixes") and v6_prefixes_of(
            describe(endpoint.client, eni)) == []
        endpoint.client.assign_ipv6_addresses(NetworkInterfaceId=other, Ipv6Addresses=[mine])
        assert mine in v6_of(describe(endpoint.client, other))
        return
    assert v6_prefixes_of(describe(endpoint.client, eni)) == out["AssignedIpv6Prefixes"]
    with pytest.raises(ClientError) as exc:
        endpoint.client.assign_ipv6_addresses(NetworkInterfaceId=other, Ipv6Addresses=[mine])
    assert error(exc)[0] == "InvalidIPAddress.InUse"


def test_describe_prefix_lists_carries_the_cidrs(endpoint: Endpoint) -> None:
    lists = endpoint.client.describe_prefix_lists()["PrefixLists"]
    s3 = next(p for p in lists if p["PrefixListName"] == f"com.amazonaws.{REGION}.s3")
    if not endpoint.lab:  # moto: no Cidrs at all (and AWS's real-looking ones elsewhere)
        assert not s3.get("Cidrs")
        return
    assert s3["Cidrs"] == list(SERVICE_CIDRS["s3"])
