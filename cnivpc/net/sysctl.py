"""Kernel parameters under ``/proc/sys``, in the current netns or another one.

Keys are slash paths (``net/ipv4/conf/eth0/rp_filter``), not dotted names: interface names may
contain dots (``eth0.100``), which the dotted form cannot express. ``/proc/sys/net`` shows the
netns of the task that opens the file, so a key of another netns is read and written from a
thread inside it (``netns.run_in``).

Imports nothing of cnivpc but ``net.errors`` and ``net.netns``.
"""

from __future__ import annotations

import os

from . import netns
from .errors import SysctlError

ROOT = "/proc/sys"


def _path(key: str) -> str:
    clean = key.strip("/")
    if not clean or ".." in clean.split("/"):
        raise ValueError(f"invalid sysctl key {key!r}")
    return os.path.join(ROOT, clean)


def read(key: str, netns_path: str | None = None) -> str:
    path = _path(key)

    def body() -> str:
        with open(path, encoding="ascii") as f:
            return f.read().strip()

    try:
        return netns.run_in(netns_path, body)
    except OSError as exc:
        raise SysctlError(f"cannot read sysctl {key}", str(exc), errno=exc.errno) from exc


def write(key: str, value: str, netns_path: str | None = None) -> None:
    """Set ``key`` to ``value`` (skipping the write when it already has that value, so a
    read-only /proc/sys that is already right is not an error)."""
    path = _path(key)

    def body() -> None:
        with open(path, "r+", encoding="ascii") as f:
            if f.read().strip() == value:
                return
            f.seek(0)
            f.write(value)

    try:
        netns.run_in(netns_path, body)
    except OSError as exc:
        raise SysctlError(f"cannot set sysctl {key}={value}", str(exc),
                          errno=exc.errno) from exc


def enable_forwarding(ipv4: bool, ipv6: bool, netns_path: str | None = None) -> None:
    """Turn on IP forwarding for the families asked for."""
    if ipv4:
        write("net/ipv4/ip_forward", "1", netns_path)
    if ipv6:
        write("net/ipv6/conf/all/forwarding", "1", netns_path)
