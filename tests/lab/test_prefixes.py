"""IPv4 prefix delegation in the lab, as EC2 does it, over the wire (botocore -> HTTP -> lab).

The ``endpoint`` tests also run against an unmodified moto server and assert its gap (moto accepts
``Ipv4Prefix*`` and assigns nothing); the others are lab-only. What is checked: a /28 takes one
IPv4 slot of the ENI (as the primary IP and every secondary IP do), only Nitro-based types take
prefixes, a prefix is an aligned wholly free /28 of the ENI's subnet, a fragmented subnet answers
``InsufficientCidrBlocks`` while it still has free addresses, subnet CIDR reservations steer the
automatic picks, and prefixes show up in DescribeNetworkInterfaces, in the subnet's free count
and in IMDS (``ipv4-prefix``, with the same lag as addresses).
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cnivpc.lab.ec2 import Ec2Lab, topology
from cnivpc.lab.imds import ImdsServer, moto_source
from tests.fabric.imdsutil import meta

from .conftest import Endpoint
from .test_strict import attach, describe_eni, error, ips_of, new_eni

NO_BLOCKS = (
    "InsufficientCidrBlocks",
    "The specified subnet does not have enough free cidr blocks to satisfy the request.",
    400,
)


def prefixes_of(eni: dict[str, Any]) -> list[str]:
    return [p["Ipv4Prefix"] for p in eni.get("Ipv4Prefixes", [])]


def attached_eni(ep: Endpoint, instance_type: str = "m5.large") -> tuple[Any, str]:
    node = ep.topo.run_instance(instance_type)
    eni = new_eni(ep)["NetworkInterfaceId"]
    attach(ep, eni, node.instance_id, 1)
    return node, eni


def assert_free_block(prefix: str, subnet_cidr: str, taken: list[str]) -> None:
    block = ipaddress.IPv4Network(prefix)  # strict: host bits zero, i.e. aligned on 16
    subnet = ipaddress.IPv4Network(subnet_cidr)
    assert block.prefixlen == 28 and block.subnet_of(subnet)
    first, last = subnet.network_address + 3, subnet.broadcast_address
    assert all(a > first and a != last for a in block)  # none of AWS's 5 reserved addresses
    assert not any(ipaddress.IPv4Address(t) in block for t in taken)


# -- slots, Nitro --------------------------------------------------------------------------------
def test_a_prefix_takes_one_slot_of_the_eni(endpoint: Endpoint) -> None:
    _node, eni = attached_eni(endpoint)  # m5.large: 10 IPv4 slots, the primary IP holds one
    out = endpoint.client.assign_private_ip_addresses(NetworkInterfaceId=eni, Ipv4PrefixCount=9)
    described = describe_eni(endpoint, eni)
    if not endpoint.lab:  # moto: accepted, nothing assigned, nothing said
        assert "AssignedIpv4Prefixes" not in out and prefixes_of(described) == []
        return
    assigned = [p["Ipv4Prefix"] for p in out["AssignedIpv4Prefixes"]]
    assert len(assigned) == 9 and not out.get("AssignedPrivateIpAddresses")
    assert prefixes_of(described) == assigned
    assert ips_of(described) == [described["PrivateIpAddress"]]  # no address added
    for prefix in assigned:
        assert_free_block(prefix, "10.0.16.0/20", ips_of(described))
    assert len({ipaddress.IPv4Network(p) for p in assigned}) == 9
    # 1 + 9 = 10 slots: neither one more prefix nor one more address fits; nothing changes
    for extra in ({"Ipv4PrefixCount": 1}, {"SecondaryPrivateIpAddressCount": 1}):
        with pytest.raises(ClientError) as exc:
            endpoint.client.assign_private_ip_addresses(NetworkInterfaceId=eni, **extra)
        assert error(exc) == (
            "PrivateIpAddressLimitExceeded", "Number of private addresses will exceed limit.", 400
        )
    assert prefixes_of(describe_eni(endpoint, eni)) == assigned


def test_addresses_and_prefixes_share_the_slots(lab: Ec2Lab, ec2_client: Any,
                                               topo: topology.Topology) -> None:
    node = topo.run_instance("c5.xlarge")  # 15 slots
    eni = ec2_client.create_network_interface(
        SubnetId=topo.pod_subnet(), SecondaryPrivateIpAddressCount=4
    )["NetworkInterface"]["NetworkInterfaceId"]
    ec2_client.attach_network_interface(NetworkInterfaceId=eni, InstanceId=node.instance_id,
                                        DeviceIndex=1)
    ec2_client.assign_private_ip_addresses(NetworkInterfaceId=eni, Ipv4PrefixCount=10)  # 15
    with pytest.raises(ClientError) as exc:
        ec2_client.assign_private_ip_addresses(NetworkInterfaceId=eni, Ipv4PrefixCount=1)
    assert error(exc)[0] == "PrivateIpAddressLimitExceeded"
    eni_doc = ec2_client.describe_network_interfaces(NetworkInterfaceIds=[eni])[
        "NetworkInterfaces"][0]
    # automatic single addresses never land inside a prefix, nor prefixes on an address
    for prefix in prefixes_of(eni_doc):
        assert_free_block(prefix, "10.0.16.0/20", ips_of(eni_doc))
    # one kind per call
    with pytest.raises(ClientError) as exc:
        ec2_client.assign_private_ip_addresses(
            NetworkInterfaceId=eni, Ipv4PrefixCount=1, SecondaryPrivateIpAddressCount=1
        )
    assert error(exc)[0] == "InvalidParameterCombination"
    with pytest.raises(ClientError) as exc:
        ec2_client.assign_private_ip_addresses(NetworkInterfaceId=eni, Ipv4PrefixCount=0)
    assert error(exc)[:2] == (
        "InvalidParameterValue",
        "Value (0) for parameter Ipv4PrefixCount is invalid. Expecting a value greater than 0.",
    )


def test_only_nitro_types_take_prefixes(endpoint: Endpoint) -> None:
    _node, eni = attached_eni(endpoint, "m4.large")  # Xen
    if not endpoint.lab:
        endpoint.client.assign_private_ip_addresses(NetworkInterfaceId=eni, Ipv4PrefixCount=1)
        assert prefixes_of(describe_eni(endpoint, eni)) == []
        return
    with pytest.raises(ClientError) as exc:
        endpoint.client.assign_private_ip_addresses(NetworkInterfaceId=eni, Ipv4PrefixCount=1)
    assert error(exc) == (
        "InvalidParameterValue",
        "IPv4 prefix delegation is not supported for the instance type 'm4.large'.",
        400,
    )
    # an unattached ENI is tied to no type: it takes prefixes, and a Xen type refuses it at
    # attach; a Nitro one and a bare-metal one (no hypervisor: Nitro system) take it
    loose = new_eni(endpoint, Ipv4PrefixCount=1)["NetworkInterfaceId"]
    xen = endpoint.topo.run_instance("c4.large")
    with pytest.raises(ClientError) as exc:
        attach(endpoint, loose, xen.instance_id, 1)
    assert error(exc)[1].startswith("IPv4 prefix delegation is not supported")
    metal = endpoint.topo.run_instance("m5.metal")
    attach(endpoint, loose, metal.instance_id, 1)
    assert len(prefixes_of(describe_eni(endpoint, loose))) == 1


# -- which blocks -------------------------------------------------------------------------------
def test_explicit_prefixes_must_be_aligned_free_28s(lab: Ec2Lab, ec2_client: Any,
                                                    topo: topology.Topology) -> None:
    node = topo.run_instance("m5.large")
    eni = ec2_client.create_network_interface(SubnetId=topo.pod_subnet())["NetworkInterface"]
    eni_id, primary = eni["NetworkInterfaceId"], eni["PrivateIpAddress"]  # 10.0.16.4
    ec2_client.attach_network_interface(NetworkInterfaceId=eni_id, InstanceId=node.instance_id,
                                        DeviceIndex=1)

    def refused(prefix: str) -> tuple[str, str, int]:
        with pytest.raises(ClientError) as exc:
            ec2_client.assign_private_ip_addresses(NetworkInterfaceId=eni_id,
                                                   Ipv4Prefixes=[prefix])
        return error(exc)

    assert refused("10.0.16.40/28")[0] == "InvalidParameterValue"  # not aligned on 16
    assert refused("10.0.16.32/27")[0] == "InvalidParameterValue"  # not a /28
    assert refused("10.0.99.16/28")[0] == "InvalidParameterValue"  # not in the subnet
    assert refused("10.0.16.0/28")[1].endswith("reserved address range")  # .0-.3 are AWS's
    assert primary == "10.0.16.4"
    assert refused("10.0.16.0/28")[0] == "InvalidParameterValue"
    ec2_client.assign_private_ip_addresses(NetworkInterfaceId=eni_id,
                                           Ipv4Prefixes=["10.0.16.32/28"])
    assert refused("10.0.16.32/28")[0] == "InvalidIPAddress.InUse"  # already delegated
    # another ENI may take neither the prefix nor one address out of it
    other = ec2_client.create_network_interface(SubnetId=topo.pod_subnet())["NetworkInterface"]
    for kwargs in ({"Ipv4Prefixes": ["10.0.16.32/28"]},
                   {"PrivateIpAddresses": ["10.0.16.33"], "AllowReassignment": True}):
        with pytest.raises(ClientError) as exc:
            ec2_client.assign_private_ip_addresses(
                NetworkInterfaceId=other["NetworkInterfaceId"], **kwargs
            )
        assert error(exc)[0] == "InvalidIPAddress.InUse"
    # a block holding an address in use is not free
    ec2_client.assign_private_ip_addresses(NetworkInterfaceId=other["NetworkInterfaceId"],
                                           PrivateIpAddresses=["10.0.16.50"])
    assert refused("10.0.16.48/28")[0] == "InvalidIPAddress.InUse"


def test_fragmented_subnet_has_addresses_but_no_28(endpoint: Endpoint) -> None:
    # a /26: blocks .0 (holds AWS's first four), .16, .32, .48 (holds the broadcast)
    subnet = endpoint.client.create_subnet(
        VpcId=endpoint.topo.vpc_id, CidrBlock="10.0.250.0/26", AvailabilityZone="us-east-1a"
    )["Subnet"]["SubnetId"]
    node = endpoint.topo.run_instance("m5.large")
    eni = new_eni(endpoint, subnet)["NetworkInterfaceId"]  # primary 10.0.250.4
    attach(endpoint, eni, node.instance_id, 1)
    # one address out of .16/28 and one out of .32/28: 56 free addresses, no free aligned /28
    new_eni(endpoint, subnet, PrivateIpAddress="10.0.250.24")
    new_eni(endpoint, subnet, PrivateIpAddress="10.0.250.40")
    free = endpoint.client.describe_subnets(SubnetIds=[subnet])["Subnets"][0]
    if not endpoint.lab:  # moto: "assigned" (nothing), no word about fragmentation
        endpoint.client.assign_private_ip_addresses(NetworkInterfaceId=eni, Ipv4PrefixCount=1)
        return
    assert free["AvailableIpAddressCount"] == 64 - 5 - 3
    for call in (
        lambda: endpoint.client.assign_private_ip_addresses(NetworkInterfaceId=eni,
                                                            Ipv4PrefixCount=1),
        lambda: new_eni(endpoint, subnet, Ipv4PrefixCount=1),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert error(exc) == NO_BLOCKS
    # single addresses are still there for the asking
    out = endpoint.client.assign_private_ip_addresses(NetworkInterfaceId=eni,
                                                      SecondaryPrivateIpAddressCount=2)
    assert len(out["AssignedPrivateIpAddresses"]) == 2


def test_fragment_helper_leaves_exactly_what_it_says(lab: Ec2Lab, ec2_client: Any,
                                                     topo: topology.Topology) -> None:
    node = topo.run_instance("c5.xlarge")
    eni = ec2_client.create_network_interface(SubnetId=topo.pod_subnet())["NetworkInterface"]
    ec2_client.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                        InstanceId=node.instance_id, DeviceIndex=1)
    before = ec2_client.describe_subnets(SubnetIds=[topo.pod_subnet()])["Subnets"][0]
    frag = topo.fragment(leave=2)
    # a /20 has 256 /28s; the first holds AWS's reserved addresses and the ENI's primary, the
    # last the broadcast: 254 free blocks, 2 left, 252 squatted on 6 ENIs of up to 50 addresses
    assert len(frag.addresses) == 252 and len(frag.enis) == 6 and len(frag.free_blocks) == 2
    after = ec2_client.describe_subnets(SubnetIds=[topo.pod_subnet()])["Subnets"][0]
    assert after["AvailableIpAddressCount"] == before["AvailableIpAddressCount"] - 252
    assert after["AvailableIpAddressCount"] > 3500
    out = ec2_client.assign_private_ip_addresses(
        NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4PrefixCount=2
    )
    assert [p["Ipv4Prefix"] for p in out["AssignedIpv4Prefixes"]] == list(frag.free_blocks)
    with pytest.raises(ClientError) as exc:
        ec2_client.assign_private_ip_addresses(
            NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4PrefixCount=1
        )
    assert error(exc) == NO_BLOCKS
    # the squatters are ordinary ENIs: deleting one frees its 50 blocks again
    ec2_client.delete_network_interface(NetworkInterfaceId=frag.enis[0])
    ec2_client.assign_private_ip_addresses(
        NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4PrefixCount=1
    )


def test_cidr_reservations_steer_automatic_picks(lab: Ec2Lab, ec2_client: Any,
                                                 topo: topology.Topology) -> None:
    subnet = topo.pod_subnet()
    node = topo.run_instance("c5.xlarge")
    prefix_res = ec2_client.create_subnet_cidr_reservation(
        SubnetId=subnet, Cidr="10.0.20.0/27", ReservationType="prefix"
    )["SubnetCidrReservation"]
    explicit_res = ec2_client.create_subnet_cidr_reservation(
        SubnetId=subnet, Cidr="10.0.16.0/24", ReservationType="explicit"
    )["SubnetCidrReservation"]
    listed = ec2_client.get_subnet_cidr_reservations(SubnetId=subnet)
    assert {r["Cidr"] for r in listed["SubnetIpv4CidrReservations"]} == {
        "10.0.20.0/27", "10.0.16.0/24"
    }
    eni = ec2_client.create_network_interface(
        SubnetId=subnet, SecondaryPrivateIpAddressCount=2
    )["NetworkInterface"]
    eni_id = eni["NetworkInterfaceId"]
    # automatic addresses: never in a reservation of either type
    assert all(not a.startswith("10.0.16.") for a in ips_of(eni))
    assert all(ipaddress.IPv4Address(a) not in ipaddress.IPv4Network("10.0.20.0/27")
               for a in ips_of(eni))
    ec2_client.attach_network_interface(NetworkInterfaceId=eni_id, InstanceId=node.instance_id,
                                        DeviceIndex=1)
    # automatic prefixes: the prefix-type reservation first, then the unreserved rest
    out = ec2_client.assign_private_ip_addresses(NetworkInterfaceId=eni_id, Ipv4PrefixCount=3)
    got = [p["Ipv4Prefix"] for p in out["AssignedIpv4Prefixes"]]
    assert got[:2] == ["10.0.20.0/28", "10.0.20.16/28"]
    assert not got[2].startswith("10.0.16.") and got[2] not in got[:2]
    # caller-chosen addresses and prefixes may use an explicit-type reservation
    ec2_client.assign_private_ip_addresses(NetworkInterfaceId=eni_id,
                                           Ipv4Prefixes=["10.0.16.64/28"])
    ec2_client.assign_private_ip_addresses(NetworkInterfaceId=eni_id,
                                           PrivateIpAddresses=["10.0.16.9"])
    # once the explicit reservation is deleted, automatic picks may go there again
    ec2_client.delete_subnet_cidr_reservation(
        SubnetCidrReservationId=explicit_res["SubnetCidrReservationId"]
    )
    assert prefix_res["ReservationType"] == "prefix"
    again = ec2_client.create_network_interface(SubnetId=subnet, Ipv4PrefixCount=1)[
        "NetworkInterface"]
    assert again["PrivateIpAddress"].startswith("10.0.16.")
    assert prefixes_of(again)[0].startswith("10.0.16.")


# -- Create, Unassign, Describe, IMDS ------------------------------------------------------------
def test_create_with_prefixes_and_its_client_token(lab: Ec2Lab, ec2_client: Any,
                                                   topo: topology.Topology) -> None:
    eni = ec2_client.create_network_interface(
        SubnetId=topo.pod_subnet(), Ipv4PrefixCount=2, ClientToken="pfx-1"
    )["NetworkInterface"]
    assert eni["PrivateIpAddress"] == "10.0.16.4"
    assert prefixes_of(eni) == ["10.0.16.16/28", "10.0.16.32/28"]
    again = ec2_client.create_network_interface(
        SubnetId=topo.pod_subnet(), Ipv4PrefixCount=2, ClientToken="pfx-1"
    )["NetworkInterface"]
    assert again["NetworkInterfaceId"] == eni["NetworkInterfaceId"]
    assert prefixes_of(again) == prefixes_of(eni)
    assert len(ec2_client.describe_network_interfaces()["NetworkInterfaces"]) == 1
    chosen = ec2_client.create_network_interface(
        SubnetId=topo.pod_subnet(), Ipv4Prefixes=[{"Ipv4Prefix": "10.0.17.0/28"}]
    )["NetworkInterface"]
    assert prefixes_of(chosen) == ["10.0.17.0/28"]
    described = ec2_client.describe_network_interfaces(
        NetworkInterfaceIds=[chosen["NetworkInterfaceId"]])["NetworkInterfaces"][0]
    assert prefixes_of(described) == ["10.0.17.0/28"]
    for kwargs in ({"Ipv4PrefixCount": 1, "SecondaryPrivateIpAddressCount": 1},
                   {"Ipv4PrefixCount": 1, "Ipv4Prefixes": [{"Ipv4Prefix": "10.0.18.0/28"}]}):
        with pytest.raises(ClientError) as exc:
            ec2_client.create_network_interface(SubnetId=topo.pod_subnet(), **kwargs)
        assert error(exc)[0] == "InvalidParameterCombination"
    # 1 primary + 50 prefixes: over the largest per-ENI limit of any type
    with pytest.raises(ClientError) as exc:
        ec2_client.create_network_interface(SubnetId=topo.pod_subnet(), Ipv4PrefixCount=50)
    assert error(exc)[0] == "PrivateIpAddressLimitExceeded"


def test_unassign_prefixes(lab: Ec2Lab, ec2_client: Any, topo: topology.Topology) -> None:
    subnet = topo.pod_subnet()
    eni = ec2_client.create_network_interface(SubnetId=subnet, Ipv4PrefixCount=3)[
        "NetworkInterface"]
    eni_id, held = eni["NetworkInterfaceId"], prefixes_of(eni)

    def available() -> int:
        count: int = ec2_client.describe_subnets(SubnetIds=[subnet])["Subnets"][0][
            "AvailableIpAddressCount"]
        return count

    assert available() == 4096 - 5 - 1 - 3 * 16  # each prefix takes 16 from the free count
    with pytest.raises(ClientError) as exc:
        ec2_client.unassign_private_ip_addresses(NetworkInterfaceId=eni_id,
                                                 Ipv4Prefixes=[held[0], "10.0.30.0/28"])
    assert error(exc) == ("InvalidParameterValue",
                          f"Some of the specified prefixes are not assigned to interface {eni_id}",
                          400)
    ec2_client.unassign_private_ip_addresses(NetworkInterfaceId=eni_id, Ipv4Prefixes=[held[1]])
    described = ec2_client.describe_network_interfaces(NetworkInterfaceIds=[eni_id])[
        "NetworkInterfaces"][0]
    assert prefixes_of(described) == [held[0], held[2]]
    assert available() == 4096 - 5 - 1 - 2 * 16
    # the freed block is the lowest free one again
    out = ec2_client.assign_private_ip_addresses(NetworkInterfaceId=eni_id, Ipv4PrefixCount=1)
    assert [p["Ipv4Prefix"] for p in out["AssignedIpv4Prefixes"]] == [held[1]]


def test_imds_lists_prefixes_with_the_address_lag(lab: Ec2Lab, ec2_client: Any,
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

        key = f"network/interfaces/macs/{eni['MacAddress']}/ipv4-prefix"
        # wait for the ENI itself to show up (it lags too), then assign
        deadline = time.monotonic() + 10
        while get(f"network/interfaces/macs/{eni['MacAddress']}/device-number")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert get(key)[0] == 404  # no prefixes: absent, never an empty 200
        out = ec2_client.assign_private_ip_addresses(
            NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4PrefixCount=2)
        assigned_at = time.monotonic()
        wanted = "\n".join(p["Ipv4Prefix"] for p in out["AssignedIpv4Prefixes"])
        seen_missing = False
        while True:
            status, body = get(key)
            if status == 200 and body == wanted:
                break
            seen_missing = True
            assert time.monotonic() - assigned_at < lag + 10
            time.sleep(0.05)
        assert seen_missing and time.monotonic() - assigned_at >= lag * 0.9
        # prefix addresses are not repeated in local-ipv4s
        assert get(f"network/interfaces/macs/{eni['MacAddress']}/local-ipv4s")[1] == (
            eni["PrivateIpAddress"])


def test_prefixes_at_launch_are_a_loud_lab_gap(lab: Ec2Lab, ec2_client: Any,
                                               topo: topology.Topology) -> None:
    with pytest.raises(ClientError) as exc:
        ec2_client.run_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="m5.large",
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": topo.node_subnet(),
                                "Ipv4PrefixCount": 1}])
    assert error(exc)[0] == "LabNotImplemented"


def test_a_lost_prefix_answer_is_applied_and_concurrent_ones_never_overlap(
        lab: Ec2Lab, topo: topology.Topology) -> None:
    import threading

    from botocore.exceptions import ReadTimeoutError

    from .conftest import make_client

    patient = make_client(lab.url)
    enis = [patient.create_network_interface(SubnetId=topo.pod_subnet())["NetworkInterface"][
        "NetworkInterfaceId"] for _ in range(6)]
    # the answer is lost on its way back: EC2 did the work, Describe tells the client
    lab.control.faults.lose_response_next("AssignPrivateIpAddresses", hold=30)
    with pytest.raises(ReadTimeoutError):
        make_client(lab.url, retries=0, read_timeout=0.3).assign_private_ip_addresses(
            NetworkInterfaceId=enis[0], Ipv4PrefixCount=1)
    lab.control.faults.clear()
    lost = prefixes_of(patient.describe_network_interfaces(NetworkInterfaceIds=[enis[0]])[
        "NetworkInterfaces"][0])
    assert len(lost) == 1
    # 6 clients x 3 calls x 2 prefixes at once: 36 distinct /28s, none overlapping an address
    got: list[str] = []
    lock = threading.Lock()

    def work(eni: str) -> None:
        for _ in range(3):
            out = patient.assign_private_ip_addresses(NetworkInterfaceId=eni, Ipv4PrefixCount=2)
            with lock:
                got.extend(p["Ipv4Prefix"] for p in out["AssignedIpv4Prefixes"])

    threads = [threading.Thread(target=work, args=(e,)) for e in enis]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    blocks = [ipaddress.IPv4Network(p) for p in got + lost]
    assert len(got) == 36 and len(set(blocks)) == 37
    described = patient.describe_network_interfaces(NetworkInterfaceIds=enis)["NetworkInterfaces"]
    primaries = [ipaddress.IPv4Address(e["PrivateIpAddress"]) for e in described]
    assert not any(a in b for a in primaries for b in blocks)
    assert sorted(p for e in described for p in prefixes_of(e)) == sorted(got + lost)
