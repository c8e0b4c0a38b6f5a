"""The IPAM plugin's configuration as its process uses it: ``IpamConf`` compiled from the
pydantic model ``ipam.model`` (``cni.compiled``; the type checker sees the model), its defaults
and the checks its fields run (named by the model, so they live here, without pydantic).

Its keys are top-level keys of its conflist entry (it runs first in the chain, not as a nested
``ipam`` section). Every invalid value is a code-7 error naming the key.

Keys shared with the original (Lyft's cni-ipvlan-vpc-k8s), with our defaults:
``secGroupIds`` (default: the boot ENI's groups), ``subnetTags``, ``interfaceIndex`` (1: never
hand out the boot ENI's IPs), ``skipDeallocation``, ``routeToVpcPeers``, ``routeToCidrs``,
``reuseIPWait`` (60 s), ``ipBatchSize`` (0: size batches from the warm target; 1 reproduces the
original). Ours: ``warmIPTarget`` (keep this many free IPs ready; an ADD that leaves fewer
refills with one batched call, after its answer, in a detached child; 0 turns every warm-keeping
off, as in the original), ``warmENIThreshold`` (start the next ENI ahead of need, in that same
background refill, when the free IPs plus the room left on attached ENIs drop below this many:
an ENI takes ~7 s to create, attach and appear, and a burst must not wait for it. -1, the
default, is three quarters of an ENI's IPv4 addresses for the instance type (37 on an
m5.24xlarge, 11 on a c5.xlarge: ~7 s of a burst of 5 pods/s), never less than ``warmIPTarget``,
and 0 when ``warmIPTarget`` is 0; 0 never starts an ENI ahead of need. With the default at most
one ENI is ahead: a new ENI comes with all its IPs (``ipBatchSize`` 0), so on an m5.24xlarge 110
pods still cost three ENIs, as without it), ``maxFreeIPs`` (DEL unassigns free IPs above this
many, or above ``warmIPTarget`` when that is more, never an ENI's primary; -1, the default,
keeps them all; ENIs are never given back by DEL, so a spare ENI is not churned),
``freeIPMaxAge`` (GC unassigns free IPs idle longer than this many seconds beyond the warm
target; 0 never), ``dataDir``, ``lockPath``, ``lockTimeout``, ``timeout`` (the whole ADD's
deadline), ``reconcileInterval``,
``clusterName`` (tagged on ENIs we create, for GC), ``mtu``.

AWS service routes: ``routeServicePrefixLists`` (e.g. ``["s3", "dynamodb"]``; a short name is
``com.amazonaws.<region>.<name>``, a full name or a ``pl-`` id also works) routes the CIDRs of
those managed prefix lists over the ENI (the VPC router), as ``routeToCidrs`` does: a pod reaches
S3 and DynamoDB through the VPC's gateway endpoints with its own IP (bucket policies keyed on the
VPC or the endpoint keep working), never through the node's NAT. The lists are read with
DescribeManagedPrefixLists and GetManagedPrefixListEntries and cached for an hour.

Prefix delegation (Nitro instances): ``ipv4Prefixes`` (false) makes the pool out of /28
prefixes, one per ENI IPv4 slot instead of one secondary IP (16 addresses each); pods still get
one address each, keyed and cooled down as secondary IPs are. In that mode ``ipBatchSize``
counts prefixes (0: fill the ENI's slots), ``warmIPTarget`` still counts addresses,
``warmPrefixTarget`` (0) keeps that many wholly free prefixes too, and the default
``warmENIThreshold`` is one prefix's worth of addresses (16, or ``warmIPTarget`` when more):
one more prefix is a single call on an ENI with a free slot. When EC2 cannot give a /28
(``InsufficientCidrBlocks``: a fragmented subnet; or a type that takes no prefixes), the IPAM
falls back: another tag-matching subnet for a new ENI, then secondary IPs, and says so in the log
and in ``cnivpc status``.

Dual-stack: ``ipv6`` (false) gives each attachment an IPv6 address too, out of a /80 prefix of
the ENI its IPv4 is on (the VPC and its subnets need IPv6 CIDRs; Nitro types).

IPv6-only pods: ``ipv4: false`` (with ``ipv6: true``; the AWS VPC CNI's IPv6 mode) gives the pod no
VPC IPv4 at all, only its IPv6 out of a /80 of a pod ENI (an ENI created for them carries no
secondary IPv4: IPv4 exhaustion is what this mode is for). IPv4 still reaches the pod's world
through the node: the pod gets a node-local IPv4 out of ``egressIPv4Range`` (169.254.172.0/22,
the range the AWS VPC CNI uses; ``null``: none, the pod has no IPv4 at all), which cnivpc-ptp
routes over the veth and masquerades to the node's address (``ipMasq``). That address means
nothing beyond the node: no VPC route and no other pod reaches it. The keys that route IPv4
over the ENI (``ipv4Prefixes``, ``routeToCidrs``, ``routeToVpcPeers``,
``routeServicePrefixLists``) need the pod's own VPC IPv4 and are refused in this mode.

Imports ``cnivpc.cni`` and the generated ``plugins.schemas``; never pydantic, AWS or netlink.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

DEFAULT_DATA_DIR = "/var/lib/cnivpc"
DEFAULT_LOCK_PATH = "/run/cnivpc/ipam.lock"
DEFAULT_EGRESS_RANGE = "169.254.172.0/22"
SERVICE_LIST_RE = re.compile(r"^(pl-[0-9a-f]{1,32}|[a-z0-9][a-z0-9.-]{0,127})$")


def route_cidrs(values: list[str]) -> list[str]:
    # The network address is what a route needs (10.1.2.3/16 -> 10.1.0.0/16).
    return [str(ipaddress.ip_network(v, strict=False)) for v in values]


def service_prefix_lists(values: list[str]) -> list[str]:
    # "s3" (com.amazonaws.<region>.s3), a full prefix list name, or a pl- id.
    for v in values:
        if not SERVICE_LIST_RE.match(v):
            raise ValueError(f"{v!r} is not a service (s3, dynamodb), a prefix list name "
                             "(com.amazonaws.<region>.<service>) or id (pl-...)")
    return values


def egress_range(value: str | None) -> str | None:
    # A node-local IPv4 range for IPv6-only pods' IPv4 egress: at least 4 addresses (its
    # first and last are never handed out).
    if value is None:
        return None
    net = ipaddress.IPv4Network(value, strict=False)  # ValueError names the problem
    if net.prefixlen > 30:
        raise ValueError(f"{value!r} is too small: at least a /30")
    return str(net)


def family_problem(conf: IpamConf) -> tuple[str, str] | None:
    """Why the address-family keys cannot work together, or None: (message, details).
    A check across keys, so the handlers and the CLI call it (a field validator sees one
    key)."""
    if conf.ipv4:
        return None
    if not conf.ipv6:
        return ("ipv4: false needs ipv6: true", "a pod needs an address of some family")
    ipv4_keys = [key for key, on in (("ipv4Prefixes", conf.ipv4_prefixes),
                                     ("routeToCidrs", bool(conf.route_to_cidrs)),
                                     ("routeToVpcPeers", conf.route_to_vpc_peers),
                                     ("routeServicePrefixLists",
                                      bool(conf.route_service_prefix_lists))) if on]
    if ipv4_keys:
        return (f"{', '.join(ipv4_keys)} cannot be used with ipv4: false",
                "they route the pod's own VPC IPv4, which IPv6-only pods do not have "
                "(their IPv6 reaches every destination over the ENI already)")
    return None


def security_groups(values: list[str] | None) -> list[str] | None:
    for v in values or []:
        if not v.startswith("sg-"):
            raise ValueError(f"{v!r} is not a security group id (sg-...)")
    return values


if TYPE_CHECKING:
    from .model import IpamConf
else:
    from ...cni.compiled import model
    from ..schemas import MODELS

    IpamConf = model(MODELS, "cnivpc.plugins.ipam.model:IpamConf")

__all__ = ["DEFAULT_DATA_DIR", "DEFAULT_EGRESS_RANGE", "DEFAULT_LOCK_PATH", "IpamConf",
           "egress_range", "family_problem", "route_cidrs", "security_groups",
           "service_prefix_lists"]
