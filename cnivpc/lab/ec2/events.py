"""Attachment events: how the rest of the lab learns that an ENI came or went.

Owns :class:`AttachmentEvent` and :class:`EventHub`. The hot-plug fabric registers callbacks
(``Ec2Lab.on_attach`` / ``on_detach``) and moves a netdev into (or out of) a node's namespace when
one fires. Callbacks run on the request thread *after* the EC2 state change is committed and after
the lab's state lock is released, so a callback may call back into the lab. Stdlib only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttachmentEvent:
    """One ENI attached to, or detached from, an instance."""

    instance_id: str
    eni_id: str
    mac: str
    device_index: int
    attachment_id: str
    # Why a detach happened: "detach" (DetachNetworkInterface), "terminate" (instance terminated,
    # ENI kept), "delete-on-termination" (instance terminated, ENI deleted). "attach" for attaches.
    reason: str = "attach"


Callback = Callable[[AttachmentEvent], None]


class EventHub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attach: list[Callback] = []
        self._detach: list[Callback] = []

    def on_attach(self, fn: Callback) -> Callback:
        with self._lock:
            self._attach.append(fn)
        return fn

    def on_detach(self, fn: Callback) -> Callback:
        with self._lock:
            self._detach.append(fn)
        return fn

    def remove(self, fn: Callback) -> None:
        with self._lock:
            for group in (self._attach, self._detach):
                while fn in group:
                    group.remove(fn)

    def emit(self, attached: list[AttachmentEvent], detached: list[AttachmentEvent]) -> None:
        with self._lock:
            on_attach, on_detach = list(self._attach), list(self._detach)
        for event in detached:
            for fn in on_detach:
                self._call(fn, event)
        for event in attached:
            for fn in on_attach:
                self._call(fn, event)

    @staticmethod
    def _call(fn: Callback, event: AttachmentEvent) -> None:
        # A broken subscriber must not turn a committed EC2 call into an HTTP error.
        try:
            fn(event)
        except Exception:
            log.exception("lab attachment callback %r failed for %s", fn, event)
