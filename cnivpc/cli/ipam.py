"""``cnivpc ipam …``: look inside the IPAM and operate it by hand.

Read-only (never take the IPAM lock, never change anything):
  allocations   pods and the IPs they hold (from the store)
  free          free IPs, with the cooldown each still has
  enis          the node's ENIs: device, link, subnet, IPs used/free/total
  subnets       subnets a new ENI may use (VPC, AZ, tags), most free first
  limits        ENIs and IPv4 per ENI of this instance type, and max pods
  vpc-cidrs     the VPC's CIDRs (metadata and, for affected families, EC2)
  peer-cidrs    CIDRs of peered VPCs
  bugs          known instance metadata bugs and whether this instance has them
Operations (take the lock):
  warm                      bring the pool up to its warm level now (warmIPTarget free IPs,
                            warmENIThreshold free + room): at node start, before the first pod
  grow [--count N]          assign N more IPs to the pool (an ENI with room, or a new ENI)
  new-eni [--count N]       attach a new ENI with N IPs (default: as many as it can hold)
  remove-eni <eni> [--force]  detach and delete a pod ENI (refused while pods use it)
  release <ip> [--force]    free an IP held by a pod (only when that pod is gone)
  trim [--keep N]           unassign free IPs beyond N (past their cooldown) in EC2

Imports the IPAM's store/node/allocator; EC2 (botocore) only for commands that need it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any, TextIO

from ..aws.metadata import Metadata
from ..cni.errors import CniError
from ..plugins.ipam.allocator import Allocator
from ..plugins.ipam.config import IpamConf
from ..plugins.ipam.node import BROKEN_CIDR_FAMILIES, Node
from ..plugins.ipam.store import Store
from .context import add_conf_arguments, load_ipam_conf
from .exits import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, CliError
from .maxpods import compute
from .output import emit_json, table

Handler = Callable[[argparse.Namespace, IpamConf, TextIO], int]


def _open(conf: IpamConf, timeout: float = 30.0) -> tuple[Store, Node]:
    store = Store.open(conf.data_dir)
    return store, Node(store, deadline=time.monotonic() + timeout, metadata=Metadata())


def _show(args: argparse.Namespace, out: TextIO, headers: list[str],
          rows: list[dict[str, Any]]) -> int:
    if args.json:
        emit_json(out, rows)
    else:
        table(out, headers, [[r[h] for h in headers] for r in rows])
    return EXIT_OK


def allocations(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    with Store.open(conf.data_dir) as store:
        now = time.time()
        rows = [{"pod": a.pod or "-", "container": a.container_id[:12], "ifname": a.ifname,
                 "ip": a.ip, "eni": a.eni_id, "age": _age(now - a.allocated_at)}
                for a in store.allocations()]
    return _show(args, out, ["pod", "container", "ifname", "ip", "eni", "age"], rows)


def free(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    with Store.open(conf.data_dir) as store:
        now = time.time()
        rows = [{"ip": f.ip, "eni": f.eni_id,
                 "ready_in": _age(f.freed_at + conf.reuse_ip_wait - now) if
                 f.freed_at + conf.reuse_ip_wait > now else "ready"}
                for f in store.free_ips()]
    return _show(args, out, ["ip", "eni", "ready_in"], rows)


def enis(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, node = _open(conf)
    with store:
        counts = store.ip_counts()
        held: dict[str, int] = {}
        for a in store.allocations():
            held[a.eni_id] = held.get(a.eni_id, 0) + 1
        records = {e.eni_id: e for e in store.enis()}
        rows = []
        for eni in node.interfaces():
            record = records.get(eni.eni_id)
            rows.append({"device": eni.device_number, "eni": eni.eni_id, "mac": eni.mac,
                         "link": record.link if record else "-", "subnet": eni.subnet_id,
                         "cidr": eni.subnet_cidr, "ips": len(eni.ipv4s),
                         "pods": held.get(eni.eni_id, 0),
                         "pool": counts.get(eni.eni_id, 0) - held.get(eni.eni_id, 0),
                         "security_groups": list(eni.security_group_ids)})
    return _show(args, out, ["device", "eni", "mac", "link", "subnet", "cidr", "ips", "pods",
                             "pool", "security_groups"], rows)


def subnets(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, node = _open(conf)
    with store:
        boot = node.interfaces()[0]
        rows = [{"subnet": s.subnet_id, "cidr": s.cidr, "available": s.available,
                 "matches_tags": all(s.tags.get(k) == v for k, v in conf.subnet_tags.items()),
                 "tags": s.tags} for s in node.subnets(boot.vpc_id)]
    return _show(args, out, ["subnet", "cidr", "available", "matches_tags", "tags"], rows)


def limits(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, node = _open(conf)
    with store:
        lim = node.limits()
        row = {"instance_type": node.identity.instance_type, "enis": lim.enis,
               "ipv4_per_eni": lim.ipv4_per_eni, "interface_index": conf.interface_index,
               "max_pods": compute(lim.enis, lim.ipv4_per_eni, conf.interface_index),
               "source": "fallback" if lim.fallback else "DescribeInstanceTypes"}
    return _show(args, out, list(row), [row])


def vpc_cidrs(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, node = _open(conf)
    with store:
        rows = [{"eni": e.eni_id, "metadata": list(e.vpc_cidrs), "used": node.vpc_cidrs(e)}
                for e in node.interfaces()]
    return _show(args, out, ["eni", "metadata", "used"], rows)


def peer_cidrs(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, node = _open(conf)
    with store:
        vpc = node.interfaces()[0].vpc_id
        rows = [{"vpc": vpc, "peer_cidr": c} for c in node.peer_cidrs(vpc)]
    return _show(args, out, ["vpc", "peer_cidr"], rows)


def bugs(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, node = _open(conf)
    with store:
        family = node.identity.instance_type.split(".")[0]
    rows = [{"bug": "broken_cidr", "affected": family in BROKEN_CIDR_FAMILIES,
             "meaning": "metadata omits secondary VPC CIDRs; cnivpc asks EC2 instead"}]
    return _show(args, out, ["bug", "affected", "meaning"], rows)


def warm(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    """Synchronous and idempotent: each piece of EC2 work it did, one line; a warm pool costs
    no EC2 mutation. Exit 1 (EXIT_ERROR) when EC2 refuses or throttles past the timeout."""
    store, node = _open(conf, timeout=conf.timeout)
    with store:
        allocator = Allocator(conf, store, node)
        started = time.monotonic()
        plans = allocator.warm()
        per_eni = node.limits().ipv4_per_eni if conf.warm_ip_target > 0 else 0
        free, room = allocator.pool_level(per_eni) if per_eni else (len(store.free_ips()), 0)
        threshold = allocator.eni_threshold(per_eni) if per_eni else 0
        calls = node.ec2_calls
    actions = [f"{p.kind} {p.count} IPs" + (f" on {p.eni_id}" if p.eni_id else
                                            f" (new ENI at device {p.device_index})")
               for p in plans]
    row = {"actions": actions, "free": free, "room": room, "warm_ip_target": conf.warm_ip_target,
           "warm_eni_threshold": threshold, "seconds": round(time.monotonic() - started, 2),
           "ec2_calls": calls}
    if args.json:
        emit_json(out, row)
        return EXIT_OK
    for action in actions:
        out.write(f"{action}\n")
    if conf.warm_ip_target <= 0:
        out.write("warmIPTarget is 0: no warm pool to keep\n")
    else:
        verb = "warmed" if plans else "already warm"
        out.write(f"{verb}: {free} free IPs (target {conf.warm_ip_target}), room for {room} more "
                  f"on attached ENIs (next ENI below {threshold} free + room)\n")
    return EXIT_OK


def grow(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    if args.count < 1:
        raise CliError("--count must be at least 1", exit_code=EXIT_USAGE)
    conf = conf.model_copy(update={"warm_ip_target": 0, "ip_batch_size": args.count})
    store, node = _open(conf, timeout=conf.timeout)
    with store:
        before = len(store.free_ips())
        plan = Allocator(conf, store, node).grow(args.count)
        added = len(store.free_ips()) - before
    out.write(f"{plan.kind}: {added} IPs added to the pool "
              f"({'ENI ' + plan.eni_id if plan.eni_id else 'new ENI'})\n")
    return EXIT_OK


def new_eni(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    if args.count is not None and args.count < 1:
        raise CliError("--count must be at least 1", exit_code=EXIT_USAGE)
    conf = conf.model_copy(update={"warm_ip_target": 0, "ip_batch_size": args.count or 0})
    store, node = _open(conf, timeout=conf.timeout)
    with store:
        before = {e.eni_id for e in store.enis()}
        Allocator(conf, store, node).grow(args.count or 1, new_eni=True)
        added = [e for e in store.enis() if e.eni_id not in before]
        free = {e.eni_id: len(store.free_ips(eni_ids=[e.eni_id])) for e in added}
    for eni in added:
        out.write(f"attached {eni.eni_id} at device {eni.device_index} ({eni.link}) in "
                  f"{eni.subnet_id} with {free[eni.eni_id]} IPs\n")
    return EXIT_OK


def remove_eni(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, node = _open(conf, timeout=conf.timeout)
    with store:
        try:
            held = Allocator(conf, store, node).remove_eni(args.eni, force=args.force)
        except CniError as exc:
            hint = "add --force to cut those pods off" if "use" in exc.msg else ""
            raise CliError(exc.msg, hint, EXIT_USAGE) from exc
    lost = f"; {len(held)} pod(s) lost their IP" if held else ""
    out.write(f"detached and deleted {args.eni}{lost}\n")
    return EXIT_OK


def release(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, node = _open(conf)
    with store:
        held = [a for a in store.allocations() if a.ip == args.ip]
        if not held:
            raise CliError(f"{args.ip} is not held by any pod", "see 'cnivpc ipam allocations'",
                           EXIT_NOT_FOUND)
        alloc = held[0]
        if not args.force:
            raise CliError(f"{args.ip} is held by {alloc.pod or alloc.container_id[:12]}",
                           "release it only if that pod is gone: add --force", EXIT_USAGE)
        Allocator(conf, store, node).release(alloc.container_id, alloc.ifname)
    out.write(f"released {args.ip} (was {alloc.pod or alloc.container_id[:12]})\n")
    return EXIT_OK


COMMANDS: dict[str, tuple[Handler, str]] = {
    "allocations": (allocations, "pods and the IPs they hold"),
    "free": (free, "free IPs and their cooldown"),
    "enis": (enis, "ENIs with their IPs"),
    "subnets": (subnets, "subnets usable for new ENIs"),
    "limits": (limits, "instance limits and max pods"),
    "vpc-cidrs": (vpc_cidrs, "VPC CIDRs routed via the ENIs"),
    "peer-cidrs": (peer_cidrs, "peered VPC CIDRs"),
    "bugs": (bugs, "known instance bugs"),
    "warm": (warm, "bring the pool up to its warm level now"),
    "grow": (grow, "assign more IPs to the pool"),
    "new-eni": (new_eni, "attach a new ENI"),
    "remove-eni": (remove_eni, "detach and delete a pod ENI"),
    "release": (release, "free an IP held by a gone pod"),
}


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="cnivpc ipam", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = root.add_subparsers(dest="command", required=True, metavar="<command>")
    for name, (_, summary) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary)
        add_conf_arguments(p)
        if name == "grow":
            p.add_argument("--count", type=int, default=1, help="IPs to add (default 1)")
        if name == "new-eni":
            p.add_argument("--count", type=int, help="IPs on it (default: all it can hold)")
        if name == "remove-eni":
            p.add_argument("eni", help="the ENI id (eni-...)")
            p.add_argument("--force", action="store_true", help="even if pods use it")
        if name == "release":
            p.add_argument("ip", help="the IP to free")
            p.add_argument("--force", action="store_true", help="free it even if held")
    return root


def main(args: list[str], out: TextIO) -> int:
    parsed = parser().parse_args(args)
    handler, _ = COMMANDS[parsed.command]
    return handler(parsed, load_ipam_conf(parsed), out)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
