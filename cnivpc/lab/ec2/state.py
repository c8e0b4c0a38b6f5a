"""Shared state of one running lab: moto's backend, the lock, the control knobs and pending events.

Owns :class:`LabState`. The middleware, the moto patches, the rules and the topology helper all get
the same instance. One ``RLock`` serialises every EC2 action (moto's backend is not thread-safe,
and "check the limit, then let moto act" must be atomic); latency sleeps happen outside it.
Attachment events are queued while the lock is held and delivered after it is released; code that
mutates ``backend`` in-process (like :mod:`.topology`) must call :meth:`LabState.flush_events`
after releasing the lock. Imports only the stdlib and the lab's leaf modules (no moto, no WSGI).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .calls import CallCounts
from .control import LabControl
from .events import AttachmentEvent, EventHub


class LabState:
    def __init__(self, backend: Any, control: LabControl, events: EventHub) -> None:
        self.backend = backend
        self.control = control
        self.events = events
        self.calls = CallCounts()  # every call the front door answered, by node and action
        self.lock = threading.RLock()
        self._pending = threading.local()
        # Eventual-consistency windows (monotonic deadlines), see LatencyProfile.
        self.detaching: dict[str, float] = {}  # eni id -> when it becomes "available"
        self.invisible: dict[str, float] = {}  # eni id -> when calls naming it stop 404-ing
        # ClientToken -> (the request's other parameters, the answer): EC2's idempotency.
        self.client_tokens: dict[str, tuple[tuple[tuple[str, str], ...], bytes]] = {}

    def settle(self) -> None:
        """Finish transitions whose time has come (call under the lock, before reading state)."""
        now = time.monotonic()
        for eni_id, deadline in list(self.detaching.items()):
            if deadline <= now:
                del self.detaching[eni_id]
                eni = self.backend.enis.get(eni_id)
                if eni is not None and eni.instance is None and eni.status == "detaching":
                    eni.status = "available"
        for eni_id, deadline in list(self.invisible.items()):
            if deadline <= now:
                del self.invisible[eni_id]

    def clear_transitions(self) -> None:
        self.detaching.clear()
        self.invisible.clear()

    def _queue(self) -> tuple[list[AttachmentEvent], list[AttachmentEvent]]:
        queue: tuple[list[AttachmentEvent], list[AttachmentEvent]] | None = getattr(
            self._pending, "queue", None
        )
        if queue is None:
            queue = ([], [])
            self._pending.queue = queue
        return queue

    def queue_attach(self, event: AttachmentEvent) -> None:
        self._queue()[0].append(event)

    def queue_detach(self, event: AttachmentEvent) -> None:
        self._queue()[1].append(event)

    def flush_events(self) -> None:
        """Deliver this thread's queued events (call with the lock released)."""
        attached, detached = self._queue()
        if not attached and not detached:
            return
        a, d = list(attached), list(detached)
        attached.clear()
        detached.clear()
        self.events.emit(a, d)

    def discard_events(self) -> None:
        attached, detached = self._queue()
        attached.clear()
        detached.clear()
