"""ENI limits of well-known instance types, for when DescribeInstanceTypes cannot be asked (EC2
unreachable, throttled, or the action denied): (network interfaces, IPv4 addresses per
interface), as EC2 documents them ("IP addresses per network interface per instance type").

Not a copy of EC2's catalogue: only families whose sizes follow the common Nitro pattern below
(checked against the published table) and the burstable t3/t3a, so an answer from here is never
a guess. Unknown types get no answer (the caller says so instead of inventing 4 x 15). Imports
nothing.
"""

from __future__ import annotations

# size -> (ENIs, IPv4 per ENI), shared by the families in NITRO_FAMILIES
_NITRO_SIZES: dict[str, tuple[int, int]] = {
    "large": (3, 10), "xlarge": (4, 15), "2xlarge": (4, 15), "4xlarge": (8, 30),
    "8xlarge": (8, 30), "9xlarge": (8, 30), "12xlarge": (8, 30), "16xlarge": (15, 50),
    "18xlarge": (15, 50), "24xlarge": (15, 50), "metal": (15, 50),
}
NITRO_FAMILIES = frozenset({
    "m5", "m5d", "m5a", "c5", "c5d", "r5", "r5d", "r5a",
    "m6i", "c6i", "r6i", "m6g", "c6g", "r6g",
})
_BURSTABLE: dict[str, tuple[int, int]] = {
    "nano": (2, 2), "micro": (2, 2), "small": (3, 4), "medium": (3, 6), "large": (3, 12),
    "xlarge": (4, 15), "2xlarge": (4, 15),
}


def known_limits(instance_type: str) -> tuple[int, int] | None:
    """(ENIs, IPv4 per ENI) for a type this table is sure of, else None."""
    family, _, size = instance_type.partition(".")
    if family in ("t3", "t3a"):
        return _BURSTABLE.get(size)
    if family in NITRO_FAMILIES:
        # c5 and c5d have 9xlarge and 18xlarge where the others have 8xlarge and 16xlarge
        odd = ("8xlarge", "16xlarge") if family in ("c5", "c5d") else ("9xlarge", "18xlarge")
        return None if size in odd else _NITRO_SIZES.get(size)
    return None
