"""The lab on the host kernel: ENI hot-plug driven by EC2 (botocore over HTTP), IMDS inside the
node namespaces, VPC routing and SNAT egress, and the ``python -m cnivpc.lab`` CLI's teardown.

All need root and network namespaces (marker ``netns``); none needs ipvlan (see tests/uml).
"""

from __future__ import annotations

import contextlib
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
from cnivpc.lab.profiles import get_profile
from tests.support.lab import make_client, ping, run_in

from .imdsutil import get, token

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]
MACS = "/latest/meta-data/network/interfaces/macs/"


def links(netns: str) -> dict[str, str]:
    return fab.node_links(netns)


def wait_until(cond: Any, timeout: float = 10.0, step: float = 0.05) -> float:
    """Poll ``cond()`` until true; return the seconds it took."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(step)
    return time.monotonic() - t0


def create_eni(client: Any, lab: Any, secondaries: int = 2, node: Any = None) -> dict[str, Any]:
    """An ENI in the pod subnet of ``node``'s AZ (default: the first AZ)."""
    assert lab.topology is not None
    eni: dict[str, Any] = client.create_network_interface(
        SubnetId=lab.topology.pod_subnet(node.availability_zone if node else None),
        Groups=[lab.topology.security_group_id],
        SecondaryPrivateIpAddressCount=secondaries,
    )["NetworkInterface"]
    return eni


def test_attach_hotplugs_the_eni_after_the_delay_and_imds_lists_it(lab_factory: Any) -> None:
    profile = get_profile("zero").with_overrides(attach_visible_delay=0.6, imds_lag=0.6)
    lab = lab_factory(nodes=1, latency=profile)
    client = make_client(lab)
    node = lab.node(0)
    eni = create_eni(client, lab)
    mac = eni["MacAddress"]
    ips = [a["PrivateIpAddress"] for a in eni["PrivateIpAddresses"]]
    tok = token(node.imds_url)

    t0 = time.monotonic()
    att = client.attach_network_interface(
        NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=node.instance_id, DeviceIndex=1)
    # EC2 says attached at once; the OS and IMDS do not know yet (looked at only while the
    # delay is surely not over: a loaded machine may take longer than it to get here; the
    # lower bound below is what proves the delay either way)
    early = [mac not in links(node.netns).values(),
             mac not in get(node.imds_url, MACS, tok).body,
             get(node.imds_url, f"{MACS}{mac}/device-number", tok).status == 404]
    if time.monotonic() - t0 < 0.6:
        assert all(early), early

    wait_until(lambda: mac in links(node.netns).values())
    assert time.monotonic() - t0 >= 0.6  # not before attach_visible_delay
    assert links(node.netns)["eth1"] == mac  # named by device index
    state = run_in(node.netns, "ip", "-o", "link", "show", "eth1", check=True).stdout
    assert "state DOWN" in state and "mtu 9001" in state  # a fresh NIC: cnivpc brings it up

    wait_until(lambda: mac in get(node.imds_url, MACS, tok).body)
    assert get(node.imds_url, MACS, tok).body == f"{node.mac}/\n{mac}/"
    assert get(node.imds_url, f"{MACS}{mac}/device-number", tok).body == "1"
    assert get(node.imds_url, f"{MACS}{mac}/interface-id", tok).body == eni["NetworkInterfaceId"]
    assert get(node.imds_url, f"{MACS}{mac}/local-ipv4s", tok).body.split("\n") == ips

    client.detach_network_interface(AttachmentId=att["AttachmentId"])
    wait_until(lambda: mac not in links(node.netns).values())
    assert get(node.imds_url, MACS, tok).body == f"{node.mac}/"


def test_zero_delay_netdev_exists_when_attach_returns(lab: Any, ec2_client: Any) -> None:
    node = lab.node(1)
    eni = create_eni(ec2_client, lab, secondaries=0, node=node)
    ec2_client.attach_network_interface(
        NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=node.instance_id, DeviceIndex=2)
    assert links(node.netns).get("eth2") == eni["MacAddress"]
    assert eni["MacAddress"] not in links(lab.node(0).netns).values()


