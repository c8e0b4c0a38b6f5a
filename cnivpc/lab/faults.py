"""Injectable faults for the simulated EC2 API and the hot-plug fabric.

Owns :class:`Faults` (thread-safe registry of armed faults) and the small value types the EC2
middleware consumes (:class:`HttpFault`, :class:`TimeoutFault`). Imports only the stdlib: the EC2
middleware asks "is a fault armed for this call?" and the fabric asks "should this attach stay
invisible?"; neither direction may pull moto or werkzeug in here.

Fault kinds (each one a real-world failure cnivpc must survive):

* HTTP 5xx for the next N calls of an action, or with a probability (EC2 ``InternalError`` 500 /
  ``Unavailable`` 503; botocore retries both).
* Timeouts: the call is held longer than the client's read timeout; ``applied`` decides whether the
  action still takes effect (the response got lost) or not (the request got lost).
* ``RequestLimitExceeded`` bursts: the next N calls are throttled regardless of the token buckets.
* "Attach that never shows up": AttachNetworkInterface succeeds but the ENI never appears in the OS
  (ecs-agent #1520); the fabric reads :meth:`Faults.attach_hidden`.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

ANY_ACTION = "*"


@dataclass(frozen=True)
class HttpFault:
    """An error answer the middleware sends instead of running the action."""

    status: int
    code: str
    message: str


INTERNAL_ERROR = HttpFault(500, "InternalError", "An internal error has occurred.")
UNAVAILABLE = HttpFault(
    503, "Unavailable", "The server is overloaded and can't handle the request."
)
THROTTLED = HttpFault(503, "RequestLimitExceeded", "Request limit exceeded.")


@dataclass(frozen=True)
class TimeoutFault:
    """Hold the call ``delay`` s, then run it (``applied``) or answer 503 without running it."""

    delay: float
    applied: bool = True


@dataclass
class _Counted:
    remaining: int
    fault: HttpFault | TimeoutFault


@dataclass
class _Random:
    probability: float
    fault: HttpFault
    rng: random.Random


class Faults:
    """Armed faults, consumed by the lab's EC2 middleware and read by the fabric.

    Actions are EC2 action names (``"AssignPrivateIpAddresses"``) or ``"*"`` for every action.
    All methods are thread-safe; the lab serves requests on several threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counted: dict[str, list[_Counted]] = {}
        self._random: dict[str, _Random] = {}
        self._hidden_enis: set[str] = set()
        self._hidden_instances: set[str] = set()

    # -- arming ---------------------------------------------------------------------------------
    def fail_next(
        self,
        action: str,
        count: int = 1,
        *,
        status: int = 500,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """The next ``count`` calls of ``action`` answer HTTP ``status`` (500 or 503 typically)."""
        base = INTERNAL_ERROR if status == 500 else UNAVAILABLE
        fault = HttpFault(status, code or base.code, message or base.message)
        self._arm(action, count, fault)

    def fail_randomly(
        self, action: str, probability: float, *, status: int = 500, seed: int | None = 0
    ) -> None:
        """Each call of ``action`` fails with ``probability`` (0 disarms); seeded."""
        base = INTERNAL_ERROR if status == 500 else UNAVAILABLE
        with self._lock:
            if probability <= 0.0:
                self._random.pop(action, None)
            else:
                self._random[action] = _Random(
                    probability, HttpFault(status, base.code, base.message), random.Random(seed)
                )

    def timeout_next(
        self, action: str, count: int = 1, *, delay: float = 5.0, applied: bool = True
    ) -> None:
        """Hold the next ``count`` calls ``delay`` s (pick more than the client's read timeout)."""
        self._arm(action, count, TimeoutFault(delay, applied))

    def throttle_next(self, action: str = ANY_ACTION, count: int = 1) -> None:
        """A RequestLimitExceeded (503) burst: the next ``count`` calls are throttled."""
        self._arm(action, count, THROTTLED)

    def hide_attach(self, *, eni_id: str | None = None, instance_id: str | None = None) -> None:
        """Attaches of this ENI (or to this instance) succeed in EC2 but never show in the OS."""
        if eni_id is None and instance_id is None:
            raise ValueError("hide_attach needs eni_id or instance_id")
        with self._lock:
            if eni_id is not None:
                self._hidden_enis.add(eni_id)
            if instance_id is not None:
                self._hidden_instances.add(instance_id)

    def clear(self) -> None:
        with self._lock:
            self._counted.clear()
            self._random.clear()
            self._hidden_enis.clear()
            self._hidden_instances.clear()

    # -- consuming ------------------------------------------------------------------------------
    def take(self, action: str) -> HttpFault | TimeoutFault | None:
        """Consume the fault armed for this call, if any (exact action before ``"*"``)."""
        with self._lock:
            for key in (action, ANY_ACTION):
                queue = self._counted.get(key)
                if queue:
                    head = queue[0]
                    head.remaining -= 1
                    if head.remaining <= 0:
                        queue.pop(0)
                    return head.fault
            for key in (action, ANY_ACTION):
                rnd = self._random.get(key)
                if rnd is not None and rnd.rng.random() < rnd.probability:
                    return rnd.fault
        return None

    def attach_hidden(self, instance_id: str, eni_id: str) -> bool:
        """True when the fabric must never make this attachment visible in the OS."""
        with self._lock:
            return eni_id in self._hidden_enis or instance_id in self._hidden_instances

    def _arm(self, action: str, count: int, fault: HttpFault | TimeoutFault) -> None:
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self._counted.setdefault(action, []).append(_Counted(count, fault))
