"""The lab's control surface: what tests (and the ``cnivpc`` doctor's tests) turn at run time.

Owns :class:`LabControl`: the active latency profile, the throttling switch and bucket sizes, the
injected faults and the IAM deny list. The middleware reads it on every call; nothing here touches
moto. Stdlib plus the lab's own leaf modules (``profiles``, ``faults``, ``throttle``).
"""

from __future__ import annotations

import base64
import fnmatch
import os
import random
import threading

from ..faults import Faults
from ..profiles import LatencyProfile, get_profile
from .throttle import Throttler


class LabControl:
    def __init__(self, profile: LatencyProfile | str, *, throttling: bool | None = None) -> None:
        self._lock = threading.Lock()
        self._profile = get_profile(profile)
        self._rng = random.Random(self._profile.seed)
        self.faults = Faults()
        self.throttler = Throttler(
            enabled=self._profile.throttling if throttling is None else throttling
        )
        self._denied: set[str] = set()

    # -- latency --------------------------------------------------------------------------------
    @property
    def profile(self) -> LatencyProfile:
        return self._profile

    def set_profile(self, profile: LatencyProfile | str) -> LatencyProfile:
        """Switch latency profile (does not change the throttling switch)."""
        resolved = get_profile(profile)
        with self._lock:
            self._profile = resolved
            self._rng = random.Random(resolved.seed)
        return resolved

    def latency_for(self, action: str) -> float:
        with self._lock:
            return self._profile.latency(action).sample(self._rng)

    # -- throttling -----------------------------------------------------------------------------
    def set_throttling(self, enabled: bool) -> None:
        self.throttler.enabled = enabled

    @property
    def throttling(self) -> bool:
        return self.throttler.enabled

    def set_bucket(self, key: str, size: float, refill_per_s: float) -> None:
        """Resize one bucket: ``key`` is an action, or ``"<Action>/unfiltered"``."""
        self.throttler.set_bucket(key, size, refill_per_s)

    def drain_bucket(self, key: str) -> None:
        self.throttler.drain(key)

    # -- IAM ------------------------------------------------------------------------------------
    def deny(self, *actions: str) -> None:
        """Calls of these actions answer ``UnauthorizedOperation`` (403), DryRun or not.

        Each one is an action name or a glob (``Create*``, ``*NetworkInterface*``), as an IAM
        policy's ``Action`` element would say ``ec2:Create*``.
        """
        with self._lock:
            self._denied.update(actions)

    def allow(self, *actions: str) -> None:
        """Withdraw deny entries (exactly as they were given to :meth:`deny`)."""
        with self._lock:
            self._denied.difference_update(actions)

    def is_denied(self, action: str) -> bool:
        with self._lock:
            return action in self._denied or any(
                fnmatch.fnmatchcase(action, pattern) for pattern in self._denied
            )

    def denied(self) -> list[str]:
        with self._lock:
            return sorted(self._denied)

    @staticmethod
    def encoded_denial() -> str:
        # AWS appends an opaque base64url blob (STS DecodeAuthorizationMessage input); its content
        # is meaningless to clients, only its presence and alphabet matter.
        return base64.urlsafe_b64encode(os.urandom(96)).decode().rstrip("=")

    # -- everything -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Faults, buckets, deny list back to defaults; profile and throttling switch kept."""
        self.faults.clear()
        self.throttler.reset()
        with self._lock:
            self._denied.clear()
            self._rng = random.Random(self._profile.seed)
