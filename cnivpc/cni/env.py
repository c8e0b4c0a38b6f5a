"""The CNI_* environment: one table of variables, which commands need them, and how each is
validated. Every missing or invalid variable is reported in one error (code 4), as libcni does.

Stdlib only; imports nothing of cnivpc but ``cni.errors``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import InvalidEnvironment

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
CONTAINER_ID_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")


def validate_container_id(value: str) -> str | None:
    # fullmatch: with match(), "$" also accepts a trailing newline ("abc\n").
    if not CONTAINER_ID_RE.fullmatch(value):
        return "must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"
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
    return None


@dataclass(frozen=True)
class EnvVar:
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
    EnvVar("CNI_ARGS", "args", frozenset()),
    EnvVar("CNI_PATH", "path", frozenset()),
)


@dataclass(frozen=True)
class CmdArgs:
    """What the runtime told us through the environment (and stdin, read later)."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: str = ""
    path: str = ""
    stdin: bytes = field(default=b"", repr=False)


def read_env(command: str, getenv: Callable[[str], str | None]) -> CmdArgs:
    """Collect the CNI_* variables for ``command``; one InvalidEnvironment names every problem."""
    values: dict[str, str] = {}
    missing: list[str] = []
    invalid: list[str] = []
    for var in ENV_TABLE:
        raw = getenv(var.name) or ""
        if not raw:
            if command in var.required_for:
                missing.append(var.name)
            continue
        if var.validate is not None:
            problem = var.validate(raw)
            if problem:
                invalid.append(f"{var.name}={raw!r}: {problem}")
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
                   args=values.get("args", ""), path=values.get("path", ""))
