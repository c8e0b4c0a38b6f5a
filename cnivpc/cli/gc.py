"""``cnivpc gc [--dry-run]``: the IPAM's garbage collection, by hand or from the systemd timer
and the DaemonSet. The same three parts as the plugin's CNI GC, each attempted:

- releases IPs of attachments whose network namespace is gone (the runtime lost a DEL);
- unassigns free IPs idle longer than the conflist's ``freeIPMaxAge`` in EC2, keeping
  ``warmIPTarget`` of them and every ENI's primary IP (nothing when ``skipDeallocation``);
- deletes ENIs tagged as this instance's that sit detached (confirmed twice, 5 minutes apart,
  so an ENI between create and attach is never taken for a leak), and, cluster-wide, detached
  ENIs cnivpc created in the VPC (this ``clusterName``'s when set) for an instance that no
  longer exists (it died between create and attach): never another live node's ENI;
- finishes DeleteOnTermination marks left pending (a failed Modify, ENIs adopted after a
  crash or a reboot).

The CNI GC command (runtime-driven, with the runtime's list of valid attachments) does the
first part with better knowledge; this one needs no runtime (the allocation's recorded netns
must be visible: hostPID in a pod, for /proc/<pid>/ns/net paths). ``--dry-run`` reports only
and opens the state read-only; ``--no-ec2`` skips the two EC2 parts.

Exit status: 0 when every part succeeded (also when there was nothing to collect), 1
(EXIT_ERROR) when one failed: the others still ran, and what each did is printed.
"""

from __future__ import annotations

import time
from typing import TextIO

from ..cni.errors import CniError
from ..cni.printable import printable
from ..plugins.ipam.allocator import Allocator, read_pool
from ..plugins.ipam.config import IpamConf
from ..plugins.ipam.decision import idle
from ..plugins.ipam.store import Store
from .context import add_conf_arguments, load_ipam_conf, netns_gone, open_node
from .dualstack import attachments, both, release
from .exits import EXIT_ERROR, EXIT_OK, Parser
from .output import emit_json


def idle_ips(conf: IpamConf, store: Store, now: float) -> list[str]:
    """What ``Allocator.trim_idle`` would unassign now (for --dry-run; same rule)."""
    return [f.ip for f in idle(read_pool(store, now), conf, conf.free_ip_max_age)]


def main(args: list[str], out: TextIO) -> int:
    parser = Parser(prog="cnivpc gc", description=__doc__)
    add_conf_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="report, change nothing")
    parser.add_argument("--no-ec2", action="store_true",
                        help="skip the idle-IP unassign and the leaked-ENI sweep")
    opts = parser.parse_args(args)
    conf = load_ipam_conf(opts)
    report: dict[str, list[str]] = {"released": [], "unassigned": [], "leaked_enis": [],
                                    "errors": []}
    store, node = open_node(conf, read_only=opts.dry_run, need_state=False)
    with store:
        allocator = Allocator(conf, store, node)
        for alloc in [a for a in attachments(store) if netns_gone(a)]:
            try:
                if not opts.dry_run:
                    release(allocator, alloc)
                # Both addresses of a dual-stack pod, its IPv4 first (what scripts read).
                report["released"].append(f"{both(alloc)} ({alloc.pod or alloc.container_id[:12]})")
            except CniError as exc:
                report["errors"].append(f"releasing {both(alloc)}: {exc}")
        if not opts.no_ec2:
            try:
                if opts.dry_run:
                    report["unassigned"] = idle_ips(conf, store, time.time())
                else:
                    outcome = allocator.trim_idle(conf.free_ip_max_age)
                    report["unassigned"] = outcome.done
                    if outcome.kept:
                        report["errors"].append(f"could not unassign {', '.join(outcome.kept)} "
                                                f"(kept in the pool): {'; '.join(outcome.errors)}")
                    if outcome.unknown:
                        report["errors"].append(
                            f"could not unassign {', '.join(outcome.unknown)} nor ask EC2 "
                            "whether it was done (out of the pool until reconciliation finds "
                            f"them): {'; '.join(outcome.errors)}")
            except CniError as exc:
                report["errors"].append(f"idle-IP unassign: {exc}")
            try:
                report["leaked_enis"] = allocator.ec2work.leaked_enis(delete=not opts.dry_run)
            except CniError as exc:
                report["errors"].append(f"leaked-ENI sweep: {exc}")
            try:
                vpcs = [e.vpc_id for e in store.enis()[:1]] or [
                    node.interfaces()[0].vpc_id]
                report["leaked_enis"] += allocator.ec2work.orphaned_enis(vpcs[0],
                                                                 delete=not opts.dry_run)
            except CniError as exc:
                report["errors"].append(f"sweep of gone instances' ENIs: {exc}")
            if not opts.dry_run:
                # Failures stay pending (and logged) for the next GC.
                allocator.ec2work.settle_delete_on_termination()
    if opts.json:
        emit_json(out, report)
    else:
        verbs = {"released": ("would release", "released", ": its network namespace is gone"),
                 "unassigned": ("would unassign", "unassigned", ": idle longer than "
                                f"freeIPMaxAge ({conf.free_ip_max_age:.0f}s)"),
                 "leaked_enis": ("would delete", "deleted", ": a leaked ENI")}
        for key, (dry, done, why) in verbs.items():
            for item in report[key]:
                out.write(f"{dry if opts.dry_run else done} {printable(str(item))}{why}\n")
        if not any(report.values()):
            out.write("nothing to collect\n")
    if report["errors"]:
        # Reported like every CLI failure, after what did succeed (already on stdout).
        from .exits import CliError

        raise CliError("gc: " + "; ".join(report["errors"]),
                       "the other parts ran; cnivpc doctor checks the metadata, EC2 and IAM",
                       EXIT_ERROR)
    return EXIT_OK
