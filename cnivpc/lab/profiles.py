"""Latency profiles for the lab: how slow each simulated EC2 call is and how late things show up.

Owns :class:`LatencyProfile`, :class:`Latency` and the named profiles (``zero``, ``aws-like``).
Imports only the stdlib: the EC2 middleware, the IMDS emulator and the hot-plug fabric all read
these figures, so this module must stay a leaf (no moto, no werkzeug, nothing of ours).

Figures for ``aws-like`` come from the project's anchors (anchors.md §1.14, aws-reference.md §2.4
and §4): one AssignPrivateIpAddresses call was seen at ~510 ms; creating plus attaching an ENI
"can take up to ~10 s" (VPC CNI's ``eniAttachTime``); IMDS shows a new ENI seconds later (18 s and
30 s are the bad tails, a few seconds is typical); freed IPs linger in IMDS for tens of seconds.
The profile models the typical case; the tails are for fault injection (``cnivpc.lab.faults``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType


@dataclass(frozen=True)
class Latency:
    """A delay in seconds: ``mean`` plus a uniform jitter in ``[-jitter, +jitter]``, never < 0."""

    mean: float = 0.0
    jitter: float = 0.0

    def sample(self, rng: random.Random) -> float:
        if self.jitter <= 0.0:
            return max(0.0, self.mean)
        return max(0.0, self.mean + rng.uniform(-self.jitter, self.jitter))


ZERO_LATENCY = Latency()


def _frozen(values: Mapping[str, Latency]) -> Mapping[str, Latency]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True)
class LatencyProfile:
    """Per-API latency and the consistency lags of the simulated VPC.

    * ``api``: EC2 action name (``AssignPrivateIpAddresses``) -> latency of one call; actions not
      listed use ``default``. The middleware sleeps this long before answering (outside its lock,
      so concurrent calls overlap as they do on AWS).
    * ``attach_visible_delay``: seconds after a successful AttachNetworkInterface before the ENI
      appears as a netdev in the node's OS (read by the hot-plug fabric).
    * ``detach_visible_delay``: seconds after a detach before the netdev disappears.
    * ``imds_lag``: seconds before new ENIs / new secondary IPs are visible in IMDS.
    * ``imds_remove_lag``: seconds freed IPs and detached ENIs keep showing in IMDS.
    * ``detach_duration``: seconds an ENI stays ``detaching`` after DetachNetworkInterface; a
      DeleteNetworkInterface meanwhile fails with "... is currently in use." (vpc-cni #1399: VPC CNI
      waits 2 s, retries Delete with backoff and still sees it).
    * ``create_visibility_delay``: seconds after CreateNetworkInterface during which calls naming
      the new ENI ID answer ``InvalidNetworkInterfaceID.NotFound`` (EC2 eventual consistency,
      terraform-provider-aws #35568; aws-reference.md §4).
    * ``throttling``: whether EC2's token buckets are enforced by default under this profile.
    * ``seed``: seed for the jitter RNG (fixed => reproducible runs).
    """

    name: str
    default: Latency = ZERO_LATENCY
    api: Mapping[str, Latency] = field(default_factory=lambda: _frozen({}))
    attach_visible_delay: float = 0.0
    detach_visible_delay: float = 0.0
    imds_lag: float = 0.0
    imds_remove_lag: float = 0.0
    detach_duration: float = 0.0
    create_visibility_delay: float = 0.0
    throttling: bool = False
    seed: int | None = 0

    def latency(self, action: str) -> Latency:
        return self.api.get(action, self.default)

    def with_overrides(self, **changes: object) -> LatencyProfile:
        """A copy with some fields replaced (``api`` may be given as a plain dict)."""
        api = changes.get("api")
        if isinstance(api, Mapping):
            changes["api"] = _frozen(api)
        return replace(self, **changes)  # type: ignore[arg-type]


ZERO = LatencyProfile(name="zero")

AWS_LIKE = LatencyProfile(
    name="aws-like",
    # Describe* and other cheap reads: tens to ~100 ms on a real region.
    default=Latency(0.08, 0.04),
    api=_frozen(
        {
            # anchors.md §1.14: one Assign call measured at ~510 ms.
            "AssignPrivateIpAddresses": Latency(0.5, 0.15),
            "UnassignPrivateIpAddresses": Latency(0.4, 0.1),
            "AssignIpv6Addresses": Latency(0.5, 0.15),
            "UnassignIpv6Addresses": Latency(0.4, 0.1),
            # "creating and attaching a new ENI can take up to ~10 s": split as create ~1.5 s,
            # attach ~2.5 s API time plus the OS-visible delay below.
            "CreateNetworkInterface": Latency(1.5, 0.5),
            "AttachNetworkInterface": Latency(2.5, 1.0),
            "DetachNetworkInterface": Latency(1.0, 0.5),
            "DeleteNetworkInterface": Latency(0.6, 0.2),
            "ModifyNetworkInterfaceAttribute": Latency(0.3, 0.1),
            "CreateTags": Latency(0.2, 0.05),
            "DeleteTags": Latency(0.2, 0.05),
            "RunInstances": Latency(2.0, 0.5),
            "TerminateInstances": Latency(1.0, 0.3),
        }
    ),
    attach_visible_delay=3.0,
    detach_visible_delay=1.0,
    # aws-reference.md §2.4: "some seconds" typical; 18-30 s tails are left to fault injection.
    imds_lag=3.0,
    imds_remove_lag=30.0,
    # "detaching often takes >2 s" (vpc-cni #1399).
    detach_duration=3.0,
    # Rare on AWS; tests that want it set it explicitly.
    create_visibility_delay=0.0,
    throttling=True,
    seed=0,
)

PROFILES: Mapping[str, LatencyProfile] = MappingProxyType(
    {ZERO.name: ZERO, AWS_LIKE.name: AWS_LIKE}
)


def get_profile(profile: LatencyProfile | str) -> LatencyProfile:
    """Resolve a profile name (``zero``, ``aws-like``) or pass a profile object through."""
    if isinstance(profile, LatencyProfile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown latency profile {profile!r} (known: {known})") from None
