"""ENI limits of well-known instance types, for when DescribeInstanceTypes cannot be asked (EC2
unreachable, throttled, or the action denied), and the kubelet pod ceilings of prefix mode.

The table holds (network interfaces, IPv4 addresses per interface, default vCPUs) as EC2
documents them ("IP addresses per network interface per instance type"); every type in it is
Nitro-based. It is not a copy of EC2's catalogue: only families whose sizes follow the common
Nitro pattern below (checked against EC2's DescribeInstanceTypes data by a unit test) and the
burstable t3/t3a, so an answer from here is never a guess. Unknown types get no answer (the
caller says so instead of inventing 4 x 15).

Prefix mode (every IPv4 slot of an ENI holds a /28, 16 addresses) gives small types far more
addresses than a kubelet should run pods; like AWS's max-pods calculator, the answer is then
capped at 110 pods, or 250 above 30 vCPUs (the calculator's ``CPU_COUNT -gt 30``).

Imports nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

ADDRESSES_PER_PREFIX = 16  # an IPv4 prefix EC2 delegates is always a /28
POD_CEILING_LOW_CPU = 110
POD_CEILING_HIGH_CPU = 250
HIGH_CPU_ABOVE = 30  # vCPUs; strictly more than this gets the high ceiling


@dataclass(frozen=True)
class TypeFacts:
    """What pod capacity depends on, for one instance type."""

    enis: int
    ipv4_per_eni: int
    vcpus: int
    nitro: bool  # prefixes possible: Nitro hypervisor, or bare metal (built on Nitro)


# size -> (ENIs, IPv4 per ENI, vCPUs), shared by the families in NITRO_FAMILIES
_NITRO_SIZES: dict[str, tuple[int, int, int]] = {
    "large": (3, 10, 2), "xlarge": (4, 15, 4), "2xlarge": (4, 15, 8), "4xlarge": (8, 30, 16),
    "8xlarge": (8, 30, 32), "9xlarge": (8, 30, 36), "12xlarge": (8, 30, 48),
    "16xlarge": (15, 50, 64), "18xlarge": (15, 50, 72), "24xlarge": (15, 50, 96),
}
NITRO_FAMILIES = frozenset({
    "m5", "m5d", "m5a", "c5", "c5d", "r5", "r5d", "r5a",
    "m6i", "c6i", "r6i", "m6g", "c6g", "r6g",
})
# Bare metal: 15 x 50 everywhere, the vCPUs differ by family; the AMD families have none.
_METAL_VCPUS: dict[str, int] = {
    "m5": 96, "m5d": 96, "c5": 96, "c5d": 96, "r5": 96, "r5d": 96,
    "m6i": 128, "c6i": 128, "r6i": 128, "m6g": 64, "c6g": 64, "r6g": 64,
}
_GRAVITON2 = frozenset({"m6g", "c6g", "r6g"})  # no 9xlarge/18xlarge/24xlarge
_BURSTABLE: dict[str, tuple[int, int, int]] = {
    "nano": (2, 2, 2), "micro": (2, 2, 2), "small": (3, 4, 2), "medium": (3, 6, 2),
    "large": (3, 12, 2), "xlarge": (4, 15, 4), "2xlarge": (4, 15, 8),
}


def known_type(instance_type: str) -> TypeFacts | None:
    """The facts of a type this table is sure of, else None."""
    family, _, size = instance_type.partition(".")
    if family in ("t3", "t3a"):
        entry = _BURSTABLE.get(size)
        if family == "t3a" and size == "small":
            entry = (2, 4, 2)  # the one size where t3a differs from t3
        return TypeFacts(*entry, nitro=True) if entry else None
    if family not in NITRO_FAMILIES:
        return None
    if size == "metal":
        vcpus = _METAL_VCPUS.get(family)
        return TypeFacts(15, 50, vcpus, nitro=True) if vcpus else None
    # c5 and c5d have 9xlarge and 18xlarge where the others have 8xlarge and 16xlarge
    odd = ("8xlarge", "16xlarge") if family in ("c5", "c5d") else ("9xlarge", "18xlarge")
    if size in odd or (family in _GRAVITON2 and size == "24xlarge"):
        return None
    entry = _NITRO_SIZES.get(size)
    return TypeFacts(*entry, nitro=True) if entry else None


def known_limits(instance_type: str) -> tuple[int, int] | None:
    """(ENIs, IPv4 per ENI) for a type this table is sure of, else None."""
    facts = known_type(instance_type)
    return None if facts is None else (facts.enis, facts.ipv4_per_eni)


def pod_ceiling(vcpus: int) -> int:
    """The most pods a kubelet should run on a node of ``vcpus`` CPUs (AWS's calculator)."""
    return POD_CEILING_HIGH_CPU if vcpus > HIGH_CPU_ABOVE else POD_CEILING_LOW_CPU


def aws_calculator_max_pods(enis: int, ipv4_per_eni: int, vcpus: int, *, nitro: bool,
                            prefixes: bool, custom_networking: bool = False,
                            show_max_allowed: bool = False) -> int:
    """What AWS's max-pods-calculator.sh answers (VPC CNI 1.9+), for comparison only.

    ENIs (minus one with custom networking) x (IPv4 per ENI - 1), x 16 in prefix mode on a
    Nitro type, + 2 host-network pods (aws-node, kube-proxy); then, unless
    ``show_max_allowed``, at most 110, or 250 above 30 vCPUs -- in both modes. Its secondary-IP
    value without the ceiling is the published eni-max-pods.txt table.
    """
    usable = enis - 1 if custom_networking else enis
    per_eni = ipv4_per_eni - 1
    if prefixes and nitro:
        per_eni *= ADDRESSES_PER_PREFIX
    pods = usable * per_eni + 2
    return pods if show_max_allowed else min(pods, pod_ceiling(vcpus))
