"""Breaking a running lab from the outside: every fault and state command through the command
line (``python -m cnivpc.lab <cmd> --lab-id ID``) against one lab started with
``python -m cnivpc.lab up`` in a subprocess, shared by the module; the outcomes are checked in
EC2 (botocore), IMDS and the node namespaces.

Tests run in file order and share the lab: each one disarms what it armed (``fault clear``), and
``terminate`` (which takes node 1 away) comes last. Root and moto needed (marker ``netns``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cnivpc.lab import fabric as fab
from tests.support.lab import ping, run_in

from .imdsutil import get, token
from .test_lab import wait_until

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
MACS = "/latest/meta-data/network/interfaces/macs/"


class Up:
    """The lab ``up`` printed, and the command line pointed at it."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info
        self.lab_id: str = info["lab_id"]
        self.nodes: list[dict[str, Any]] = info["nodes"]
        # pod subnet by AZ: an ENI attaches only to an instance in its own AZ
        self.pod_subnets = {s["az"]: s["id"] for s in info["subnets"] if s["kind"] == "pods"}
        self.pod_subnet = self.pod_subnets[self.nodes[0]["availability_zone"]]
        self.sg: str = info["vpc"]["security_group_id"]

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "cnivpc.lab", *args, "--lab-id", self.lab_id],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        if ok:
            assert res.returncode == 0, f"{args}: {res.returncode}\n{res.stderr}"
            assert len(res.stdout.splitlines()) == 1, res.stdout  # one JSON line per command
        return res

    def do(self, *args: str) -> Any:
        return json.loads(self.cli(*args).stdout)

    def client(self, read_timeout: float = 10.0) -> Any:
        import botocore.config
        import botocore.session

        session = botocore.session.get_session()
        session.set_credentials("AKIDLABTEST", "lab-secret")
        return session.create_client(
            "ec2", region_name=self.info["region"], endpoint_url=self.info["ec2_url"],
            config=botocore.config.Config(retries={"total_max_attempts": 1},
                                          read_timeout=read_timeout, connect_timeout=5))

    def new_eni(self, ec2: Any, secondaries: int = 2, node: int = 0) -> dict[str, Any]:
        eni: dict[str, Any] = ec2.create_network_interface(
            SubnetId=self.pod_subnets[self.nodes[node]["availability_zone"]], Groups=[self.sg],
            SecondaryPrivateIpAddressCount=secondaries)["NetworkInterface"]
        return eni


