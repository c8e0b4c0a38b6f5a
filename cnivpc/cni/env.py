"""The CNI_* environment: one table of variables, which commands need them, and how each is
validated. Every missing or invalid variable is reported in one error (code 4), as libcni does.

This is the one place the runtime's strings are checked: CNI_CONTAINERID and CNI_IFNAME by
libcni's rules, CNI_NETNS (absolute, no control characters; ``net.netns`` then checks it is a
network namespace), CNI_ARGS (``cni.args``). A plugin gets nothing it could misread: a container
ID is safe in a path, an iptables comment or a log line, an interface name in a netlink call.

DEL is best effort: an invalid optional variable (CNI_NETNS, CNI_ARGS) is set aside with a
note (``CmdArgs.set_aside``) instead of failing it, and a DEL whose container ID or interface
name no ADD could have accepted has nothing to undo: ``CmdArgs.never_added`` says why, and the
dispatcher answers success without running the plugin (a failed DEL is retried forever). A
*missing* required variable still fails every command.

Stdlib only; imports nothing of cnivpc but ``cni.errors`` and ``cni.args``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

from .args import cni_args_problem
from .errors import InvalidEnvironment

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
CONTAINER_ID_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
# libcni sets no length. Runtimes use 64 hex digits (containerd, CRI-O, podman) or fewer
# (cnitool); a longer one could not fit the names derived from it (``cni.types.NAME_MAX``).
CONTAINER_ID_MAX = 128


def validate_container_id(value: str) -> str | None:
    # fullmatch: with match(), "$" also accepts a trailing newline ("abc\n").
    if not CONTAINER_ID_RE.fullmatch(value):
        return "must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
    if len(value) > CONTAINER_ID_MAX:
        return f"longer than {CONTAINER_ID_MAX} characters"
    return None


def validate_ifname(value: str) -> str | None:
    """libcni's rules: 1-15 bytes, not '.' or '..', no '/', ':' or whitespace."""
    if len(value.encode()) > 15:
        return "longer than 15 characters"
    if value in (".", ".."):
        return "must not be '.' or '..'"
    if any(c in value for c in "/:") or any(c.isspace() for c in value):
        return "must not contain '/', ':' or whitespace"
    return None


def validate_netns(value: str) -> str | None:
    if not value.startswith("/"):
        return "must be an absolute path"
    if len(value.encode(errors="surrogateescape")) > 4096:
        return "longer than 4096 bytes"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "must not contain control characters"
    return None


# A NamedTuple, not a dataclass: the plugin path never imports dataclasses (with inspect and
# ast it costs ~6 ms per exec, and each class ~0.4 ms to create; a NamedTuple 0.06 ms).
class EnvVar(NamedTuple):
    name: str
    attr: str
    required_for: frozenset[str]
    validate: Callable[[str], str | None] | None = None


# CNI_PATH is required by the Go skel for most commands; we only delegate in one mode, so it
# stays optional here and the delegating code reports its absence itself.
ENV_TABLE: tuple[EnvVar, ...] = (
    EnvVar("CNI_CONTAINERID", "container_id", frozenset({"ADD", "DEL", "CHECK"}),
           validate_container_id),
    EnvVar("CNI_NETNS", "netns", frozenset({"ADD", "CHECK"}), validate_netns),
    EnvVar("CNI_IFNAME", "ifname", frozenset({"ADD", "DEL", "CHECK"}), validate_ifname),
    EnvVar("CNI_ARGS", "args", frozenset(), cni_args_problem),
    EnvVar("CNI_PATH", "path", frozenset()),
)


class CmdArgs(NamedTuple):
    """What the runtime told us through the environment (and stdin, read later)."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: str = ""
    path: str = ""
    stdin: bytes = b""  # never in repr(): it may hold credentials
    # DEL only: invalid optional variables left out, each with its problem.
    set_aside: tuple[str, ...] = ()
    # DEL only: why no ADD can have made this attachment (an invalid container ID or ifname).
    never_added: str = ""

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields
                          if name != "stdin")
        return f"CmdArgs({shown})"


# What identifies an attachment: a DEL naming an invalid one has nothing to undo.
IDENTITY = frozenset({"CNI_CONTAINERID", "CNI_IFNAME"})


def read_env(command: str, getenv: Callable[[str], str | None]) -> CmdArgs:
    """Collect the CNI_* variables for ``command``; one InvalidEnvironment names every problem
    (DEL: see the module docstring)."""
    values: dict[str, str] = {}
    missing: list[str] = []
    invalid: list[str] = []
    set_aside: list[str] = []
    never_added: list[str] = []
    for var in ENV_TABLE:
        raw = getenv(var.name) or ""
        if not raw:
            if command in var.required_for:
                missing.append(var.name)
            continue
        if var.validate is not None:
            problem = var.validate(raw)
            if problem:
                text = f"{var.name}={raw[:300]!r}: {problem}"
                if command != "DEL":
                    invalid.append(text)
                elif var.name in IDENTITY:
                    never_added.append(text)
                else:
                    set_aside.append(text)
                continue
        values[var.attr] = raw
    if missing or invalid:
        parts = []
        if missing:
            parts.append(f"required env variables {missing} missing")
        if invalid:
            parts.append("invalid env variables: " + "; ".join(invalid))
        raise InvalidEnvironment("; ".join(parts))
    return CmdArgs(command=command, container_id=values.get("container_id", ""),
                   netns=values.get("netns", ""), ifname=values.get("ifname", ""),
                   args=values.get("args", ""), path=values.get("path", ""),
                   set_aside=tuple(set_aside), never_added="; ".join(never_added))
