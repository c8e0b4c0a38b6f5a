"""Injectable faults for the simulated EC2 API and the hot-plug fabric.

Owns :class:`Faults` (thread-safe registry of armed faults) and the small value types the EC2
middleware consumes (:class:`HttpFault`, :class:`LostResponse`, :class:`LostRequest`). Imports only
the stdlib: the EC2 middleware asks "is a fault armed for this call?" and the fabric asks "should
this attach stay invisible?"; neither direction may pull moto or werkzeug in here.

Fault kinds (each one a real-world failure cnivpc must survive):

* HTTP 5xx for the next N calls of an action, or with a probability (EC2 ``InternalError`` 500 /
  ``Unavailable`` 503; botocore retries both).
* A lost response: EC2 does the work at once, and the answer is withheld (held ``hold`` s, past
  the client's read timeout, or the connection is dropped). A client's retry therefore meets
  the state the first call already changed, as on AWS.
* A lost request: the call is held ``hold`` s and never applied (the client sees a timeout).
* ``RequestLimitExceeded`` bursts: the next N calls are throttled regardless of the token buckets.
* "Attach that never shows up": AttachNetworkInterface succeeds but the ENI never appears in the OS
  (ecs-agent #1520); the fabric reads :meth:`Faults.attach_hidden`.

Actions may be globs (``Create*``): a call takes the fault of its exact name first, then of the
first armed pattern that matches it.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass
from typing import Any

ANY_ACTION = "*"
# Past botocore's default 60 s read timeout (cnivpc's own client gives up after 10 s).
DEFAULT_HOLD = 70.0


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
class LostResponse:
    """Run the call now; withhold its answer ``hold`` s (``drop``: close the connection)."""

    hold: float = DEFAULT_HOLD
    drop: bool = False


@dataclass(frozen=True)
class LostRequest:
    """Hold the call ``hold`` s, then answer 503 without ever running it."""

    hold: float = DEFAULT_HOLD


Fault = HttpFault | LostResponse | LostRequest


@dataclass
class _Counted:
    remaining: int
    fault: Fault


@dataclass
class _Random:
    probability: float
    fault: HttpFault
    rng: random.Random


class Faults:
    """Armed faults, consumed by the lab's EC2 middleware and read by the fabric.

    Actions are EC2 action names (``"AssignPrivateIpAddresses"``), globs (``"Create*"``) or
    ``"*"`` for every action. All methods are thread-safe; the lab serves requests on several
    threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counted: dict[str, list[_Counted]] = {}
        self._random: dict[str, _Random] = {}
        self._hidden_enis: set[str] = set()
        self._hidden_instances: set[str] = set()
        # Set by clear(): every withheld answer and held request goes out at once, so a test's
        # teardown (or a person's `fault clear`) never waits out a long hold.
        self._release = threading.Event()

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

    def lose_response_next(
        self, action: str, count: int = 1, *, hold: float = DEFAULT_HOLD, drop: bool = False
    ) -> None:
        """The next ``count`` calls take effect at once; their answers are withheld."""
        self._arm(action, count, LostResponse(hold, drop))

    def lose_request_next(self, action: str, count: int = 1, *, hold: float = DEFAULT_HOLD) -> None:
        """The next ``count`` calls are held ``hold`` s and never take effect."""
        self._arm(action, count, LostRequest(hold))

    def timeout_next(
        self, action: str, count: int = 1, *, delay: float = 5.0, applied: bool = True
    ) -> None:
        """A timeout of ``delay`` s: a lost response (``applied``) or a lost request."""
        if applied:
            self.lose_response_next(action, count, hold=delay)
        else:
            self.lose_request_next(action, count, hold=delay)

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
        """Disarm everything and release every answer or request being held."""
        with self._lock:
            self._counted.clear()
            self._random.clear()
            self._hidden_enis.clear()
            self._hidden_instances.clear()
            released, self._release = self._release, threading.Event()
        released.set()

    # -- consuming ------------------------------------------------------------------------------
    def take(self, action: str) -> Fault | None:
        """Consume the fault armed for this call, if any (exact action before patterns)."""
        with self._lock:
            key = self._key(self._counted, action, lambda q: bool(q))
            if key is not None:
                queue = self._counted[key]
                head = queue[0]
                head.remaining -= 1
                if head.remaining <= 0:
                    queue.pop(0)
                return head.fault
            key = self._key(self._random, action, lambda _r: True)
            if key is not None:
                rnd = self._random[key]
                if rnd.rng.random() < rnd.probability:
                    return rnd.fault
        return None

    def hold(self, seconds: float) -> bool:
        """Wait ``seconds`` or until :meth:`clear`; True when released early."""
        with self._lock:
            release = self._release
        return release.wait(seconds)

    def attach_hidden(self, instance_id: str, eni_id: str) -> bool:
        """True when the fabric must never make this attachment visible in the OS."""
        with self._lock:
            return eni_id in self._hidden_enis or instance_id in self._hidden_instances

    def armed(self) -> list[dict[str, Any]]:
        """What is armed, JSON-ready (``python -m cnivpc.lab fault list``)."""
        out: list[dict[str, Any]] = []
        with self._lock:
            for action, queue in self._counted.items():
                for c in queue:
                    out.append({"action": action, "remaining": c.remaining, **_describe(c.fault)})
            for action, r in self._random.items():
                out.append({"action": action, "probability": r.probability, **_describe(r.fault)})
            for eni in sorted(self._hidden_enis):
                out.append({"kind": "hide-attach", "eni": eni})
            for iid in sorted(self._hidden_instances):
                out.append({"kind": "hide-attach", "instance": iid})
        return out

    def _arm(self, action: str, count: int, fault: Fault) -> None:
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self._counted.setdefault(action, []).append(_Counted(count, fault))

    @staticmethod
    def _key(table: dict[str, Any], action: str, live: Any) -> str | None:
        if action in table and live(table[action]):
            return action
        for key, value in table.items():
            if key != action and live(value) and fnmatch.fnmatchcase(action, key):
                return key
        return None


def _describe(fault: Fault) -> dict[str, Any]:
    if isinstance(fault, LostResponse):
        return {"kind": "lost-response", "hold": fault.hold, "drop": fault.drop}
    if isinstance(fault, LostRequest):
        return {"kind": "lost-request", "hold": fault.hold}
    kind = "throttle" if fault.code == THROTTLED.code else "fail"
    return {"kind": kind, "status": fault.status, "code": fault.code}
