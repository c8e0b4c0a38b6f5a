"""``cnivpc max-pods``: the value for kubelet's ``--max-pods`` on this node.

Secondary-IP mode (the default): pods get every IPv4 address but the primary of the ENIs at
``interfaceIndex`` and up (an ENI's primary IP is never a pod's):
(ENIs - interfaceIndex) x (IPv4 per ENI - 1).

Prefix mode (``--prefixes``, for an IPAM that delegates /28 prefixes): every slot but the
primary IP's holds a /28, 16 addresses: (ENIs - interfaceIndex) x (IPv4 per ENI - 1) x 16, then
at most 110 pods, or 250 above 30 vCPUs (kubelet ceilings, as AWS's max-pods calculator applies
them). Prefixes exist on Nitro-based types only: on another type the answer is the secondary-IP
one, with a note on stderr (the IPAM falls back to secondary IPs there too).

IPv6-only pods (the config's ``ipv4: false``): addresses do not bound pods (one /80 holds
2^48), so the answer is the kubelet ceiling alone: 110, or 250 above 30 vCPUs.

``--host-network-pods N`` adds pods that need no IP (kube-proxy, cnivpc's own DaemonSet…; AWS's
calculator always adds 2); ``--cap N`` lowers the answer (kubelet's default 110 is a sane
ceiling for small control planes). ``--json`` also shows what AWS's calculator would answer.

The limits of this instance's type (or ``--instance-type``'s) come from, in order: the answer
to DescribeInstanceTypes the IPAM cached (24 h) in its state, if there is one (prefix mode needs
vCPUs and the hypervisor too, which that cache lacks: the built-in table supplies them, else EC2
is asked); EC2's DescribeInstanceTypes (through the node's shared rate limit); when EC2 cannot
answer (refused, throttled, unreachable), a built-in table of common types, with a note on
stderr. ``--enis``/``--ipv4-per-eni`` (and ``--vcpus`` in prefix mode) compute offline.
Read-only: creates and caches nothing.

Prints one number, or fails with ``error:``/``hint:`` on stderr and exit 1 (never a guess:
``--max-pods $(cnivpc max-pods)`` must not start kubelet with a wrong value).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, TextIO

from ..aws.limits import ADDRESSES_PER_PREFIX, aws_calculator_max_pods, known_type, pod_ceiling
from ..cni.errors import CniError
from ..plugins.ipam.config import IpamConf
from .context import add_conf_arguments, load_ipam_conf, open_node
from .exits import EXIT_OK, EXIT_USAGE, CliError, Parser
from .output import emit_json

LIMITS_TIMEOUT = 20.0


@dataclass(frozen=True)
class TypeLimits:
    """An instance type's pod-capacity facts and where they came from."""

    instance_type: str
    enis: int
    ipv4_per_eni: int
    source: str
    vcpus: int | None = None  # None: not known (only prefix mode needs it)
    nitro: bool | None = None


def compute(enis: int, ipv4_per_eni: int, interface_index: int, host_network_pods: int = 0,
            cap: int = 0) -> int:
    """Secondary-IP mode: one pod per address but each ENI's primary, no kubelet ceiling."""
    pods = max(0, enis - interface_index) * max(0, ipv4_per_eni - 1) + host_network_pods
    return min(pods, cap) if cap > 0 else pods


def compute_prefixes(enis: int, ipv4_per_eni: int, interface_index: int, vcpus: int,
                     host_network_pods: int = 0, cap: int = 0) -> int:
    """Prefix mode: 16 pods per slot but each ENI's primary, under the kubelet ceiling."""
    slots = max(0, enis - interface_index) * max(0, ipv4_per_eni - 1)
    pods = min(slots * ADDRESSES_PER_PREFIX + host_network_pods, pod_ceiling(vcpus))
    return min(pods, cap) if cap > 0 else pods


def instance_limits(conf: IpamConf, instance_type: str | None,
                    need_cpu: bool = False) -> TypeLimits:
    """This node's type's limits (``need_cpu``: with vCPUs and hypervisor), or CliError."""
    store, node = open_node(conf, read_only=True, need_state=False,
                            timeout=LIMITS_TIMEOUT)
    with store:
        try:
            itype = instance_type or node.identity.instance_type
        except CniError as exc:
            raise CliError(f"cannot tell this instance's type: {exc}",
                           "pass --instance-type (or --enis and --ipv4-per-eni)") from exc
        table = known_type(itype)
        cached = store.cache_get(f"limits:{itype}")
        if cached is not None and (not need_cpu or table is not None):
            return TypeLimits(itype, int(cached[0]), int(cached[1]), "cache",
                              table.vcpus if table else None, table.nitro if table else None)
        try:
            answer = node.ec2.call("DescribeInstanceTypes", InstanceTypes=[itype])
            return _from_answer(itype, answer["InstanceTypes"][0])
        except (CniError, KeyError, IndexError) as exc:
            problem = str(exc) if isinstance(exc, CniError) else f"no answer for {itype}"
            if table is None:
                raise CliError(f"cannot find the ENI limits of {itype}: {problem}",
                               "pass --enis and --ipv4-per-eni (EC2's table of IP addresses "
                               "per network interface per instance type)") from exc
            sys.stderr.write(f"note: EC2 did not answer ({problem}); {itype} from the "
                             "built-in table\n")
            return TypeLimits(itype, table.enis, table.ipv4_per_eni, "built-in table",
                              table.vcpus, table.nitro)


