"""Per-instance-type network limits, read from moto's DescribeInstanceTypes data.

Owns :class:`InstanceLimits` and :func:`limits_for`. The figures are AWS's own (moto ships the
``DescribeInstanceTypes`` dump: c5.xlarge 4 ENIs x 15 IPv4, m5.24xlarge 15 x 50, ...), so the lab
and ``DescribeInstanceTypes`` can never disagree. Imports moto's data table only (no server code).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from moto.ec2.models.instance_types import INSTANCE_TYPES


@dataclass(frozen=True)
class InstanceLimits:
    instance_type: str
    max_enis: int
    ipv4_per_eni: int
    ipv6_per_eni: int
    network_cards: int
    # Per-card ENI maxima, index = NetworkCardIndex (multi-card types such as p4d.24xlarge).
    enis_per_card: tuple[int, ...]
    # Prefix delegation is for Nitro-based types only: hypervisor "nitro", or bare metal (which
    # runs on the Nitro system and reports no hypervisor), as AWS's VPC CNI decides it too.
    nitro: bool
    ipv6_supported: bool = True  # NetworkInfo.Ipv6Supported


@cache
def limits_for(instance_type: str) -> InstanceLimits:
    """Limits of ``instance_type``; ``KeyError`` for a type AWS does not have."""
    data: dict[str, Any] = INSTANCE_TYPES[instance_type]
    net: dict[str, Any] = data["NetworkInfo"]
    cards = tuple(
        int(card["MaximumNetworkInterfaces"])
        for card in sorted(net.get("NetworkCards", []), key=lambda c: int(c["NetworkCardIndex"]))
    )
    return InstanceLimits(
        instance_type=instance_type,
        max_enis=int(net["MaximumNetworkInterfaces"]),
        ipv4_per_eni=int(net["Ipv4AddressesPerInterface"]),
        ipv6_per_eni=int(net.get("Ipv6AddressesPerInterface", 0)),
        network_cards=int(net.get("MaximumNetworkCards", 1)),
        enis_per_card=cards or (int(net["MaximumNetworkInterfaces"]),),
        nitro=data.get("Hypervisor") == "nitro" or bool(data.get("BareMetal")),
        ipv6_supported=bool(net.get("Ipv6Supported", False)),
    )


def known_type(instance_type: str) -> bool:
    return instance_type in INSTANCE_TYPES


# An ENI not attached to anything is not tied to a type yet. AWS then accepts up to the largest
# per-ENI limit of any type at create/assign time (aws-reference.md §3.2 [inf]); the real check
# happens at attach (``InvalidInterface.IpAddressLimitExceeded``). The spec says 50 (the largest of
# the types cnivpc targets); moto's table holds a few exotic types above that, so take the spec's
# figure rather than the table's maximum.
UNATTACHED_IPV4_PER_ENI = 50

# The same for IPv6 addresses (+ /80 prefixes) on an unattached ENI [inf].
UNATTACHED_IPV6_PER_ENI = 50