def test_attach_that_never_shows_up(lab: Any, ec2_client: Any) -> None:
    node = lab.node(0)
    eni = create_eni(ec2_client, lab, secondaries=0)
    lab.ec2.faults.hide_attach(eni_id=eni["NetworkInterfaceId"])
    ec2_client.attach_network_interface(
        NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=node.instance_id, DeviceIndex=1)
    # A barrier instead of a sleep: an ENI attached after it does show up (with this profile
    # the netdev exists when the attach returns), the hidden one still does not.
    other = create_eni(ec2_client, lab, secondaries=0)
    ec2_client.attach_network_interface(
        NetworkInterfaceId=other["NetworkInterfaceId"], InstanceId=node.instance_id,
        DeviceIndex=2)
    assert links(node.netns).get("eth2") == other["MacAddress"]
    assert eni["MacAddress"] not in links(node.netns).values()
    desc = ec2_client.describe_network_interfaces(NetworkInterfaceIds=[eni["NetworkInterfaceId"]])
    assert desc["NetworkInterfaces"][0]["Attachment"]["InstanceId"] == node.instance_id


def test_production_defaults_inside_the_node(lab: Any) -> None:
    """From inside a node netns: IMDS on 169.254.169.254 (with role credentials) and EC2 at
    AWS_ENDPOINT_URL_EC2, through the plugins' own metadata client and plain botocore."""
    node = lab.node(0)
    env_ec2 = lab.describe()["node_endpoints"]["env"]["AWS_ENDPOINT_URL_EC2"]
    script = (
        "import json, botocore.session\n"
        "from cnivpc.aws.metadata import Metadata\n"
        "md = Metadata()\n"
        "ident = md.identity()\n"
        "s = botocore.session.get_session()\n"
        "c = s.create_client('ec2', region_name=ident.region)\n"
        "r = c.describe_instances(InstanceIds=[ident.instance_id])\n"
        "print(json.dumps({'iid': ident.instance_id, 'macs': md.macs(),\n"
        "  'ip': r['Reservations'][0]['Instances'][0]['PrivateIpAddress'],\n"
        "  'key': s.get_credentials().access_key}))\n"
    )
    env = {"PATH": os.environ["PATH"], "AWS_ENDPOINT_URL_EC2": env_ec2}
    res = subprocess.run(["ip", "netns", "exec", node.netns, sys.executable, "-c", script],
                         capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["iid"] == node.instance_id
    assert out["macs"] == [node.mac]
    assert out["ip"] == node.primary_ip
    assert out["key"].startswith("ASIA")  # from IMDS's instance profile, not the environment


HTTP_PROBE = """
import http.client, sys
method, path, hdr = sys.argv[1], sys.argv[2], sys.argv[3:]
c = http.client.HTTPConnection("169.254.169.254", 80, timeout=1.5)
try:
    c.request(method, path, headers=dict(h.split(": ", 1) for h in hdr))
    r = c.getresponse()
    print(r.status, r.read().decode())
except OSError as e:
    print("timeout" if "timed out" in str(e) else f"error {e}")
"""


def test_put_hop_limit_stops_pods_not_the_node(lab: Any, in_ns: Any) -> None:
    """HttpPutResponseHopLimit=1: the node gets a token, a pod one routed hop further times out
    (silence, not an HTTP error); with 2 the pod gets one. GETs are not limited."""
    node = lab.node(0)
    pod = lab.fabric.add_netns("hop-pod")
    # a routed pod the way cnivpc-ptp wires one: unnumbered veth, /32 routes, gw 169.254.1.1
    in_ns(node.netns, "ip", "link", "add", "vhop", "type", "veth", "peer", "name", "eth0",
          "netns", pod, check=True)
    in_ns(node.netns, "ip", "link", "set", "vhop", "up", check=True)
    in_ns(node.netns, "ip", "route", "add", "10.0.200.7/32", "dev", "vhop", check=True)
    in_ns(node.netns, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/vhop/proxy_arp", check=True)
    for cmd in (["ip", "addr", "add", "10.0.200.7/32", "dev", "eth0"],
                ["ip", "link", "set", "eth0", "up"],
                ["ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"],
                ["ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"]):
        in_ns(pod, *cmd, check=True)

    def probe(netns: str, method: str, path: str, *hdr: str) -> str:
        res = in_ns(netns, sys.executable, "-c", HTTP_PROBE, method, path, *hdr, check=True)
        return str(res.stdout.strip())

    ttl = "X-aws-ec2-metadata-token-ttl-seconds: 60"
    assert lab.imds.config.hop_limit == 1
    node_token = probe(node.netns, "PUT", "/latest/api/token", ttl)
    assert node_token.startswith("200 AQAAA")
    assert probe(pod, "PUT", "/latest/api/token", ttl) == "timeout"
    tok = "X-aws-ec2-metadata-token: " + node_token.split()[1]
    assert probe(pod, "GET", "/latest/meta-data/instance-id", tok) == f"200 {node.instance_id}"
    lab.imds.config.hop_limit = 2
    assert probe(pod, "PUT", "/latest/api/token", ttl).startswith("200 AQAAA")


def test_vpc_routing_and_snat_egress(lab: Any, ec2_client: Any) -> None:
    a, b = lab.node(0), lab.node(1)
    assert a.subnet_cidr != b.subnet_cidr  # two AZs: cross-subnet goes through the VPC router
    gw_a = lab.fabric.subnets[a.subnet_cidr]
    assert ping(a.netns, gw_a)
    assert ping(a.netns, b.primary_ip)  # node <-> node across subnets
    assert ping(a.netns, fab.INET_ADDR)  # the node's primary IP may reach the internet

    # an ENI in the pod subnet with a "pod" IP on it (no ipvlan on this kernel: the address
    # goes on the ENI itself, which is what the fabric sees either way)
    eni = create_eni(ec2_client, lab, secondaries=1)
    pod_ip = eni["PrivateIpAddresses"][1]["PrivateIpAddress"]
    ec2_client.attach_network_interface(
        NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=a.instance_id, DeviceIndex=1)
    prefix = lab.subnets[lab.topology.pod_subnet()].split("/")[1]
    run_in(a.netns, "ip", "link", "set", "eth1", "up", check=True)
    run_in(a.netns, "ip", "addr", "add", f"{pod_ip}/{prefix}", "dev", "eth1", check=True)
    assert ping(a.netns, lab.fabric.subnets[lab.subnets[lab.topology.pod_subnet()]], src=pod_ip)
    assert ping(b.netns, pod_ip)  # cross-node to the "pod" IP: the fabric routes replies back

    # egress from the pod IP: dropped by the VPC (no public mapping) until the node SNATs it
    assert not ping(a.netns, fab.INET_ADDR, src=pod_ip, attempts=1)
    run_in(a.netns, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", pod_ip,
           "!", "-d", lab.topology.vpc_cidr, "-j", "SNAT", "--to-source", a.primary_ip,
           check=True)
    assert ping(a.netns, fab.INET_ADDR, src=pod_ip)


@contextlib.contextmanager
def _lab_cli(*args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "cnivpc.lab", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


def _read_up(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else ""
    info: dict[str, Any] = json.loads(line)
    return info


def _lab_netns(lab_id: str) -> list[str]:
    return fab.lab_namespaces().get(lab_id, [])


def _children(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return out.stdout.split()


def test_cli_up_prints_one_json_line_and_sigterm_leaves_nothing() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    pytest.importorskip("moto")
    with _lab_cli("up", "--nodes", "2") as proc:
        info = _read_up(proc)
        lab_id = info["lab_id"]
        assert len(info["nodes"]) == 2
        names = sorted(_lab_netns(lab_id))
        assert names == sorted([info["vpc"]["netns"], info["internet"]["netns"],
                                info["gateway_endpoint"]["netns"],
                                *(n["netns"] for n in info["nodes"]),
                                *(n["imds_netns"] for n in info["nodes"])])
        for n in info["nodes"]:
            assert links(n["netns"])["eth0"] == n["mac"]
            assert n["primary_ip"] in run_in(n["netns"], "ip", "-4", "addr").stdout
        assert info["node_endpoints"]["env"]["AWS_ENDPOINT_URL_EC2"] == "http://169.254.169.254:8773"
        assert _children(proc.pid) == []  # the lab is one process: threads, no helpers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert _lab_netns(lab_id) == []
    assert not (fab.REGISTRY / f"{lab_id}.pid").exists()
    mounts = Path("/proc/self/mounts").read_text()
    assert f"cnl-{lab_id}-" not in mounts


def test_cli_sigkilled_lab_is_cleaned_by_next_up_and_down() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    pytest.importorskip("moto")
    with _lab_cli("up", "--nodes", "1") as first:
        old = _read_up(first)["lab_id"]
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert _lab_netns(old)  # SIGKILL left its namespaces behind ...
    with _lab_cli("up", "--nodes", "1") as second:
        new = _read_up(second)["lab_id"]
        assert _lab_netns(old) == []  # ... and the next `up` removed them
        assert _lab_netns(new)
        down = subprocess.run([sys.executable, "-m", "cnivpc.lab", "down", "--lab-id", new],
                              cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert down.returncode == 0, down.stderr
        assert second.wait(timeout=15) == 0  # down stopped it with SIGTERM
    assert _lab_netns(new) == []


def test_vpc_delivers_each_ip_to_the_eni_ec2_assigned_it_to(lab: Any, ec2_client: Any) -> None:
    """Like AWS (and unlike a learning bridge): an IP configured on the wrong interface gets no
    traffic, however willingly that interface answers ARP."""
    a, b = lab.node(0), lab.node(1)
    eni = create_eni(ec2_client, lab, secondaries=1)
    pod_ip = eni["PrivateIpAddresses"][1]["PrivateIpAddress"]
    ec2_client.attach_network_interface(
        NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=a.instance_id, DeviceIndex=1)
    lab.sync_addresses()
    # wrong: EC2 put the IP on a's new ENI, but node b claims it
    run_in(b.netns, "ip", "addr", "add", f"{pod_ip}/32", "dev", "eth0", check=True)
    assert not ping(a.netns, pod_ip, attempts=1)
    run_in(b.netns, "ip", "addr", "del", f"{pod_ip}/32", "dev", "eth0", check=True)
    # right: on the ENI EC2 assigned it to
    run_in(a.netns, "ip", "link", "set", "eth1", "up", check=True)
    run_in(a.netns, "ip", "addr", "add", f"{pod_ip}/32", "dev", "eth1", check=True)
    assert ping(b.netns, pod_ip)


def test_vpc_delivers_every_address_of_a_prefix_to_its_eni(lab: Any, ec2_client: Any) -> None:
    """A /28 EC2 delegated to an ENI: all 16 addresses reach that ENI (pods get single addresses
    out of it), and only that ENI, as with secondary IPs."""
    import ipaddress

    a, b = lab.node(0), lab.node(1)
    eni = create_eni(ec2_client, lab, secondaries=0, node=a)
    ec2_client.attach_network_interface(
        NetworkInterfaceId=eni["NetworkInterfaceId"], InstanceId=a.instance_id, DeviceIndex=1)
    out = ec2_client.assign_private_ip_addresses(
        NetworkInterfaceId=eni["NetworkInterfaceId"], Ipv4PrefixCount=1)
    block = ipaddress.ip_network(out["AssignedIpv4Prefixes"][0]["Ipv4Prefix"])
    first, last = str(block[0]), str(block[15])
    lab.sync_addresses()
    # wrong: node b claims an address of a's prefix
    run_in(b.netns, "ip", "addr", "add", f"{first}/32", "dev", "eth0", check=True)
    assert not ping(a.netns, first, attempts=1)
    run_in(b.netns, "ip", "addr", "del", f"{first}/32", "dev", "eth0", check=True)
    # right: on the ENI holding the prefix, the first and the last of its 16 addresses
    link = lab.wait_for_link(a.instance_id, eni["MacAddress"])
    run_in(a.netns, "ip", "link", "set", link, "up", check=True)
    for addr in (first, last):
        run_in(a.netns, "ip", "addr", "add", f"{addr}/32", "dev", link, check=True)
    assert ping(b.netns, first) and ping(b.netns, last)
