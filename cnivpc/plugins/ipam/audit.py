"""``cnivpc ipam audit``: a ``Snapshot`` of the node (the store, EC2's view of the instance's ENIs
and of the ENIs cnivpc tagged for it, the kernel's links) checked against the invariants
(``invariants.violations``), and ``repair`` for the violations that have a safe fix.

Imports the store, the node view, the allocator (repairs go through its lock and EC2 work) and,
lazily, ``net.eni``.
"""

from __future__ import annotations

from typing import Any

from ...aws.ec2 import Ec2Error
from ...cni import logs
from ...cni.errors import CniError
from . import reconcile as reconciling
from .allocator import Allocator
from .config import IpamConf
from .ec2work import TAG_CREATED, TAG_INSTANCE
from .invariants import Ec2Eni, LinkState, OpState, Snapshot, Violation
from .node import Node
from .prefixes import addresses as prefix_addresses
from .reconcile import DOT_PENDING_TTL
from .store import Store

log = logs.get("ipam")


def snapshot(store: Store, node: Node, conf: IpamConf, now: float, *,
             ask_ec2: bool = True) -> Snapshot:
    from ...net import eni as eni_links

    instance_id = node.identity.instance_id
    links = {mac: LinkState(link.name, link.up, link.mtu)
             for mac, link in eni_links.links_by_mac().items()}
    ec2 = _ec2_view(node, instance_id) if ask_ec2 else None
    with store.transaction():
        enis = tuple(store.enis())
        boot = next((e for e in enis if e.device_index == 0), None)
        boot_link = links.get(boot.mac.lower()) if boot else None
        return Snapshot(
            instance_id=instance_id, interface_index=conf.interface_index,
            node_mtu=conf.mtu or (boot_link.mtu if boot_link else 0), now=now,
            allocations=tuple(store.allocations()), free=tuple(store.free_ips()), enis=enis,
            ops=tuple(OpState(op.id, op.kind, op.started, leased)
                      for op, leased in store.op_leases()),
            ec2=ec2, links=links, v6_leases=tuple(store.v6_leases()))


def _ec2_view(node: Node, instance_id: str) -> tuple[Ec2Eni, ...]:
    """The ENIs attached to this instance and those tagged as created for it (any state)."""
    seen: dict[str, dict[str, Any]] = {}
    for flt in ({"Name": "attachment.instance-id", "Values": [instance_id]},
                {"Name": f"tag:{TAG_INSTANCE}", "Values": [instance_id]}):
        for eni in node.ec2.paginate("DescribeNetworkInterfaces", "NetworkInterfaces",
                                     Filters=[flt], MaxResults=100):
            seen[eni["NetworkInterfaceId"]] = eni
    out = []
    for eni_id, eni in sorted(seen.items()):
        att = eni.get("Attachment") or {}
        tags = {t["Key"]: t["Value"] for t in eni.get("TagSet", [])}
        addresses = eni.get("PrivateIpAddresses", [])
        created = tags.get(TAG_CREATED, "")
        out.append(Ec2Eni(
            eni_id=eni_id, status=str(eni.get("Status", "")),
            instance_id=str(att.get("InstanceId", "")) if att.get("Status") != "detached" else "",
            device_index=int(att["DeviceIndex"]) if "DeviceIndex" in att else None,
            ips=tuple(a["PrivateIpAddress"] for a in addresses) + tuple(
                ip for p in eni.get("Ipv4Prefixes", [])
                for ip in prefix_addresses(p["Ipv4Prefix"])),
            primary_ip=str(eni.get("PrivateIpAddress") or next(
                (a["PrivateIpAddress"] for a in addresses if a.get("Primary")), "")),
            delete_on_termination=bool(att.get("DeleteOnTermination", False)),
            ours=tags.get(TAG_INSTANCE) == instance_id,
            ipv6_prefixes=tuple(p["Ipv6Prefix"] for p in eni.get("Ipv6Prefixes", [])),
            created_at=float(created) if created.isdigit() else None))
    return tuple(out)


def repair(allocator: Allocator, found: list[Violation]) -> list[str]:
    """Apply the safe repair of each violation that has one; returns what was done. Store
    changes go through the allocator's lock; EC2 work outside it."""
    done: list[str] = []
    store, node, conf = allocator.store, allocator.node, allocator.conf
    by_repair: dict[str, list[Violation]] = {}
    for v in found:
        if v.repair:
            by_repair.setdefault(v.repair, []).append(v)
    if any(k in by_repair for k in ("reconcile", "reconcile (adopt it)",
                                    "reconcile (forget it)", "bring it up with the node's MTU")):
        obs = reconciling.observe(node, conf, allocator.now())
        with allocator.decide():
            reconciling.apply(store, conf, obs, allocator.now())
        done.append("reconciled the store with the instance (links brought up)")
    forget = sorted({v.subject for k in ("forget it (free)",) for v in by_repair.get(k, [])})
    if forget:
        with allocator.decide():
            free = {f.ip for f in store.free_ips()}
            gone = [ip for ip in forget if ip in free]
            store.forget(gone)
        done += [f"forgot free IP {ip}" for ip in gone]
    if "forget it" in by_repair:
        with store.transaction():
            store.ops()  # forgets the ops whose lease is gone or past the cap
        done.append("forgot the records of dead EC2 work")
    dot = [v.subject for v in by_repair.get("set DeleteOnTermination", [])]
    if dot:
        with store.transaction():
            for eni_id in dot:
                store.cache_put(f"dot-pending:{eni_id}", "", DOT_PENDING_TTL)
        allocator.ec2work.settle_delete_on_termination()
        with store.transaction():
            left = store.cache_items("dot-pending:")
        done += [f"set DeleteOnTermination on {e}" for e in dot if e not in left]
    for v in by_repair.get("delete it", []):
        try:
            node.ec2.call("DeleteNetworkInterface", NetworkInterfaceId=v.subject)
            done.append(f"deleted leaked ENI {v.subject}")
        except (Ec2Error, CniError) as exc:
            log.warning("could not delete leaked ENI %s: %s", v.subject, exc)
    return done
