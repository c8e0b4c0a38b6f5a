"""``cnivpc max-pods``: the value for kubelet's ``--max-pods`` on this node.

Pods get every IPv4 address (ENI primaries included) of the ENIs at ``interfaceIndex`` and up:
(ENIs - interfaceIndex) x IPv4 per ENI. ``--host-network-pods N`` adds pods that need no IP
(kube-proxy, cnivpc's own DaemonSet…); ``--cap N`` lowers the answer (kubelet's default 110
is a sane ceiling for small control planes). Limits come from DescribeInstanceTypes (cached
24 h), for this instance or ``--instance-type``; ``--enis``/``--ipv4-per-eni`` compute offline.
"""

from __future__ import annotations

import argparse
import time
from typing import TextIO

from ..aws.metadata import Metadata
from ..plugins.ipam.node import Node
from ..plugins.ipam.store import Store
from .context import add_conf_arguments, load_ipam_conf
from .exits import EXIT_OK, EXIT_USAGE, CliError
from .output import emit_json


def compute(enis: int, ipv4_per_eni: int, interface_index: int, host_network_pods: int = 0,
            cap: int = 0) -> int:
    pods = max(0, enis - interface_index) * ipv4_per_eni + host_network_pods
    return min(pods, cap) if cap > 0 else pods


def main(args: list[str], out: TextIO) -> int:
    parser = argparse.ArgumentParser(prog="cnivpc max-pods", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_conf_arguments(parser)
    parser.add_argument("--instance-type", help="another instance type than this one")
    parser.add_argument("--enis", type=int, help="offline: ENIs per instance")
    parser.add_argument("--ipv4-per-eni", type=int, help="offline: IPv4 addresses per ENI")
    parser.add_argument("--interface-index", type=int,
                        help="first ENI device index for pods (default: the config's, 1)")
    parser.add_argument("--host-network-pods", type=int, default=0)
    parser.add_argument("--cap", type=int, default=0, help="never answer more than this")
    opts = parser.parse_args(args)
    conf = load_ipam_conf(opts)
    index = conf.interface_index if opts.interface_index is None else opts.interface_index
    if (opts.enis is None) != (opts.ipv4_per_eni is None):
        raise CliError("--enis and --ipv4-per-eni go together", exit_code=EXIT_USAGE)
    if opts.enis is not None:
        enis, per_eni, itype = opts.enis, opts.ipv4_per_eni, opts.instance_type or "-"
    else:
        with Store.open(conf.data_dir) as store:
            node = Node(store, deadline=time.monotonic() + 20, metadata=Metadata())
            itype = opts.instance_type or node.identity.instance_type
            answer = node.ec2.call("DescribeInstanceTypes", InstanceTypes=[itype])
            info = answer["InstanceTypes"][0]["NetworkInfo"]
            enis, per_eni = info["MaximumNetworkInterfaces"], info["Ipv4AddressesPerInterface"]
    pods = compute(enis, per_eni, index, opts.host_network_pods, opts.cap)
    if opts.json:
        emit_json(out, {"instance_type": itype, "enis": enis, "ipv4_per_eni": per_eni,
                        "interface_index": index, "max_pods": pods})
    else:
        out.write(f"{pods}\n")
    return EXIT_OK