@pytest.fixture(scope="module")
def up() -> Iterator[Up]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    pytest.importorskip("moto")
    proc = subprocess.Popen([sys.executable, "-m", "cnivpc.lab", "up", "--nodes", "2"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        yield Up(json.loads(line))
    finally:
        proc.send_signal(signal.SIGTERM)  # our lab only: never a bare `down`
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.fixture
def lab(up: Up) -> Iterator[Up]:
    """The module's lab with nothing armed before and after the test."""
    up.do("fault", "clear")
    yield up
    up.do("fault", "clear")


@pytest.fixture
def ec2(up: Up) -> Any:
    return up.client()


def error_of(exc: pytest.ExceptionInfo[Any]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def imds_macs(node: dict[str, Any]) -> str:
    return get(node["imds_url"], MACS, token(node["imds_url"])).body


def test_up_names_its_endpoint_and_unknown_labs_are_errors(lab: Up) -> None:
    assert lab.info["control"] == str(fab.REGISTRY / f"{lab.lab_id}.sock")
    assert Path(lab.info["control"]).is_socket()
    status = lab.do("status")
    assert status["lab_id"] == lab.lab_id and status["armed"] == []
    res = subprocess.run([sys.executable, "-m", "cnivpc.lab", "status", "--lab-id", "nolab"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.startswith("error: no running lab nolab\nhint: ")
    bad = lab.cli("reboot", "i-nosuchnode", ok=False)
    assert bad.returncode == 1 and "error: no node 'i-nosuchnode'" in bad.stderr


def test_fail_and_throttle_the_next_calls(lab: Up, ec2: Any) -> None:
    from botocore.exceptions import ClientError

    armed = lab.do("fault", "fail", "DescribeVpcs", "--count", "2", "--status", "503")["armed"]
    assert armed == [{"action": "DescribeVpcs", "remaining": 2, "kind": "fail", "status": 503,
                      "code": "Unavailable"}]
    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            ec2.describe_vpcs()
        assert error_of(exc) == ("Unavailable", 503)
    ec2.describe_vpcs()  # the third one goes through
    lab.do("fault", "fail", "Describe*")  # a glob: the next Describe of any kind
    with pytest.raises(ClientError) as exc:
        ec2.describe_subnets()
    assert error_of(exc) == ("InternalError", 500)
    lab.do("fault", "throttle", "DescribeSubnets", "--count", "1")
    with pytest.raises(ClientError) as exc:
        ec2.describe_subnets()
    assert error_of(exc) == ("RequestLimitExceeded", 503)
    ec2.describe_subnets()
    assert lab.do("fault", "list") == {"armed": [], "denied": []}


def test_lost_response_is_applied_and_only_the_answer_lost(lab: Up, ec2: Any) -> None:
    from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

    def pod_enis() -> set[str]:
        return {e["NetworkInterfaceId"] for e in ec2.describe_network_interfaces(
            Filters=[{"Name": "subnet-id", "Values": [lab.pod_subnet]}])["NetworkInterfaces"]}

    before = pod_enis()
    lab.do("fault", "lost-response", "CreateNetworkInterface", "--hold", "60")
    impatient = lab.client(read_timeout=1.0)
    with pytest.raises(ReadTimeoutError):
        impatient.create_network_interface(SubnetId=lab.pod_subnet, Groups=[lab.sg])
    # the client gave up; the ENI it will never hear of is there already (its retry would
    # create a second one)
    lost = pod_enis() - before
    assert len(lost) == 1

    lab.do("fault", "lost-response", "CreateNetworkInterface", "--drop")
    with pytest.raises(ConnectionClosedError):
        ec2.create_network_interface(SubnetId=lab.pod_subnet, Groups=[lab.sg])
    assert len(pod_enis() - before) == 2

    lab.do("fault", "lost-request", "CreateNetworkInterface", "--hold", "60")
    with pytest.raises(ReadTimeoutError):
        impatient.create_network_interface(SubnetId=lab.pod_subnet, Groups=[lab.sg])
    lab.do("fault", "clear")  # the held request is answered now: 503, never applied
    assert len(pod_enis() - before) == 2


def test_deny_by_glob(lab: Up, ec2: Any) -> None:
    from botocore.exceptions import ClientError

    assert lab.do("fault", "deny", "Create*", "AssignPrivate*")["denied"] == [
        "AssignPrivate*", "Create*"]
    for call in (lambda: ec2.create_network_interface(SubnetId=lab.pod_subnet),
                 lambda: ec2.create_tags(Resources=[lab.pod_subnet],
                                         Tags=[{"Key": "k", "Value": "v"}])):
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == ("UnauthorizedOperation", 403)
    ec2.describe_vpcs()  # not matched
    assert lab.do("fault", "allow", "Create*")["denied"] == ["AssignPrivate*"]
    ec2.create_tags(Resources=[lab.pod_subnet], Tags=[{"Key": "k", "Value": "v"}])


def test_latency_and_imds_lag_at_run_time(lab: Up, ec2: Any) -> None:
    lab.do("latency", "--api", "DescribeVpcs=0.6")
    started = time.monotonic()
    ec2.describe_vpcs()
    assert time.monotonic() - started >= 0.6
    profile = lab.do("latency", "zero")["profile"]
    assert profile["name"] == "zero" and profile["api"] == {}

    node = lab.nodes[0]
    assert lab.do("imds-lag", "--lag", "300") == {"lag": 300.0, "remove_lag": 0.0}
    try:
        eni = lab.new_eni(ec2, secondaries=0)
        ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                     InstanceId=node["instance_id"], DeviceIndex=1)
        # EC2 and the OS have it (zero profile: plugged before the answer); IMDS lags
        assert eni["MacAddress"] in fab.node_links(node["netns"]).values()
        assert eni["MacAddress"] not in imds_macs(node)
    finally:
        lab.do("imds-lag", "--lag", "0")
    wait_until(lambda: eni["MacAddress"] in imds_macs(node))
    ec2.detach_network_interface(AttachmentId=ec2.describe_network_interfaces(
        NetworkInterfaceIds=[eni["NetworkInterfaceId"]])["NetworkInterfaces"][0]
        ["Attachment"]["AttachmentId"])


def test_unassign_and_detach_behind_the_plugins_back(lab: Up, ec2: Any) -> None:
    node = lab.nodes[1]
    eni = lab.new_eni(ec2, secondaries=2, node=1)
    eni_id, mac = eni["NetworkInterfaceId"], eni["MacAddress"]
    gone, kept = (a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"] if not a["Primary"])
    ec2.attach_network_interface(NetworkInterfaceId=eni_id, InstanceId=node["instance_id"],
                                 DeviceIndex=1)
    wait_until(lambda: mac in fab.node_links(node["netns"]).values())
    ips_path = f"{MACS}{mac}/local-ipv4s"
    wait_until(lambda: gone in get(node["imds_url"], ips_path, token(node["imds_url"])).body)

    assert lab.do("unassign", eni_id, gone) == {"eni": eni_id, "unassigned": [gone]}
    left = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    assert gone not in {a["PrivateIpAddress"] for a in left["PrivateIpAddresses"]}
    assert kept in {a["PrivateIpAddress"] for a in left["PrivateIpAddresses"]}
    wait_until(lambda: gone not in get(node["imds_url"], ips_path,
                                       token(node["imds_url"])).body)
    refused = lab.cli("unassign", eni_id, gone, ok=False)
    assert refused.returncode == 1 and f"error: not assigned to {eni_id}" in refused.stderr

    assert lab.do("detach", eni_id) == {"eni": eni_id, "instance_id": node["instance_id"]}
    state = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    assert state["Status"] == "available" and "Attachment" not in state
    wait_until(lambda: mac not in fab.node_links(node["netns"]).values())
    wait_until(lambda: mac not in imds_macs(node))
    primary = lab.cli("detach", node["eni_id"], ok=False)
    assert primary.returncode == 1 and "primary ENI" in primary.stderr


def test_fragment_a_subnet_and_unassign_prefixes(lab: Up, ec2: Any) -> None:
    node = lab.nodes[0]
    subnet = ec2.create_subnet(VpcId=lab.info["vpc"]["id"], CidrBlock="10.0.240.0/25",
                               AvailabilityZone=node["availability_zone"])["Subnet"]["SubnetId"]
    # a /25: 8 blocks, the first and the last hold AWS's reserved addresses -> 6 free
    done = lab.do("fragment", subnet, "--leave", "1")
    assert len(done["addresses"]) == 5 and len(done["free_blocks"]) == 1
    assert done["free_addresses"] == 128 - 5 - 5
    eni = ec2.create_network_interface(SubnetId=subnet, Groups=[lab.sg], Ipv4PrefixCount=1)[
        "NetworkInterface"]
    assert [p["Ipv4Prefix"] for p in eni["Ipv4Prefixes"]] == done["free_blocks"]
    with pytest.raises(Exception) as exc:
        ec2.assign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                        Ipv4PrefixCount=1)
    assert error_of(exc) == ("InsufficientCidrBlocks", 400)
    refused = lab.cli("fragment", "subnet-0000000000000dead", ok=False)
    assert refused.returncode == 1 and "error: no subnet subnet-0000000000000dead" in (
        refused.stderr)

    # behind cnivpc's back: the prefix goes, in EC2 and (after the remove lag) in IMDS
    eni_id, mac, prefix = eni["NetworkInterfaceId"], eni["MacAddress"], done["free_blocks"][0]
    ec2.attach_network_interface(NetworkInterfaceId=eni_id, InstanceId=node["instance_id"],
                                 DeviceIndex=2)
    path = f"{MACS}{mac}/ipv4-prefix"
    wait_until(lambda: get(node["imds_url"], path, token(node["imds_url"])).body == prefix)
    assert lab.do("unassign", eni_id) == {"eni": eni_id, "unassigned": [prefix]}
    left = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    assert left.get("Ipv4Prefixes", []) == []
    wait_until(lambda: get(node["imds_url"], path, token(node["imds_url"])).status == 404)
    ec2.detach_network_interface(AttachmentId=left["Attachment"]["AttachmentId"])


def test_reboot_takes_the_links_down_with_a_new_boot_id(lab: Up, ec2: Any, tmp_path: Path
                                                          ) -> None:
    node = lab.nodes[0]
    netns = node["netns"]
    eni = lab.new_eni(ec2, secondaries=1)
    ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                 InstanceId=node["instance_id"], DeviceIndex=2)
    wait_until(lambda: eni["MacAddress"] in fab.node_links(netns).values())
    ifname = {m: n for n, m in fab.node_links(netns).items()}[eni["MacAddress"]]
    # what cnivpc would have done to it, and a pod's host-side link
    run_in(netns, "ip", "addr", "add", "10.0.99.9/32", "dev", ifname, check=True)
    run_in(netns, "ip", "link", "set", ifname, "up", check=True)
    run_in(netns, "ip", "link", "add", "pod-veth0", "type", "veth", "peer", "name", "pod-peer0",
           check=True)
    old = next(n for n in lab.do("status")["nodes"] if n["instance_id"] == node["instance_id"])
    assert Path(old["boot_id_file"]).read_text().strip() == old["boot_id"]

    out = lab.do("reboot", "0")
    assert out["instance_id"] == node["instance_id"] and out["boot_id"] != old["boot_id"]
    assert Path(old["boot_id_file"]).read_text().strip() == out["boot_id"]
    links = json.loads(run_in(netns, "ip", "-j", "addr", "show", check=True).stdout)
    by_mac = {link.get("address"): link for link in links}
    assert "pod-veth0" not in {link["ifname"] for link in links}
    fresh = by_mac[eni["MacAddress"]]  # still attached: back as a fresh NIC, down, no address
    assert fresh["operstate"] == "DOWN" and "UP" not in fresh["flags"]
    assert not [a for a in fresh.get("addr_info", []) if a["family"] == "inet"]
    assert out["enis"] == {eni["NetworkInterfaceId"]: fresh["ifname"]}
    attached = ec2.describe_network_interfaces(
        NetworkInterfaceIds=[eni["NetworkInterfaceId"]])["NetworkInterfaces"][0]
    assert attached["Attachment"]["InstanceId"] == node["instance_id"]
    # the OS came back: primary ENI configured, the VPC and IMDS reachable from the node
    assert node["primary_ip"] in run_in(netns, "ip", "-4", "addr", "show", "eth0").stdout
    gateway = next(s["gateway"] for s in lab.info["subnets"] if s["id"] == node["subnet_id"])
    assert ping(netns, gateway)
    curl = run_in(netns, "curl", "-sf", "-X", "PUT", "-m", "5", "-H",
                  "X-aws-ec2-metadata-token-ttl-seconds: 60", "http://169.254.169.254/latest/api/token")
    assert curl.returncode == 0 and curl.stdout

    # a process run "on" the node by the lab's runtime sees the node's boot id
    from cnivpc.lab.runtime import Runtime

    (tmp_path / "showboot").write_text(
        '#!/bin/sh\necho "{\\"boot\\": \\"$(cat /proc/sys/kernel/random/boot_id)\\"}"\n')
    (tmp_path / "showboot").chmod(0o755)
    runtime = Runtime(tmp_path, {"cniVersion": "1.0.0", "name": "t",
                                 "plugins": [{"type": "showboot"}]}, netns,
                      boot_id_file=Path(old["boot_id_file"]))
    assert runtime.add("c1", "/dev/null") == {"boot": out["boot_id"]}


def test_counts_per_node_and_action(lab: Up, ec2: Any) -> None:
    from botocore.exceptions import ClientError

    lab.do("counts", "--reset")
    node = lab.nodes[0]

    def from_node(action: str) -> str:
        # unsigned Query call to the node's EC2 endpoint, as a process on the node makes it
        res = run_in(node["netns"], "curl", "-s", "-m", "10", "-o", "/dev/null", "-w",
                     "%{http_code}", "-d", f"Action={action}&Version=2016-11-15",
                     "http://169.254.169.254:8773/")
        return res.stdout

    assert [from_node("DescribeVpcs") for _ in range(3)] == ["200"] * 3
    lab.do("fault", "fail", "DescribeVpcs")
    assert from_node("DescribeVpcs") == "500"
    eni = lab.new_eni(ec2, secondaries=0)  # from the host, naming no instance
    ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                 InstanceId=node["instance_id"], DeviceIndex=3)
    ec2.assign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                    SecondaryPrivateIpAddressCount=1)
    with pytest.raises(ClientError):  # names the node's ENI: counted there, failed
        ec2.unassign_private_ip_addresses(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                          PrivateIpAddresses=["10.0.255.254"])

    counts = lab.do("counts", "--node", "0")["counts"]
    assert counts == {node["instance_id"]: {
        "AssignPrivateIpAddresses": {"calls": 1, "ok": 1, "failed": 0, "lost": 0, "errors": {}},
        "AttachNetworkInterface": {"calls": 1, "ok": 1, "failed": 0, "lost": 0, "errors": {}},
        "DescribeVpcs": {"calls": 4, "ok": 3, "failed": 1, "lost": 0,
                         "errors": {"InternalError": 1}},
        "UnassignPrivateIpAddresses": {"calls": 1, "ok": 0, "failed": 1, "lost": 0,
                                       "errors": {"InvalidParameterValue": 1}},
    }}
    everything = lab.do("counts", "--reset")["counts"]
    assert everything["-"]["CreateNetworkInterface"]["calls"] == 1
    assert lab.do("counts")["counts"] == {}


def test_terminate_deletes_or_detaches_the_enis(lab: Up, ec2: Any) -> None:
    node = lab.nodes[1]
    eni = lab.new_eni(ec2, secondaries=0, node=1)
    ec2.attach_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"],
                                 InstanceId=node["instance_id"], DeviceIndex=1)
    out = lab.do("terminate", node["instance_id"])
    # the primary ENI had DeleteOnTermination; an ENI attached through the API does not
    assert out == {"instance_id": node["instance_id"], "deleted": [node["eni_id"]],
                   "detached": [eni["NetworkInterfaceId"]]}
    left = ec2.describe_network_interfaces(
        Filters=[{"Name": "network-interface-id",
                  "Values": [node["eni_id"], eni["NetworkInterfaceId"]]}])["NetworkInterfaces"]
    assert [(e["NetworkInterfaceId"], e["Status"]) for e in left] == [
        (eni["NetworkInterfaceId"], "available")]
    state = ec2.describe_instances(InstanceIds=[node["instance_id"]])
    assert state["Reservations"][0]["Instances"][0]["State"]["Name"] == "terminated"
    assert node["netns"] not in fab.lab_namespaces().get(lab.lab_id, [])
    assert [n["instance_id"] for n in lab.do("status")["nodes"]] == [lab.nodes[0]["instance_id"]]


def test_endpoint_route_on_and_off(lab: Up) -> None:
    """The S3/DynamoDB gateway endpoint in and out of the VPC's route table, from the CLI: the
    node's traffic to a DynamoDB address reaches the endpoint, then the internet host."""
    import ipaddress

    from cnivpc.lab.probes import serve_whoami, whoami

    node = lab.nodes[0]
    cidrs = lab.info["gateway_endpoint"]["cidrs"]
    ddb = str(ipaddress.ip_network(cidrs["dynamodb"][0])[5])
    servers = [serve_whoami(lab.info["gateway_endpoint"]["netns"], 443, tag="vpce"),
               serve_whoami(lab.info["internet"]["netns"], 443, tag="internet")]
    try:
        assert whoami(node["netns"], ddb, 443) == f"vpce {node['primary_ip']}"
        assert lab.do("endpoint-route", "off") == {"routed": False, "cidrs": cidrs}
        assert whoami(node["netns"], ddb, 443) == f"internet {node['primary_ip']}"
        assert lab.do("endpoint-route", "on")["routed"] is True
        assert whoami(node["netns"], ddb, 443) == f"vpce {node['primary_ip']}"
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
