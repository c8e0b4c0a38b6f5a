"""EC2 request throttling: one token bucket per API action (anchors.md §6.3).

Owns :class:`TokenBucket`, :class:`Throttler` and the bucket table. A call takes one token from
its action's bucket; an empty bucket answers ``RequestLimitExceeded`` (HTTP 503). Sizes and refill
rates follow the EC2 developer guide "Request throttling for the Amazon EC2 API":

* actions with their own published bucket (Assign/Unassign/Create/Delete/Modify ENI: 100, 5/s;
  Create/DeleteTags: 100, 10/s; RunInstances: 5, 2/s),
* other mutating actions (Attach/DetachNetworkInterface, TerminateInstances, ...): 50, 5/s,
* non-mutating actions (Describe*, Get*, List*): 100, 20/s,
* DescribeNetworkInterfaces / DescribeInstances / DescribeSecurityGroups *without a filter and
  without pagination*: a smaller bucket, 50, 10/s (a separate key, ``<Action>/unfiltered``).

Buckets are per action, as the spec reads ("each API has its own bucket"); the category only picks
the size. Stdlib only; the clock is injectable so tests do not sleep.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BucketSpec:
    size: float
    refill_per_s: float


OWN_BUCKETS: dict[str, BucketSpec] = {
    "AssignPrivateIpAddresses": BucketSpec(100, 5),
    "UnassignPrivateIpAddresses": BucketSpec(100, 5),
    "AssignIpv6Addresses": BucketSpec(100, 5),
    "UnassignIpv6Addresses": BucketSpec(100, 5),
    "CreateNetworkInterface": BucketSpec(100, 5),
    "DeleteNetworkInterface": BucketSpec(100, 5),
    "ModifyNetworkInterfaceAttribute": BucketSpec(100, 5),
    "CreateTags": BucketSpec(100, 10),
    "DeleteTags": BucketSpec(100, 10),
    "RunInstances": BucketSpec(5, 2),
}
MUTATING = BucketSpec(50, 5)
NON_MUTATING = BucketSpec(100, 20)
UNFILTERED_DESCRIBE = BucketSpec(50, 10)
# Describe calls whose unfiltered, unpaginated form draws on the smaller bucket.
UNFILTERED_SENSITIVE = frozenset(
    {"DescribeNetworkInterfaces", "DescribeInstances", "DescribeSecurityGroups"}
)
_READ_PREFIXES = ("Describe", "Get", "List", "Search")


def is_mutating(action: str) -> bool:
    return not action.startswith(_READ_PREFIXES)


def bucket_key(action: str, *, unfiltered: bool) -> str:
    if unfiltered and action in UNFILTERED_SENSITIVE:
        return f"{action}/unfiltered"
    return action


def default_spec(key: str) -> BucketSpec:
    if key.endswith("/unfiltered"):
        return UNFILTERED_DESCRIBE
    if key in OWN_BUCKETS:
        return OWN_BUCKETS[key]
    return MUTATING if is_mutating(key) else NON_MUTATING


class TokenBucket:
    def __init__(self, spec: BucketSpec, now: float) -> None:
        self.spec = spec
        self.tokens = float(spec.size)
        self.stamp = now

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.stamp)
        self.tokens = min(float(self.spec.size), self.tokens + elapsed * self.spec.refill_per_s)
        self.stamp = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Throttler:
    """Per-action buckets, created lazily. ``enabled=False`` lets every call through."""

    def __init__(self, *, enabled: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}
        self._overrides: dict[str, BucketSpec] = {}

    def allow(self, action: str, *, unfiltered: bool) -> bool:
        if not self.enabled:
            return True
        key = bucket_key(action, unfiltered=unfiltered)
        with self._lock:
            return self._bucket(key).take(self._clock())

    def set_bucket(self, key: str, size: float, refill_per_s: float) -> None:
        """Override one bucket (``key`` is an action or ``<Action>/unfiltered``); starts full."""
        with self._lock:
            self._overrides[key] = BucketSpec(size, refill_per_s)
            self._buckets.pop(key, None)

    def drain(self, key: str) -> None:
        """Empty a bucket now (tests: the next call is throttled unless refill catches up)."""
        with self._lock:
            bucket = self._bucket(key)
            bucket.stamp = self._clock()
            bucket.tokens = 0.0

    def tokens(self, key: str) -> float:
        with self._lock:
            bucket = self._bucket(key)
            bucket._refill(self._clock())
            return bucket.tokens

    def refill_all(self) -> None:
        with self._lock:
            self._buckets.clear()

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._overrides.clear()

    def _bucket(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            spec = self._overrides.get(key) or default_spec(key)
            bucket = self._buckets[key] = TokenBucket(spec, self._clock())
        return bucket
