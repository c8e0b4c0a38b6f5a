"""Injected faults and latency: what cnivpc's retry and deadline logic will be tested against."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError
from werkzeug.serving import make_server

from cnivpc.lab.ec2 import Ec2Lab, topology
from cnivpc.lab.faults import Faults, LostRequest, LostResponse
from cnivpc.lab.profiles import ZERO, Latency

from .conftest import make_client
from .test_strict import error


@pytest.fixture
def client(lab: Ec2Lab) -> Any:
    return make_client(lab.url, retries=0)


def test_fail_next_n_calls(lab: Ec2Lab, client: Any) -> None:
    lab.control.faults.fail_next("DescribeVpcs", 2)
    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            client.describe_vpcs()
        assert error(exc) == ("InternalError", "An internal error has occurred.", 500)
    client.describe_vpcs()
    client.describe_subnets()  # other actions were never affected


def test_fail_with_503_and_botocore_retries(lab: Ec2Lab) -> None:
    lab.control.faults.fail_next("DescribeSubnets", 1, status=503)
    out = make_client(lab.url, retries=2).describe_subnets()
    assert out["ResponseMetadata"]["RetryAttempts"] == 1


def test_fail_randomly_is_seeded() -> None:
    def pattern() -> list[bool]:
        faults = Faults()
        faults.fail_randomly("X", 0.5, seed=7)
        return [faults.take("X") is not None for _ in range(20)]

    first = pattern()
    assert first == pattern() and any(first) and not all(first)
    faults = Faults()
    faults.fail_randomly("X", 0.5)
    faults.fail_randomly("X", 0.0)  # disarm
    assert faults.take("X") is None


def test_lost_response_is_applied_at_once_and_lost_request_never(lab: Ec2Lab) -> None:
    topo = topology.create(lab)
    impatient = make_client(lab.url, retries=0, read_timeout=0.3)
    patient = make_client(lab.url)

    def pod_enis() -> list[Any]:
        enis: list[Any] = patient.describe_network_interfaces(
            Filters=[{"Name": "subnet-id", "Values": [topo.pod_subnet()]}]
        )["NetworkInterfaces"]
        return enis

    lab.control.faults.lose_response_next("CreateNetworkInterface", hold=30)
    with pytest.raises(ReadTimeoutError):
        impatient.create_network_interface(SubnetId=topo.pod_subnet())
    # EC2 did the work before the client gave up: a retry now would make a second ENI.
    assert len(pod_enis()) == 1
    lab.control.faults.lose_request_next("CreateNetworkInterface", hold=30)
    with pytest.raises(ReadTimeoutError):
        impatient.create_network_interface(SubnetId=topo.pod_subnet())
    lab.control.faults.clear()  # releases the held request: answered 503, never applied
    assert len(pod_enis()) == 1
    counts = lab.state.calls.snapshot()["-"]["CreateNetworkInterface"]
    assert (counts["calls"], counts["ok"], counts["lost"]) == (2, 1, 2)
    assert counts["errors"] == {"Unavailable": 1}


def test_lost_response_by_dropped_connection(lab: Ec2Lab) -> None:
    topo = topology.create(lab)
    lab.control.faults.lose_response_next("CreateNetworkInterface", drop=True)
    with pytest.raises(ConnectionClosedError):
        make_client(lab.url).create_network_interface(SubnetId=topo.pod_subnet())
    enis = make_client(lab.url).describe_network_interfaces(
        Filters=[{"Name": "subnet-id", "Values": [topo.pod_subnet()]}]
    )["NetworkInterfaces"]
    assert len(enis) == 1


def test_timeout_next_keeps_its_two_meanings() -> None:
    faults = Faults()
    faults.timeout_next("X", delay=0.5, applied=True)
    faults.timeout_next("X", delay=0.5, applied=False)
    assert faults.take("X") == LostResponse(0.5)
    assert faults.take("X") == LostRequest(0.5)
    assert faults.take("X") is None


def test_faults_and_denials_by_glob(lab: Ec2Lab, client: Any) -> None:
    lab.control.faults.fail_next("Describe*", 1)
    with pytest.raises(ClientError) as exc:
        client.describe_subnets()
    assert error(exc)[0] == "InternalError"
    client.describe_subnets()
    lab.control.deny("Create*")
    with pytest.raises(ClientError) as exc:
        client.create_vpc(CidrBlock="10.9.0.0/16")
    assert error(exc)[0] == "UnauthorizedOperation"
    client.describe_vpcs()  # not matched
    lab.control.allow("Create*")
    client.create_vpc(CidrBlock="10.9.0.0/16")


def test_hidden_attach_flag() -> None:
    faults = Faults()
    faults.hide_attach(eni_id="eni-1")
    faults.hide_attach(instance_id="i-2")
    assert faults.attach_hidden("i-9", "eni-1")
    assert faults.attach_hidden("i-2", "eni-7")
    assert not faults.attach_hidden("i-9", "eni-7")
    faults.clear()
    assert not faults.attach_hidden("i-2", "eni-1")


def test_latency_per_api_overlaps_across_calls(lab: Ec2Lab) -> None:
    # Long enough that a loaded machine cannot blur the bounds: one call takes >= 2 s, two
    # serialized calls >= 4 s; overlapping, the pair takes ~2 s.
    lab.control.set_profile(
        ZERO.with_overrides(name="slow-describe", api={"DescribeVpcs": Latency(2.0)})
    )
    client = make_client(lab.url)
    started = time.perf_counter()
    client.describe_subnets()
    assert time.perf_counter() - started < 2.0  # other actions use the default (0)
    started = time.perf_counter()
    threads = [threading.Thread(target=client.describe_vpcs) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    assert 2.0 <= elapsed < 4.0  # slept outside the lock: four calls overlapped (else >= 8)


def test_concurrent_assigns_never_hand_out_an_address_twice(lab: Ec2Lab) -> None:
    topo = topology.create(lab)
    setup = make_client(lab.url)
    enis = [
        setup.create_network_interface(SubnetId=topo.pod_subnet())["NetworkInterface"][
            "NetworkInterfaceId"
        ]
        for _ in range(6)
    ]
    got: list[str] = []
    lock = threading.Lock()

    c = make_client(lab.url)

    def work(eni: str) -> None:
        for _ in range(3):
            out = c.assign_private_ip_addresses(
                NetworkInterfaceId=eni, SecondaryPrivateIpAddressCount=2
            )
            with lock:
                got.extend(a["PrivateIpAddress"] for a in out["AssignedPrivateIpAddresses"])

    threads = [threading.Thread(target=work, args=(e,)) for e in enis]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 36 and len(set(got)) == 36


def test_app_served_on_a_second_socket_shares_state(lab: Ec2Lab, ec2_client: Any) -> None:
    # The fabric serves ``lab.app`` inside node namespaces; same backend, same rules.
    server = make_server("127.0.0.1", 0, lab.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        other = make_client(f"http://127.0.0.1:{server.server_address[1]}")
        vpc = other.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        assert any(v["VpcId"] == vpc for v in ec2_client.describe_vpcs()["Vpcs"])
        with pytest.raises(ClientError) as exc:
            other.delete_network_interface(NetworkInterfaceId="bogus")
        assert error(exc)[0] == "InvalidNetworkInterfaceId.Malformed"
    finally:
        server.shutdown()
        server.server_close()
