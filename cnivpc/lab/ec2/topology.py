"""The standard lab topology every test starts from, built in-process on moto's backend.

Owns :func:`create`, :class:`Topology` and :class:`InstanceInfo`. Layout (defaults):

* VPC ``10.0.0.0/16`` (optionally a secondary CIDR, e.g. ``100.64.0.0/16``, for pod subnets --
  the "custom networking" shape);
* per AZ one small *node* subnet (``10.0.<i>.0/24``) and one *pod* subnet (a ``/20``; tagged
  ``{"cnivpc": "pods"}`` so cnivpc can find it with a ``tag:cnivpc`` filter);
* one security group ``cnivpc-lab``;
* IPv6 (``ipv6=True``, the default): the VPC gets an Amazon-provided /56 (moto picks it, as AWS
  does) and every subnet a /64 of it (node subnet of AZ ``i``: the ``i``-th /64, pod subnet: the
  ``0x80 + i``-th); ``ipv6=False`` builds an IPv4-only VPC (no IPv6 anywhere, as before);
* :meth:`Topology.run_instance` launches an instance of a real type into a node subnet and returns
  its id, primary ENI, MAC and primary IP. ENI/IP limits come from that type's
  DescribeInstanceTypes data (see :mod:`.limits`).
* :func:`fragment` scatters single addresses over a subnet (on unattached "squatter" ENIs) so that
  no aligned /28 stays free while most addresses do: the state in which EC2 answers prefix
  requests with ``InsufficientCidrBlocks``.

Built through moto's backend methods under the lab lock (no HTTP, no throttling, no latency):
setup is instant and never competes with the code under test for token buckets. Launches still go
through the lab's backend patches (address allocation, DeleteOnTermination default).
Imports no moto module and no server code (the lab is reached through a structural type).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .addressing import SubnetIpv4
from .state import LabState


class LabLike(Protocol):
    """What the topology needs of :class:`~.server.Ec2Lab` (kept structural: no import cycle)."""

    @property
    def region(self) -> str: ...

    @property
    def state(self) -> LabState: ...


POD_TAGS: Mapping[str, str] = {"cnivpc": "pods"}
NODE_TAGS: Mapping[str, str] = {"cnivpc": "nodes"}


@dataclass(frozen=True)
class InstanceInfo:
    instance_id: str
    instance_type: str
    availability_zone: str
    subnet_id: str
    eni_id: str  # primary ENI (device index 0)
    mac: str
    private_ip: str
    attachment_id: str


@dataclass
class Topology:
    lab: LabLike
    vpc_id: str
    vpc_cidr: str
    secondary_cidr: str | None
    security_group_id: str
    azs: tuple[str, ...]
    node_subnets: dict[str, str] = field(default_factory=dict)  # az -> subnet id
    pod_subnets: dict[str, str] = field(default_factory=dict)  # az -> subnet id (tagged)
    vpc_ipv6_cidr: str | None = None  # the Amazon-provided /56 (None: IPv4-only VPC)
    subnet_ipv6: dict[str, str] = field(default_factory=dict)  # subnet id -> its /64
    instances: list[InstanceInfo] = field(default_factory=list)

    def run_instance(
        self,
        instance_type: str = "c5.xlarge",
        subnet: str | None = None,
        *,
        tags: Mapping[str, str] | None = None,
    ) -> InstanceInfo:
        """Launch one instance into ``subnet`` (default: the first AZ's node subnet)."""
        subnet_id = subnet or self.node_subnets[self.azs[0]]
        state = self.lab.state
        with state.lock:
            backend = state.backend
            image_id = _any_image(backend)
            kwargs: dict[str, Any] = {
                "instance_type": instance_type,
                "is_instance_type_default": False,
                "subnet_id": subnet_id,
                "security_group_ids": [self.security_group_id],
                "region_name": self.lab.region,
                "tags": {"instance": dict(tags)} if tags else {},
                "nics": [],
            }
            reservation = backend.run_instances(image_id, 1, None, [], **kwargs)
            instance = reservation.instances[0]
            eni = instance.nics[0]
            info = InstanceInfo(
                instance_id=instance.id,
                instance_type=instance_type,
                availability_zone=eni.subnet.availability_zone,
                subnet_id=eni.subnet.id,
                eni_id=eni.id,
                mac=eni.mac_address,
                private_ip=eni.private_ip_address,
                attachment_id=eni.attachment_id,
            )
        state.flush_events()
        self.instances.append(info)
        return info

    def terminate(self, instance_id: str) -> None:
        """TerminateInstances in-process (fires the detach / DeleteOnTermination events)."""
        state = self.lab.state
        with state.lock:
            state.backend.terminate_instances([instance_id])
        state.flush_events()

    def pod_subnet(self, az: str | None = None) -> str:
        return self.pod_subnets[az or self.azs[0]]

    def fragment(self, subnet: str | None = None, *, leave: int = 0) -> Fragmentation:
        """:func:`fragment` on ``subnet`` (default: the first AZ's pod subnet)."""
        return fragment(self.lab, subnet or self.pod_subnet(), leave=leave)

    def node_subnet(self, az: str | None = None) -> str:
        return self.node_subnets[az or self.azs[0]]


def create(
    lab: LabLike,
    *,
    azs: Sequence[str] = ("a", "b"),
    vpc_cidr: str = "10.0.0.0/16",
    secondary_cidr: str | None = None,
    node_prefix: int = 24,
    pod_prefix: int = 20,
    pod_tags: Mapping[str, str] = POD_TAGS,
    ipv6: bool = True,
) -> Topology:
    """Create the standard VPC. ``azs`` are suffixes (``"a"``) or full names (``"us-east-1a"``)."""
    zones = tuple(az if az[-1].isalpha() and len(az) > 1 else lab.region + az for az in azs)
    state = lab.state
    vpc_net = ipaddress.IPv4Network(vpc_cidr)
    node_nets = list(vpc_net.subnets(new_prefix=node_prefix))
    if secondary_cidr:
        pod_nets = list(ipaddress.IPv4Network(secondary_cidr).subnets(new_prefix=pod_prefix))
    else:
        # Skip the pod-sized block that holds the node subnets.
        pod_nets = list(vpc_net.subnets(new_prefix=pod_prefix))[1:]
    with state.lock:
        backend = state.backend
        vpc = backend.create_vpc(cidr_block=vpc_cidr, tags=[{"Key": "Name", "Value": "cnivpc-lab"}],
                                 amazon_provided_ipv6_cidr_block=ipv6)
        v6_nets: list[ipaddress.IPv6Network] = []
        if ipv6:
            assoc = vpc.get_cidr_block_association_set(ipv6=True)[0]
            # moto writes its random /56 uncompressed ("...:0500::/56"); EC2 and IMDS show
            # the canonical form, and clients compare strings
            assoc["cidr_block"] = str(ipaddress.IPv6Network(assoc["cidr_block"]))
            v6_nets = list(ipaddress.IPv6Network(assoc["cidr_block"]).subnets(new_prefix=64))
        if secondary_cidr:
            backend.associate_vpc_cidr_block(vpc.id, secondary_cidr, False)
        group = backend.create_security_group("cnivpc-lab", "cnivpc lab nodes and pods", vpc.id)
        topo = Topology(
            lab=lab,
            vpc_id=vpc.id,
            vpc_cidr=vpc_cidr,
            secondary_cidr=secondary_cidr,
            security_group_id=group.id,
            azs=zones,
            vpc_ipv6_cidr=str(v6_nets[0].supernet(new_prefix=56)) if v6_nets else None,
        )
        for i, zone in enumerate(zones):
            node = backend.create_subnet(
                vpc.id,
                str(node_nets[i]),
                availability_zone=zone,
                tags={"subnet": {**NODE_TAGS, "Name": f"nodes-{zone}"}},
            )
            pods = backend.create_subnet(
                vpc.id,
                str(pod_nets[i]),
                availability_zone=zone,
                tags={"subnet": {**pod_tags, "Name": f"pods-{zone}"}},
            )
            topo.node_subnets[zone] = node.id
            topo.pod_subnets[zone] = pods.id
            if v6_nets:
                for subnet, net in ((node, v6_nets[i]), (pods, v6_nets[0x80 + i])):
                    subnet.attach_ipv6_cidr_block_associations(str(net))
                    topo.subnet_ipv6[subnet.id] = str(net)
    return topo


SQUATTER_DESCRIPTION = "cnivpc-lab fragmentation"
# Addresses per squatter ENI: the most an unattached ENI may hold (limits.UNATTACHED_IPV4_PER_ENI;
# not imported: limits reads moto's data table, and this module imports no moto).
SQUATTER_ADDRESSES = 50


@dataclass(frozen=True)
class Fragmentation:
    """What :func:`fragment` did: the squatter ENIs, the addresses they hold, what stays free."""

    subnet_id: str
    enis: tuple[str, ...]
    addresses: tuple[str, ...]
    free_blocks: tuple[str, ...]  # the /28s left for prefixes (``leave`` of them)
    free_addresses: int  # single addresses still free for automatic assignment


def fragment(lab: LabLike, subnet_id: str, *, leave: int = 0) -> Fragmentation:
    """Take one address (base + 8) of every free aligned /28 of the subnet but the first ``leave``
    ones an automatic prefix assignment would pick, on new unattached ENIs (described
    ``cnivpc-lab fragmentation``, up to 50 addresses each), as other tenants of a busy subnet
    would. Afterwards prefix requests for more than ``leave`` blocks answer
    ``InsufficientCidrBlocks`` although 14 of every 16 addresses stay free; deleting the
    squatter ENIs undoes it. In-process under the lab lock, like the rest of the topology.
    """
    state = lab.state
    with state.lock:
        backend = state.backend
        subnet = backend.get_subnet(subnet_id)
        space = SubnetIpv4(backend, subnet)
        blocks = space.eligible_blocks()
        kept = blocks[:leave]
        taken = [str(block.network_address + 8) for block in blocks[leave:]]
        enis: list[str] = []
        for start in range(0, len(taken), SQUATTER_ADDRESSES):
            chunk = taken[start : start + SQUATTER_ADDRESSES]
            eni = backend.create_network_interface(
                subnet,
                chunk[0],
                [{"Primary": n == 0, "PrivateIpAddress": a} for n, a in enumerate(chunk)],
                description=SQUATTER_DESCRIPTION,
            )
            enis.append(eni.id)
        free = SubnetIpv4(backend, subnet).free_count
    return Fragmentation(
        subnet_id=subnet_id,
        enis=tuple(enis),
        addresses=tuple(taken),
        free_blocks=tuple(str(b) for b in kept),
        free_addresses=free,
    )


def _any_image(backend: Any) -> str:
    images = getattr(backend, "amis", {})
    for image_id in images:
        return str(image_id)
    return "ami-12c6146b"
