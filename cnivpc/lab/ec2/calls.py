"""Who called what: per-node, per-action counts of every EC2 call the lab's front door answered.

Owns :class:`CallCounts` and :func:`attribute`. The middleware sees every call, so it counts all
of them: answered, failed (injected faults, throttling, denials, EC2's own errors, DryRun
included) and those whose answer was withheld (a lost response), whatever the work did later
(an ENI created and then deleted, an Assign rolled back) -- a benchmark wants the calls made,
not the state left.

A call is attributed to the instance it came from, in this order:

1. the source IP of the request is the primary private IP of an instance's ENI (calls made
   inside a node netns to ``169.254.169.254:8773`` leave from the node's primary IP);
2. the request names an instance (``InstanceId``, ``InstanceId.1``);
3. the request names an ENI (``NetworkInterfaceId``, ``NetworkInterfaceId.1``) or an
   attachment (``AttachmentId``) attached to an instance at the time of the call;
4. otherwise it counts under ``"-"`` (e.g. a host-side DescribeSubnets).

Stdlib only; reads moto's backend through duck typing (call :func:`attribute` under the lab lock).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

UNATTRIBUTED = "-"


def attribute(backend: Any, remote_addr: str, params: Mapping[str, str]) -> str:
    """The instance id a call is counted under (see the module docstring); under the lab lock."""
    enis = list(getattr(backend, "enis", {}).values())
    if remote_addr:
        for eni in enis:
            if eni.instance is not None and eni.private_ip_address == remote_addr:
                return str(eni.instance.id)
    for key in ("InstanceId", "InstanceId.1"):
        if params.get(key):
            return params[key]
    wanted = {params.get(k) for k in ("NetworkInterfaceId", "NetworkInterfaceId.1")} - {None, ""}
    attachment = params.get("AttachmentId")
    for eni in enis:
        if eni.instance is not None and (
            eni.id in wanted or (attachment and eni.attachment_id == attachment)
        ):
            return str(eni.instance.id)
    return UNATTRIBUTED


class CallCounts:
    """Thread-safe counters: node -> action -> {calls, ok, failed, lost, errors: {code: n}}."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, dict[str, Any]]] = {}

    def record(self, node: str, action: str, error: str | None, *, lost: bool = False) -> None:
        """One call answered with ``error`` (an EC2 error code) or success (None)."""
        with self._lock:
            entry = self._counts.setdefault(node, {}).setdefault(
                action, {"calls": 0, "ok": 0, "failed": 0, "lost": 0, "errors": {}}
            )
            entry["calls"] += 1
            if error is None:
                entry["ok"] += 1
            else:
                entry["failed"] += 1
                entry["errors"][error] = entry["errors"].get(error, 0) + 1
            if lost:
                entry["lost"] += 1

    def snapshot(self, *, reset: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
        """A deep copy, JSON-ready; ``reset`` zeroes the counters in the same step."""
        with self._lock:
            out = {
                node: {a: {**e, "errors": dict(e["errors"])} for a, e in sorted(actions.items())}
                for node, actions in sorted(self._counts.items())
            }
            if reset:
                self._counts.clear()
        return out

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
