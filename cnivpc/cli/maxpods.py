"""``cnivpc max-pods``: the value for kubelet's ``--max-pods`` on this node.

Pods get every IPv4 address but the primary of the ENIs at ``interfaceIndex`` and up (an ENI's
primary IP is never a pod's): (ENIs - interfaceIndex) x (IPv4 per ENI - 1).
``--host-network-pods N`` adds pods that need no IP (kube-proxy, cnivpc's own DaemonSet…);
``--cap N`` lowers the answer (kubelet's default 110 is a sane ceiling for small control
planes).

The limits of this instance's type (or ``--instance-type``'s) come from, in order: the answer
to DescribeInstanceTypes the IPAM cached (24 h) in its state, if there is one; EC2's
DescribeInstanceTypes (through the node's shared rate limit); when EC2 cannot answer (refused,
throttled, unreachable), a built-in table of common types, with a note on stderr.
``--enis``/``--ipv4-per-eni`` compute offline. Read-only: creates and caches nothing.

Prints one number, or fails with ``error:``/``hint:`` on stderr and exit 1 (never a guess:
``--max-pods $(cnivpc max-pods)`` must not start kubelet with a wrong value).
"""

from __future__ import annotations

import sys
from typing import TextIO

from ..cni.errors import CniError
from ..plugins.ipam.config import IpamConf
from .context import add_conf_arguments, load_ipam_conf, open_node
from .exits import EXIT_OK, EXIT_USAGE, CliError, Parser
from .output import emit_json

LIMITS_TIMEOUT = 20.0


def compute(enis: int, ipv4_per_eni: int, interface_index: int, host_network_pods: int = 0,
            cap: int = 0) -> int:
    pods = max(0, enis - interface_index) * max(0, ipv4_per_eni - 1) + host_network_pods
    return min(pods, cap) if cap > 0 else pods


def instance_limits(conf: IpamConf, instance_type: str | None) -> tuple[str, int, int, str]:
    """(instance type, ENIs, IPv4 per ENI, source) for this node, or CliError."""
    from ..aws.limits import known_limits

    store, node = open_node(conf, read_only=True, need_state=False,
                            timeout=LIMITS_TIMEOUT)
    with store:
        try:
            itype = instance_type or node.identity.instance_type
        except CniError as exc:
            raise CliError(f"cannot tell this instance's type: {exc}",
                           "pass --instance-type (or --enis and --ipv4-per-eni)") from exc
        cached = store.cache_get(f"limits:{itype}")
        if cached is not None:
            return itype, int(cached[0]), int(cached[1]), "cache"
        try:
            answer = node.ec2.call("DescribeInstanceTypes", InstanceTypes=[itype])
            info = answer["InstanceTypes"][0]["NetworkInfo"]
            return (itype, int(info["MaximumNetworkInterfaces"]),
                    int(info["Ipv4AddressesPerInterface"]), "DescribeInstanceTypes")
        except (CniError, KeyError, IndexError) as exc:
            problem = str(exc) if isinstance(exc, CniError) else f"no answer for {itype}"
            known = known_limits(itype)
            if known is None:
                raise CliError(f"cannot find the ENI limits of {itype}: {problem}",
                               "pass --enis and --ipv4-per-eni (EC2's table of IP addresses "
                               "per network interface per instance type)") from exc
            sys.stderr.write(f"note: EC2 did not answer ({problem}); {itype} from the "
                             "built-in table\n")
            return itype, known[0], known[1], "built-in table"


def main(args: list[str], out: TextIO) -> int:
    parser = Parser(prog="cnivpc max-pods", description=__doc__)
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
        itype, enis, per_eni, source = opts.instance_type or "-", opts.enis, opts.ipv4_per_eni, \
            "command line"
    else:
        itype, enis, per_eni, source = instance_limits(conf, opts.instance_type)
    pods = compute(enis, per_eni, index, opts.host_network_pods, opts.cap)
    if opts.json:
        emit_json(out, {"instance_type": itype, "enis": enis, "ipv4_per_eni": per_eni,
                        "interface_index": index, "max_pods": pods, "source": source})
    else:
        out.write(f"{pods}\n")
    return EXIT_OK
