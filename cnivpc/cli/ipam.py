"""``cnivpc ipam …``: look inside the IPAM and operate it by hand. The list of commands in
``--help`` is rendered from ``COMMANDS`` below, the table the parser is built from, so the two
cannot disagree (tests/cli/test_cli_help.py checks every command's help against its parser).

Read-only commands open the IPAM's state read-only and never create it, never take the IPAM
lock, never change anything (their EC2 calls, all Describe*, still draw on the node's shared
token bucket). Operations take the lock, as the plugin does.

Imports the IPAM's store/node/allocator; EC2 (botocore) only for commands that need it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from ..cni.errors import CniError
from ..cni.printable import printable
from ..plugins.ipam import decision as rules
from ..plugins.ipam.allocator import Allocator, read_pool
from ..plugins.ipam.config import IpamConf
from ..plugins.ipam.node import BROKEN_CIDR_FAMILIES
from ..plugins.ipam.store import FreeIP, Store
from . import dualstack
from .context import add_conf_arguments, load_ipam_conf, open_node
from .exits import EXIT_CHECK_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, CliError, Parser
from .maxpods import compute
from .output import emit_json, table

Handler = Callable[[argparse.Namespace, IpamConf, TextIO], int]


def _show(args: argparse.Namespace, out: TextIO, headers: list[str],
          rows: list[dict[str, Any]]) -> int:
    if args.json:
        emit_json(out, rows)
    else:
        table(out, headers, [[r[h] for h in headers] for r in rows])
    return EXIT_OK


def allocations(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, _ = open_node(conf, read_only=True)
    with store:
        now = time.time()
        egress = dualstack.egress(store)
        # IPv6-only pods have no VPC IPv4 (ip null), their node-local egress IPv4 apart.
        rows = [{"pod": a.pod or "-", "container": a.container_id[:12], "ifname": a.ifname,
                 "ip": a.ip or None, "ipv6": a.ipv6 or None, "eni": a.eni_id,
                 "egress_ip": egress.get((a.container_id, a.ifname)),
                 "age": _age(now - a.allocated_at)}
                for a in dualstack.attachments(store)]
    v6 = ["ipv6"] if dualstack.shown(conf.ipv6, (r["ipv6"] for r in rows)) else []
    v6 += ["egress_ip"] if egress else []
    if not args.json:
        for r in rows:
            r["ip"] = r["ip"] or "-"
    return _show(args, out, ["pod", "container", "ifname", "ip", *v6, "eni", "age"], rows)


def free(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, _ = open_node(conf, read_only=True)
    with store:
        now = time.time()
        rows = [{"ip": f.ip, "eni": f.eni_id, "prefix": f.prefix or "-",
                 "ready_in": _age(f.freed_at + conf.reuse_ip_wait - now) if
                 f.freed_at + conf.reuse_ip_wait > now else "ready"}
                for f in store.free_ips()]
    return _show(args, out, ["ip", "eni", "prefix", "ready_in"], rows)


def enis(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, node = open_node(conf, read_only=True, need_state=False, timeout=30)
    with store:
        counts = store.ip_counts()
        held: dict[str, int] = {}
        held6: dict[str, int] = {}
        for a in dualstack.attachments(store):
            held[a.eni_id] = held.get(a.eni_id, 0) + bool(a.ip)
            held6[a.eni_id] = held6.get(a.eni_id, 0) + bool(a.ipv6)
        records = {e.eni_id: e for e in store.enis()}
        rows = []
        # The metadata as it is (IPv6 included: two more local reads per ENI), not the store's
        # belief: an ENI's /80 assigned outside cnivpc shows too.
        for eni in node.interfaces(ipv6=True):
            record = records.get(eni.eni_id)
            rows.append({"device": eni.device_number, "eni": eni.eni_id, "mac": eni.mac,
                         "link": record.link if record else "-", "subnet": eni.subnet_id,
                         "cidr": eni.subnet_cidr, "ips": len(eni.ipv4s),
                         "prefixes": list(eni.ipv4_prefixes),
                         "pods": held.get(eni.eni_id, 0),
                         "pool": counts.get(eni.eni_id, 0) - held.get(eni.eni_id, 0),
                         "security_groups": list(eni.security_group_ids),
                         "ipv6_cidr": eni.subnet_ipv6_cidr or None,
                         "ipv6_prefixes": list(eni.ipv6_prefixes),
                         "ipv6_pods": held6.get(eni.eni_id, 0)})
    v6 = (["ipv6_cidr", "ipv6_prefixes"] if dualstack.shown(
        conf.ipv6, (r["ipv6_prefixes"] for r in rows)) else [])
    return _show(args, out, ["device", "eni", "mac", "link", "subnet", "cidr", "ips",
                             "prefixes", "pods", "pool", *v6, "security_groups"], rows)


def subnets(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, node = open_node(conf, read_only=True, need_state=False, timeout=30)
    with store:
        boot = node.interfaces()[0]
        rows = [{"subnet": s.subnet_id, "cidr": s.cidr, "ipv6_cidr": s.ipv6_cidr or None,
                 "available": s.available, "matches_tags": s.has_tags(conf.subnet_tags),
                 "tags": s.tags} for s in node.subnets(boot.vpc_id)]
    v6 = ["ipv6_cidr"] if dualstack.shown(conf.ipv6, (r["ipv6_cidr"] for r in rows)) else []
    return _show(args, out, ["subnet", "cidr", *v6, "available", "matches_tags", "tags"], rows)


def limits(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, node = open_node(conf, read_only=True, need_state=False, timeout=30)
    with store:
        lim = node.limits()
        itype = node.identity.instance_type
        row = {"instance_type": itype, "enis": lim.enis,
               "ipv4_per_eni": lim.ipv4_per_eni, "interface_index": conf.interface_index,
               "max_pods": compute(lim.enis, lim.ipv4_per_eni, conf.interface_index),
               "source": lim.source}
        # IPv6 per ENI (addresses, or /80 prefixes on Nitro: they count alike) is only
        # EC2's to say; the IPAM's cached limits do not keep it.
        v6, problem = dualstack.type_ipv6(node, itype)
        row.update(v6)
    if problem:
        sys.stderr.write(f"note: IPv6 per ENI unknown: {printable(problem)}\n")
    return _show(args, out, list(row), [row])


def vpc_cidrs(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, node = open_node(conf, read_only=True, need_state=False, timeout=30)
    with store:
        rows = [{"eni": e.eni_id, "metadata": list(e.vpc_cidrs), "used": node.vpc_cidrs(e),
                 "ipv6": dualstack.vpc_ipv6_cidrs(node, e.mac)}
                for e in node.interfaces()]
    v6 = ["ipv6"] if dualstack.shown(conf.ipv6, (r["ipv6"] for r in rows)) else []
    return _show(args, out, ["eni", "metadata", "used", *v6], rows)


def peer_cidrs(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, node = open_node(conf, read_only=True, need_state=False, timeout=30)
    with store:
        vpc = node.interfaces()[0].vpc_id
        rows = [{"vpc": vpc, "peer_cidr": c} for c in node.peer_cidrs(vpc)]
    return _show(args, out, ["vpc", "peer_cidr"], rows)


def addresses(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    """Lyft's ``addr``: what is configured, not what the store believes. Namespaces: the host,
    every one pinned under /var/run/netns, and every one an allocation recorded (a pod whose
    netns is only reachable through /proc/<pid>/ns/net). One a listing cannot enter is an
    error (after the table): a silent gap would make its addresses look free."""
    rows, unreadable = bound_addresses(conf)
    code = _show(args, out, ["netns", "link", "address", "pod"], rows)
    if unreadable:
        raise CliError("could not list addresses in " + ", ".join(unreadable),
                       "the listing above is incomplete: run as root; a netns that vanished "
                       "meanwhile is harmless")
    return code


NETNS_DIRS = ("/var/run/netns", "/run/netns")


def bound_addresses(conf: IpamConf) -> tuple[list[dict[str, Any]], list[str]]:
    """Every address on every link of the host and pod namespaces (rows), and the namespaces
    that could not be read. IPv6 too (a dual-stack pod's address is on its ipvlan slave), but
    not link-local: every link makes its own fe80:: address, no IPAM ever handed one out, and
    they would double the listing without naming anything an operator could free."""
    from ..net import links, netns
    from ..plugins.ipam.session import StoreMissing

    pods: dict[str, str] = {}
    paths: list[str] = []
    try:
        store, _ = open_node(conf, read_only=True)
        with store:
            egress = dualstack.egress(store)
            for a in dualstack.attachments(store):
                for ip in (a.ip, a.ipv6, egress.get((a.container_id, a.ifname), "")):
                    if ip:
                        pods[ip] = a.pod or a.container_id[:12]
                if a.netns:
                    paths.append(a.netns)
    except StoreMissing:
        pass  # no allocation recorded: the pinned namespaces are all there is to see
    for directory in NETNS_DIRS:
        if os.path.isdir(directory):
            paths += sorted(os.path.join(directory, n) for n in os.listdir(directory))
    seen: set[tuple[int, int]] = set()
    try:
        st = os.stat("/proc/self/ns/net")
        seen.add((st.st_dev, st.st_ino))
    except OSError:
        pass
    rows: list[dict[str, Any]] = []
    unreadable: list[str] = []
    for path in [None, *paths]:
        if path is not None:
            try:
                st = os.stat(path)
            except OSError:
                continue  # gone since it was listed (a pod deleted meanwhile)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
        try:
            with netns.iproute(path) as ipr:
                for link in links.list_links(ipr):
                    for addr in links.addresses(ipr, link.index):
                        if addr.version == 6 and addr.ip.is_link_local:
                            continue
                        rows.append({"netns": path or "host", "link": link.name,
                                     "address": str(addr), "pod": pods.get(str(addr.ip), "-")})
        except Exception as exc:  # any failure is reported (below), never skipped silently
            unreadable.append(f"{path} ({exc})")
    return rows, unreadable


def bugs(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, node = open_node(conf, read_only=True, need_state=False, timeout=30)
    with store:
        family = node.identity.instance_type.split(".")[0]
    rows = [{"bug": "broken_cidr", "affected": family in BROKEN_CIDR_FAMILIES,
             "meaning": "metadata omits secondary VPC CIDRs; cnivpc asks EC2 instead"}]
    return _show(args, out, ["bug", "affected", "meaning"], rows)


def warm(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    """Synchronous and idempotent: each piece of EC2 work it did, one line; a warm pool costs
    no EC2 mutation. Exit 1 (EXIT_ERROR) when EC2 refuses or throttles past the timeout."""
    store, node = open_node(conf, read_only=False)
    with store:
        allocator = Allocator(conf, store, node)
        started = time.monotonic()
        plans = allocator.warm()
        per_eni = node.limits().pod_ips_per_eni if conf.warm_ip_target > 0 else 0
        pool = read_pool(store, time.time())
        free, room = rules.pool_level(pool, conf, per_eni) if per_eni else (len(pool.free), 0)
        threshold = rules.eni_threshold(conf, per_eni, node.limits()) if per_eni else 0
        calls = node.ec2_calls
    actions = [(f"{p.kind} {p.count} IPs" if p.count or conf.ipv4 else f"{p.kind} an ENI for "
                "IPv6 pods (no secondary IPv4)") + (f" on {p.eni_id}" if p.eni_id else
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
    if not conf.ipv4:
        out.write("ipv4 is false: no IPv4 pool; the IPv6 pods' ENI and its /80 are ready\n")
    elif conf.warm_ip_target <= 0:
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
    store, node = open_node(conf, read_only=False)
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
    store, node = open_node(conf, read_only=False)
    with store:
        before = {e.eni_id for e in store.enis()}
        Allocator(conf, store, node).grow(args.count or 1, new_eni=True)
        added = [e for e in store.enis() if e.eni_id not in before]
        free = {e.eni_id: len(store.free_ips(eni_ids=[e.eni_id])) for e in added}
    for eni in added:
        v6 = (f" and the IPv6 prefix {', '.join(eni.ipv6_prefixes)}" if eni.ipv6_prefixes
              else "")
        out.write(f"attached {eni.eni_id} at device {eni.device_index} ({eni.link}) in "
                  f"{eni.subnet_id} with {free[eni.eni_id]} IPs{v6}\n")
    return EXIT_OK


def remove_eni(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    store, node = open_node(conf, read_only=False)
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
    """By either address of a dual-stack pod: the attachment is released whole (its IPv4
    back to the pool, its IPv6 back to its ENI's /80), as the pod's DEL would."""
    ip = str(dualstack.canonical(args.ip))  # before the state is opened (and maybe created)
    store, node = open_node(conf, read_only=False)
    with store:
        alloc = dualstack.holder(dualstack.attachments(store), ip)
        if alloc is None:
            raise CliError(f"{ip} is not held by any pod", "see 'cnivpc ipam allocations'",
                           EXIT_NOT_FOUND)
        who = alloc.pod or alloc.container_id[:12]
        if not args.force:
            also = f" (with {dualstack.both(alloc)})" if alloc.ipv6 else ""
            raise CliError(f"{ip} is held by {who}{also}",
                           "release it only if that pod is gone: add --force", EXIT_USAGE)
        dualstack.release(Allocator(conf, store, node), alloc)
    out.write(f"released {dualstack.both(alloc)} (was {printable(who)})\n")
    return EXIT_OK


@dataclass(frozen=True)
class Command:
    handler: Handler
    summary: str
    read_only: bool
    args: str = ""  # positional arguments and options, as --help shows them


def unassign(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    """Lyft's ``deallocate``, made safe: an IP an allocation holds is refused (release it
    first, if its pod is gone), so is an ENI's primary IP (EC2 would refuse it), and an IP
    bound anywhere on the node unless --force. The pool forgets it under the IPAM lock before
    EC2 is asked, and gets it back if EC2 refuses."""
    address = dualstack.canonical(args.ip)
    args.ip = str(address)
    if address.version == 6:
        _refuse_ipv6(args.ip, conf)
    store, node = open_node(conf, read_only=False)
    with store:
        allocator = Allocator(conf, store, node)
        _refuse_if_held(args.ip, store)
        eni_id = _eni_holding(args.ip, store, node)
        rows, _ = bound_addresses(conf) if not args.force else ([], [])
        bound = [r for r in rows if r["address"].split("/")[0] == args.ip]
        if bound:
            raise CliError(f"{args.ip} is bound on this node: " + ", ".join(
                f"{r['link']} in {r['netns']}" for r in bound),
                "something uses it outside cnivpc's records; add --force to unassign anyway",
                EXIT_USAGE)
        with allocator.decide():
            _refuse_if_held(args.ip, store)  # again, under the lock: an ADD may have taken it
            taken = store.take_free([args.ip])
        if not taken:  # not in the pool (assigned outside cnivpc): unassign it all the same
            taken = [FreeIP(args.ip, eni_id, 0.0)]
        outcome = allocator.ec2work.unassign(taken)
        if args.ip not in outcome.done:
            where = ("it is back in the pool" if outcome.kept else
                     "EC2 could not be asked whether it was done; it stays out of the pool "
                     "until reconciliation finds it")
            raise CliError(f"could not unassign {args.ip} from {eni_id}: "
                           f"{'; '.join(outcome.errors)}", where)
    out.write(f"unassigned {args.ip} from {eni_id}\n")
    return EXIT_OK


def audit(args: argparse.Namespace, conf: IpamConf, out: TextIO) -> int:
    """Every violation of the IPAM's invariants (``plugins.ipam.invariants``) on this node:
    the store against EC2 and the kernel. Read-only; ``--repair`` applies the safe repairs
    under the IPAM lock, then audits again. Exit 3 while any violation is left."""
    from ..plugins.ipam import audit as auditing

    store, node = open_node(conf, read_only=not args.repair)
    with store:
        allocator = Allocator(conf, store, node)
        found = auditing.snapshot(store, node, conf, time.time(), ask_ec2=not args.no_ec2)
        from ..plugins.ipam.invariants import violations

        problems = violations(found)
        repaired: list[str] = []
        if args.repair and problems:
            repaired = auditing.repair(allocator, problems)
            problems = violations(auditing.snapshot(store, node, conf, time.time(),
                                                    ask_ec2=not args.no_ec2))
    rows = [{"invariant": v.invariant, "subject": v.subject, "detail": v.detail,
             "repair": v.repair or "-"} for v in problems]
    if args.json:
        emit_json(out, {"violations": rows, "repaired": repaired, "ec2": not args.no_ec2})
    else:
        for line in repaired:
            out.write(f"repaired: {line}\n")
        if rows:
            table(out, ["invariant", "subject", "detail", "repair"],
                  [[r["invariant"], r["subject"], r["detail"], r["repair"]] for r in rows])
        else:
            out.write("no violation" + ("" if not args.no_ec2 else " (EC2 not asked)") + "\n")
    return EXIT_CHECK_FAILED if rows else EXIT_OK


def _refuse_if_held(ip: str, store: Store) -> None:
    alloc = dualstack.holder(dualstack.attachments(store), ip)
    if alloc is not None:
        raise CliError(f"{ip} is held by {alloc.pod or alloc.container_id[:12]}",
                       f"if that pod is gone: cnivpc ipam release {ip} --force, then "
                       "unassign it", EXIT_USAGE)


def _refuse_ipv6(ip: str, conf: IpamConf) -> None:
    """An IPv6 address is never unassigned alone: cnivpc takes pods' IPv6 out of an ENI's /80
    prefix, which EC2 unassigns whole (with every pod address in it). A held one is refused
    as an IPv4 is (release first); any other, with what to do instead."""
    store, _ = open_node(conf, read_only=True, need_state=False)
    with store:
        _refuse_if_held(ip, store)
    raise CliError(f"{ip} is IPv6: cnivpc gives pods IPv6 addresses out of an ENI's /80 "
                   "prefix, which is not unassigned address by address",
                   "a pod's IPv6 goes back to its /80 when the pod is deleted (or with 'cnivpc "
                   "ipam release'); the /80 leaves with its ENI (cnivpc ipam remove-eni)",
                   EXIT_USAGE)


def _eni_holding(ip: str, store: Store, node: Any) -> str:
    """The ENI of this instance that has ``ip``, from the metadata (the store may not know IPs
    assigned outside cnivpc); refuses an ENI's primary IP."""
    for eni in node.interfaces():
        if ip in eni.ipv4s:
            if ip == eni.primary_ip:
                raise CliError(f"{ip} is the primary IP of {eni.eni_id}",
                               "EC2 never unassigns an ENI's primary IP: remove the ENI "
                               "instead (cnivpc ipam remove-eni)", EXIT_USAGE)
            return str(eni.eni_id)
    known = store.known_ips().get(ip)
    if known:
        return known
    raise CliError(f"{ip} is not assigned to any ENI of this instance",
                   "see 'cnivpc ipam enis' and 'cnivpc ipam free'", EXIT_NOT_FOUND)


COMMANDS: dict[str, Command] = {
    "allocations": Command(allocations, "pods and the IPs they hold (from the store)", True),
    "free": Command(free, "free IPs, with the cooldown each still has", True),
    "enis": Command(enis, "the node's ENIs: device, link, subnet, IPs, pods, pool", True),
    "addresses": Command(addresses, "every address (IPv4, and IPv6 but link-local) bound on "
                         "the host and in every pod network namespace, with the pod holding "
                         "it", True),
    "subnets": Command(subnets, "subnets a new ENI may use (VPC, AZ, tags), most free first",
                       True),
    "limits": Command(limits, "ENIs, IPv4 and IPv6 per ENI of this instance type, and max "
                      "pods", True),
    "vpc-cidrs": Command(vpc_cidrs, "the VPC's CIDRs (metadata and, for affected families, "
                         "EC2; its IPv6 CIDRs from the metadata)", True),
    "peer-cidrs": Command(peer_cidrs, "CIDRs of peered VPCs", True),
    "bugs": Command(bugs, "known instance metadata bugs and whether this instance has them",
                    True),
    "audit": Command(audit, "check the IPAM's invariants (store against EC2 and the kernel); "
                     "exit 3 when any is violated; --repair fixes what is safe (under the "
                     "lock) and audits again", True, "[--repair] [--no-ec2]"),
    "warm": Command(warm, "bring the pool up to its warm level now (warmIPTarget free IPs, "
                    "warmENIThreshold free + room): at node start, before the first pod", False),
    "grow": Command(grow, "assign N more IPs to the pool (an ENI with room, or a new ENI)",
                    False, "[--count N]"),
    "new-eni": Command(new_eni, "attach a new ENI with N IPs (default: as many as it can hold)",
                       False, "[--count N]"),
    "remove-eni": Command(remove_eni, "detach and delete a pod ENI (refused while pods use it)",
                          False, "<eni> [--force]"),
    "release": Command(release, "free an IP held by a pod (only when that pod is gone)", False,
                       "<ip> [--force]"),
    "unassign": Command(unassign, "unassign a free IP from its ENI in EC2 (refused while an "
                        "allocation holds it, or it is bound on the node)", False,
                        "<ip> [--force]"),
}


HELP_HEAD = """\
Look inside the IPAM and operate it by hand. Every command reads the IPAM settings from the
first conflist in /etc/cni/net.d using cnivpc-ipam (--conf, --data-dir override); --json for
scripts. 'cnivpc ipam <command> --help' for a command's options.
"""


def description() -> str:
    """The command list of ``cnivpc ipam --help``, rendered from COMMANDS."""
    import textwrap

    width = max(len(f"{name} {c.args}".strip()) for name, c in COMMANDS.items()) + 4
    lines = [HELP_HEAD]
    for title, read_only in (("Read-only (change nothing, never create the IPAM state, take "
                              "no lock):", True), ("Operations (take the IPAM lock):", False)):
        lines.append(title)
        for name, c in COMMANDS.items():
            if c.read_only == read_only:
                usage = f"  {name} {c.args}".rstrip()
                lines += textwrap.wrap(c.summary, 96, initial_indent=usage.ljust(width),
                                       subsequent_indent=" " * width)
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    root = Parser(prog="cnivpc ipam", description=description())
    sub = root.add_subparsers(dest="command", required=True, metavar="<command>")
    for name, command in COMMANDS.items():
        # no help=: the command list is the description's (argparse would print a second one)
        p = sub.add_parser(name, description=command.summary,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
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
        if name == "audit":
            p.add_argument("--repair", action="store_true",
                           help="apply the safe repairs (takes the IPAM lock), then audit again")
            p.add_argument("--no-ec2", action="store_true",
                           help="check the store and the kernel only (no EC2 call)")
        if name == "unassign":
            p.add_argument("ip", help="the IP to unassign from its ENI")
            p.add_argument("--force", action="store_true",
                           help="even if the address is bound on this node (never when an "
                                "allocation holds it)")
    return root


def main(args: list[str], out: TextIO) -> int:
    parsed = parser().parse_args(args)
    return COMMANDS[parsed.command].handler(parsed, load_ipam_conf(parsed), out)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
