"""``cnivpc gc [--dry-run]``: the IPAM's garbage collection, by hand or from the systemd timer.

- releases IPs of attachments whose network namespace is gone (the runtime lost a DEL);
- deletes ENIs tagged as this instance's that sit detached (confirmed twice, 5 minutes apart,
  so an ENI between create and attach is never taken for a leak).

The CNI GC command (runtime-driven, with the runtime's list of valid attachments) does the
first part with better knowledge; this one needs no runtime. ``--dry-run`` reports only.
"""

from __future__ import annotations

import argparse
import time
from typing import TextIO

from ..aws.ec2 import Ec2Error
from ..aws.metadata import Metadata
from ..cni.errors import CniError
from ..plugins.ipam.allocator import Allocator
from ..plugins.ipam.node import Node
from ..plugins.ipam.store import Store
from .context import add_conf_arguments, load_ipam_conf, netns_gone
from .exits import EXIT_OK
from .output import emit_json


def main(args: list[str], out: TextIO) -> int:
    parser = argparse.ArgumentParser(prog="cnivpc gc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_conf_arguments(parser)
    parser.add_argument("--dry-run", action="store_true", help="report, change nothing")
    parser.add_argument("--no-ec2", action="store_true", help="skip the leaked-ENI sweep")
    opts = parser.parse_args(args)
    conf = load_ipam_conf(opts)
    report: dict[str, list[str]] = {"released": [], "leaked_enis": [], "errors": []}
    with Store.open(conf.data_dir) as store:
        node = Node(store, deadline=time.monotonic() + conf.timeout, metadata=Metadata())
        allocator = Allocator(conf, store, node)
        gone = [a for a in store.allocations() if netns_gone(a)]
        for alloc in gone:
            report["released"].append(f"{alloc.ip} ({alloc.pod or alloc.container_id[:12]})")
            if not opts.dry_run:
                allocator.release(alloc.container_id, alloc.ifname)
        if not opts.no_ec2:
            try:
                report["leaked_enis"] = allocator.leaked_enis(delete=not opts.dry_run)
            except (CniError, Ec2Error) as exc:
                report["errors"].append(f"leaked-ENI sweep: {exc}")
    if opts.json:
        emit_json(out, report)
    else:
        verb = "would release" if opts.dry_run else "released"
        for item in report["released"]:
            out.write(f"{verb} {item}: its network namespace is gone\n")
        verb = "would delete" if opts.dry_run else "deleted"
        for eni in report["leaked_enis"]:
            out.write(f"{verb} leaked ENI {eni}\n")
        for err in report["errors"]:
            out.write(f"warning: {err}\n")
        if not any(report.values()):
            out.write("nothing to collect\n")
    return EXIT_OK
