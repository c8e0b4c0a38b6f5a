"""``cnivpc status``: one screen on the node: the instance, the IP capacity (used, free, cooling,
not yet assigned), the ENIs, the pods with their IPs (names from the runtime's CNI_ARGS), and
the last errors of the plugins' log file. Read-only (opens the IPAM's state read-only and never
creates it: a node without state says so); works from the store alone when the metadata or EC2
cannot be reached (it says so).
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any, TextIO

from ..aws.metadata import Metadata
from ..cni.errors import CniError
from ..cni.paths import open_file
from ..cni.printable import printable
from ..plugins.ipam.decision import max_pods, prefix_mode
from ..plugins.ipam.ec2work import PREFIX_FALLBACK, PREFIXES_REFUSED
from ..plugins.ipam.session import ScratchStore
from . import dualstack
from .context import add_conf_arguments, load_ipam_conf, open_node
from .exits import EXIT_OK, Parser
from .output import emit_json, table

ERRORS_SHOWN = 5
LOG_TAIL = 2000


def last_errors(path: str | None, count: int = ERRORS_SHOWN) -> list[str]:
    """The last ERROR lines of the log file, printable (cni.printable). The file is opened as
    the plugins open it (cni.paths: never through a symlink); one that cannot be read has no
    errors to show."""
    if not path or not os.path.lexists(path):
        return []
    try:
        fd = open_file(path, os.O_RDONLY, create=False)
    except (OSError, CniError):
        return []
    with open(fd, encoding="utf-8", errors="replace") as f:
        tail = deque(f, maxlen=LOG_TAIL)
    return [printable(line.rstrip()) for line in tail if " ERROR " in line][-count:]


def gather(conf: Any) -> dict[str, Any]:
    now = time.time()
    report: dict[str, Any] = {"problems": []}
    store, node = open_node(conf, read_only=True, need_state=False, timeout=10,
                            metadata=Metadata(timeout=0.5))
    with store:
        if isinstance(store, ScratchStore):
            report["problems"].append(f"no IPAM state in {conf.data_dir} yet: no pod has been "
                                      "set up on this node")
        try:
            ident = node.identity
            report["instance"] = {"id": ident.instance_id, "type": ident.instance_type,
                                  "az": ident.availability_zone}
            lim = node.limits()
            report["capacity"] = {"enis": lim.enis, "ipv4_per_eni": lim.ipv4_per_eni,
                                  "max_pods": max_pods(conf, lim),
                                  "prefixes": prefix_mode(conf, lim)}
        except CniError as exc:
            report["problems"].append(f"instance unknown: {exc}")
        allocations = store.allocations()
        attachments = dualstack.attachments(store)  # IPv6-only pods too (no VPC IPv4)
        egress = dualstack.egress(store)
        free = store.free_ips()
        ready = [f for f in free if f.freed_at <= now - conf.reuse_ip_wait]
        report["ips"] = {"in_use": len(allocations), "free": len(free), "ready": len(ready),
                         "cooling": len(free) - len(ready)}
        if "capacity" in report:
            report["ips"]["unassigned"] = max(
                0, report["capacity"]["max_pods"] - len(allocations) - len(free))
        held: dict[str, int] = {}
        for a in allocations:
            held[a.eni_id] = held.get(a.eni_id, 0) + 1
        counts = store.ip_counts()
        prefixes: dict[str, set[str]] = {}
        for row in [(f.eni_id, f.prefix) for f in free] + \
                [(a.eni_id, a.prefix) for a in allocations]:
            if row[1]:
                prefixes.setdefault(row[0], set()).add(row[1])
        pod_enis = [e for e in store.enis() if e.device_index >= conf.interface_index]
        report["enis"] = [{"device": e.device_index, "eni": e.eni_id, "link": e.link or "-",
                           "subnet": e.subnet_id, "pods": held.get(e.eni_id, 0),
                           "free": counts.get(e.eni_id, 0) - held.get(e.eni_id, 0),
                           "prefixes": sorted(prefixes.get(e.eni_id, ())),
                           "ipv6_prefixes": list(e.ipv6_prefixes)}
                          for e in pod_enis]
        # Dual-stack: how many pods have their IPv6, how many pod ENIs a /80 to give it from.
        report["ipv6"] = dualstack.counts(conf.ipv6, attachments, pod_enis)
        if conf.ipv6 and report["ipv6"]["pods_without"]:
            names = [a.pod or a.container_id[:12] for a in attachments if not a.ipv6]
            report["problems"].append(
                f"{len(names)} pod(s) without IPv6 ({', '.join(names[:5])}"
                f"{', ...' if len(names) > 5 else ''}): set up before ipv6 was turned on; "
                "they get one when recreated")
        # Prefix delegation: the mode, and why it fell back to secondary IPs, if it did.
        report["mode"] = "secondary IPs"
        if conf.ipv4_prefixes:
            report["mode"] = ("prefixes" if report.get("capacity", {}).get("prefixes", True)
                              else "secondary IPs (ipv4Prefixes is set, but the instance type "
                                   "is not Nitro-based: it takes no prefixes)")
        fallback = store.cache_get(PREFIX_FALLBACK) if conf.ipv4_prefixes else None
        if isinstance(fallback, dict):
            report["prefix_fallback"] = {
                "at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(fallback["at"])),
                "why": str(fallback["why"])}
        refused = store.cache_get(PREFIXES_REFUSED) if conf.ipv4_prefixes else None
        if refused:
            report["problems"].append(f"prefixes are not used now: {refused}")
        report["pods"] = [{"pod": a.pod or a.container_id[:12], "ip": a.ip or None,
                           "ipv6": a.ipv6 or None, "eni": a.eni_id,
                           "egress_ip": egress.get((a.container_id, a.ifname)),
                           "since": time.strftime("%H:%M:%S", time.localtime(a.allocated_at))}
                          for a in attachments]
    report["last_errors"] = last_errors(conf.log_file)
    return report


def main(args: list[str], out: TextIO) -> int:
    parser = Parser(prog="cnivpc status", description=__doc__)
    add_conf_arguments(parser)
    opts = parser.parse_args(args)
    conf = load_ipam_conf(opts)
    report = gather(conf)
    if opts.json:
        emit_json(out, report)
        return EXIT_OK
    inst = report.get("instance")
    out.write(f"node:     {inst['id']} ({inst['type']}, {inst['az']})\n" if inst else
              "node:     unknown (metadata unreachable)\n")
    ips, cap = report["ips"], report.get("capacity")
    line = (f"pod IPs:  {ips['in_use']} in use, {ips['free']} free ({ips['ready']} ready, "
            f"{ips['cooling']} cooling)")
    if cap:
        slots = (f"{cap['ipv4_per_eni'] - 1} prefixes of 16" if cap["prefixes"]
                 else f"{cap['ipv4_per_eni'] - 1} secondary IPs")
        line += (f", {ips['unassigned']} more can be assigned; max {cap['max_pods']} "
                 f"({cap['enis'] - conf.interface_index} ENIs x {slots})")
    out.write(line + "\n")
    out.write(f"mode:     {report['mode']}\n")
    v6 = report["ipv6"]
    show_v6 = dualstack.shown(v6["enabled"], (v6["pods"], v6["enis_with_prefix"]))
    if show_v6:
        out.write(f"ipv6:     {'on' if v6['enabled'] else 'off'}: {v6['pods']} of "
                  f"{v6['pods'] + v6['pods_without']} pods with IPv6, {v6['enis_with_prefix']} "
                  f"of {v6['enis']} pod ENIs with a /80 prefix ({v6['prefixes']} in all)"
                  + (f"; {v6['ipv6_only']} IPv6-only (no VPC IPv4)" if v6["ipv6_only"] else "")
                  + "\n")
    fallback = report.get("prefix_fallback")
    if fallback:
        out.write(f"fallback: {printable(fallback['why'])} (last at {fallback['at']}); "
                  "secondary IPs or another subnet were used\n")
    out.write("\n")
    if report["enis"]:
        heads = ["device", "eni", "link", "subnet", "pods", "free", "prefixes",
                 *(["ipv6_prefixes"] if show_v6 else [])]
        table(out, heads, [[(" ".join(e[k]) or "-") if "prefixes" in k else e[k] for k in heads]
                           for e in report["enis"]])
        out.write("\n")
    if report["pods"]:
        egress = ["egress_ip"] if any(p["egress_ip"] for p in report["pods"]) else []
        heads = ["pod", "ip", *(["ipv6"] if show_v6 else []), *egress, "eni", "since"]
        table(out, heads, [[p[k] or "-" for k in heads] for p in report["pods"]])
        out.write("\n")
    for problem in report["problems"]:
        out.write(f"problem:  {printable(problem)}\n")
    if report["last_errors"]:
        out.write(f"last errors ({conf.log_file}):\n")
        for err in report["last_errors"]:
            out.write(f"  {err}\n")
    elif conf.log_file:
        out.write(f"no errors in {conf.log_file}\n")
    else:
        out.write("no log file configured (set logFile in the conflist to keep one)\n")
    return EXIT_OK