def _from_answer(itype: str, info: dict[str, Any]) -> TypeLimits:
    net = info["NetworkInfo"]
    vcpus = info.get("VCpuInfo", {}).get("DefaultVCpus")
    # Bare metal reports no hypervisor; it runs on the Nitro system and takes prefixes.
    nitro = info.get("Hypervisor") == "nitro" or bool(info.get("BareMetal"))
    return TypeLimits(itype, int(net["MaximumNetworkInterfaces"]),
                      int(net["Ipv4AddressesPerInterface"]), "DescribeInstanceTypes",
                      int(vcpus) if vcpus is not None else None, nitro)


def main(args: list[str], out: TextIO) -> int:
    parser = Parser(prog="cnivpc max-pods", description=__doc__)
    add_conf_arguments(parser)
    parser.add_argument("--instance-type", help="another instance type than this one")
    parser.add_argument("--prefixes", action="store_true", default=None,
                        help="prefix mode: every IPv4 slot holds a /28 (Nitro types; default: "
                             "the config's ipv4Prefixes)")
    parser.add_argument("--enis", type=int, help="offline: ENIs per instance")
    parser.add_argument("--ipv4-per-eni", type=int, help="offline: IPv4 addresses per ENI")
    parser.add_argument("--vcpus", type=int, help="offline, prefix mode: vCPUs of the type")
    parser.add_argument("--interface-index", type=int,
                        help="first ENI device index for pods (default: the config's, 1)")
    parser.add_argument("--host-network-pods", type=int, default=0)
    parser.add_argument("--cap", type=int, default=0, help="never answer more than this")
    opts = parser.parse_args(args)
    conf = load_ipam_conf(opts)
    if opts.prefixes is None:
        opts.prefixes = conf.ipv4_prefixes
    index = conf.interface_index if opts.interface_index is None else opts.interface_index
    if (opts.enis is None) != (opts.ipv4_per_eni is None):
        raise CliError("--enis and --ipv4-per-eni go together", exit_code=EXIT_USAGE)
    if opts.enis is not None:
        if opts.prefixes and opts.vcpus is None:
            raise CliError("--prefixes offline needs --vcpus (the kubelet ceiling depends on it)",
                           "add --vcpus N (DescribeInstanceTypes' VCpuInfo.DefaultVCpus)",
                           EXIT_USAGE)
        lim = TypeLimits(opts.instance_type or "-", opts.enis, opts.ipv4_per_eni,
                         "command line", opts.vcpus, True if opts.prefixes else None)
    else:
        lim = instance_limits(conf, opts.instance_type,
                              need_cpu=opts.prefixes or not conf.ipv4)
    prefixes = opts.prefixes
    if prefixes and lim.nitro is False:
        sys.stderr.write(f"note: {lim.instance_type} is not Nitro-based: no prefixes there; "
                         "the secondary-IP value\n")
        prefixes = False
    if prefixes:
        if lim.vcpus is None:
            raise CliError(f"cannot tell the vCPUs of {lim.instance_type} (prefix mode caps "
                           "pods by them)", "pass --enis, --ipv4-per-eni and --vcpus")
        pods = compute_prefixes(lim.enis, lim.ipv4_per_eni, index, lim.vcpus,
                                opts.host_network_pods, opts.cap)
    else:
        pods = compute(lim.enis, lim.ipv4_per_eni, index, opts.host_network_pods, opts.cap)
    mode = "prefixes" if prefixes else "secondary-ips"
    if not conf.ipv4:
        if lim.vcpus is None:
            raise CliError(f"cannot tell the vCPUs of {lim.instance_type} (IPv6-only pods are "
                           "capped by them)", "pass --enis, --ipv4-per-eni and --vcpus")
        # Addresses do not bound IPv6-only pods: the kubelet ceiling does.
        ceiling = pod_ceiling(lim.vcpus)
        pods = min(ceiling, opts.cap) if opts.cap > 0 else ceiling
        mode = "ipv6-only"
    if opts.json:
        doc: dict[str, Any] = {
            "instance_type": lim.instance_type, "enis": lim.enis,
            "ipv4_per_eni": lim.ipv4_per_eni, "interface_index": index,
            "mode": mode, "max_pods": pods,
            "source": lim.source}
        if lim.vcpus is not None:
            doc["vcpus"] = lim.vcpus
            doc["aws_calculator"] = aws_calculator_max_pods(
                lim.enis, lim.ipv4_per_eni, lim.vcpus, nitro=bool(lim.nitro),
                prefixes=opts.prefixes)
        emit_json(out, doc)
    else:
        out.write(f"{pods}\n")
    return EXIT_OK
