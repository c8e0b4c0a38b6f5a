"""Fixtures for the lab's own tests: the strict EC2 lab, a plain moto to compare it with, clients.

* ``ec2_lab``      -- session-scoped :class:`Ec2Lab` ("zero" profile, throttling off), started once.
* ``lab``          -- function-scoped: the same lab after ``reset()`` (clean moto state, knobs off).
* ``ec2_client``   -- botocore EC2 client to the lab's URL (the real wire, dummy credentials).
* ``topo``         -- the standard topology on a clean lab.
* ``plain_moto``   -- session-scoped *unmodified* moto server in a subprocess (no lab code in
  it), for the "this fails on plain moto" half of every strictness test.
* ``endpoint``     -- parametrised over both: ``Endpoint(kind, client, topo)``; tests assert the
  AWS behaviour when ``kind == "lab"`` and the measured moto gap when ``kind == "plain"``.

Topology on plain moto is built over the wire (it has no in-process hook) with the same layout.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import botocore.config
import botocore.session
import pytest

from cnivpc.lab.ec2 import Ec2Lab, topology

REGION = "us-east-1"


@functools.cache
def make_client(
    url: str, *, retries: int = 0, read_timeout: float = 10.0, validate: bool = True
) -> Any:
    """botocore EC2 client; ``validate=False`` lets out-of-range values reach the server.

    Cached per arguments: creating a client costs 0.15-0.5 s on this host, and botocore clients
    are safe to share between threads.
    """
    session = botocore.session.get_session()
    session.set_credentials("testing", "testing")
    config = botocore.config.Config(
        region_name=REGION,
        retries={"total_max_attempts": retries + 1, "mode": "standard"},
        read_timeout=read_timeout,
        connect_timeout=5,
        parameter_validation=validate,
    )
    return session.create_client("ec2", endpoint_url=url, config=config)


@pytest.fixture(scope="session")
def ec2_lab() -> Iterator[Ec2Lab]:
    lab = Ec2Lab("zero", REGION, throttling=False)
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def lab(ec2_lab: Ec2Lab) -> Ec2Lab:
    ec2_lab.reset()
    ec2_lab.control.set_profile("zero")
    ec2_lab.control.set_throttling(False)
    return ec2_lab


@pytest.fixture(scope="session")
def _lab_client(ec2_lab: Ec2Lab) -> Any:
    return make_client(ec2_lab.url)


@pytest.fixture
def ec2_client(lab: Ec2Lab, _lab_client: Any) -> Any:
    return _lab_client


@pytest.fixture
def topo(lab: Ec2Lab) -> topology.Topology:
    return topology.create(lab)


# -- plain moto -----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PlainMoto:
    url: str
    client: Any

    def reset(self) -> None:
        req = urllib.request.Request(self.url + "/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()


@pytest.fixture(scope="session")
def plain_moto() -> Iterator[PlainMoto]:
    port = _free_port()
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/moto-api/", timeout=2) as r:
                    r.read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("plain moto server did not start") from None
                time.sleep(0.1)
        client = make_client(url)
        client.describe_regions()  # moto's lazy EC2 init (~1.5 s), once per session
        yield PlainMoto(url, client)
    finally:
        proc.kill()  # stateless test server: no need for a graceful (slow) shutdown
        proc.wait(timeout=10)


@dataclass
class PlainTopology:
    """The standard layout built over the wire on plain moto (same ids shape as Topology)."""

    client: Any
    vpc_id: str
    security_group_id: str
    node_subnets: dict[str, str]
    pod_subnets: dict[str, str]
    azs: tuple[str, ...]
    subnet_ipv6: dict[str, str]  # subnet id -> its /64 (as Topology.subnet_ipv6)

    def run_instance(self, instance_type: str = "c5.xlarge", subnet: str | None = None) -> Any:
        # Any id will do (moto validates AMIs only on request); DescribeImages costs seconds.
        r = self.client.run_instances(
            ImageId="ami-12c6146b",
            MinCount=1,
            MaxCount=1,
            InstanceType=instance_type,
            SubnetId=subnet or self.node_subnets[self.azs[0]],
            SecurityGroupIds=[self.security_group_id],
        )
        inst = r["Instances"][0]
        eni = inst["NetworkInterfaces"][0]
        return topology.InstanceInfo(
            instance_id=inst["InstanceId"],
            instance_type=instance_type,
            availability_zone=inst["Placement"]["AvailabilityZone"],
            subnet_id=eni["SubnetId"],
            eni_id=eni["NetworkInterfaceId"],
            mac=eni["MacAddress"],
            private_ip=eni["PrivateIpAddress"],
            attachment_id=eni["Attachment"]["AttachmentId"],
        )

    def pod_subnet(self, az: str | None = None) -> str:
        return self.pod_subnets[az or self.azs[0]]

    def node_subnet(self, az: str | None = None) -> str:
        return self.node_subnets[az or self.azs[0]]

    def terminate(self, instance_id: str) -> None:
        self.client.terminate_instances(InstanceIds=[instance_id])


def plain_topology(client: Any) -> PlainTopology:
    created = client.create_vpc(CidrBlock="10.0.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]
    vpc = created["VpcId"]
    block = created["Ipv6CidrBlockAssociationSet"][0]["Ipv6CidrBlock"]
    v6 = list(ipaddress.IPv6Network(block).subnets(new_prefix=64))  # as topology.create
    sg = client.create_security_group(GroupName="cnivpc-lab", Description="lab", VpcId=vpc)
    azs = (REGION + "a", REGION + "b")
    nodes: dict[str, str] = {}
    pods: dict[str, str] = {}
    subnet_ipv6: dict[str, str] = {}
    for i, az in enumerate(azs):
        nodes[az] = client.create_subnet(
            VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=az,
            Ipv6CidrBlock=str(v6[i]),
        )["Subnet"]["SubnetId"]
        pods[az] = client.create_subnet(
            VpcId=vpc,
            CidrBlock=f"10.0.{16 * (i + 1)}.0/20",
            AvailabilityZone=az,
            Ipv6CidrBlock=str(v6[0x80 + i]),
            TagSpecifications=[
                {"ResourceType": "subnet", "Tags": [{"Key": "cnivpc", "Value": "pods"}]}
            ],
        )["Subnet"]["SubnetId"]
        subnet_ipv6[nodes[az]], subnet_ipv6[pods[az]] = str(v6[i]), str(v6[0x80 + i])
    return PlainTopology(client, vpc, sg["GroupId"], nodes, pods, azs, subnet_ipv6)


@dataclass
class Endpoint:
    kind: str  # "lab" or "plain"
    client: Any
    topo: Any
    url: str

    @property
    def lab(self) -> bool:
        return self.kind == "lab"


@pytest.fixture(params=["lab", "plain"])
def endpoint(request: pytest.FixtureRequest) -> Endpoint:
    if request.param == "lab":
        lab_: Ec2Lab = request.getfixturevalue("lab")
        return Endpoint(
            "lab", request.getfixturevalue("_lab_client"), topology.create(lab_), lab_.url
        )
    plain: PlainMoto = request.getfixturevalue("plain_moto")
    # No reset (it costs moto's lazy EC2 init again, ~0.5 s): every test builds its own VPC and
    # only looks at its own resources.
    return Endpoint("plain", plain.client, plain_topology(plain.client), plain.url)
