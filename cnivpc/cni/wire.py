"""What the CNI wire models do beyond their fields, without pydantic: the value checks their
fields run (``config_path``, ``ip``, ``cidr``, ``network``) and their methods (``WireMethods``:
``to_json``; ``IPConfigMethods``: ``ip``/``network``; ``ResultMethods``: ``to_version``/
``from_version``).

Shared by both forms of every model: the pydantic declarations (``cni.types``, the source of
truth) name these checks and inherit these methods, and so do the classes compiled from their
generated schemas (``cni.compiled``), which plugin processes use without importing pydantic.
Imports nothing of cnivpc but ``cni.paths`` and ``cni.convert``; never pydantic.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from . import convert
from .paths import config_path_problem

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
# libcni sets no length; ours keeps every name derived from it within the kernel's limits
# with the longest container ID (``cni.env.CONTAINER_ID_MAX``): the ptp veth alias
# (IFALIASZ, 255 bytes) and the masq rules' comment (xt_comment, 255 bytes).
NAME_MAX = 96


def config_path(value: str) -> str:
    """A path taken from a config (logFile, dataDir, lockPath), opened later with
    ``cni.paths`` (never through a symlink)."""
    problem = config_path_problem(value)
    if problem:
        raise ValueError(f"invalid path {value!r}: {problem}")
    return value


def ip(value: str | None) -> str | None:
    return None if value is None else str(ipaddress.ip_address(value))


def cidr(value: str) -> str:
    """An address with prefix length (host bits allowed, as in 10.0.0.5/24)."""
    if "/" not in value:
        raise ValueError(f"{value!r} has no prefix length")
    return str(ipaddress.ip_interface(value))


def network(value: str) -> str:
    return str(ipaddress.ip_network(value, strict=False))


def prune(value: Any) -> Any:
    """Drop empty lists and dicts recursively (Go's omitempty on slices, maps and dns)."""
    if isinstance(value, dict):
        pruned = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v != [] and v != {}}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


class WireMethods:
    """Output drops ``None`` fields and empty lists/objects the way the reference library's
    ``omitempty`` does."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        dumped: dict[str, Any] = prune(self.model_dump(  # type: ignore[attr-defined]
            by_alias=True, exclude_none=True, mode="json"))
        return dumped


class IPConfigMethods:
    __slots__ = ()
    address: str

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_interface(self.address).ip

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_interface(self.address).network


class ResultMethods:
    __slots__ = ()

    def to_version(self, version: str) -> dict[str, Any]:
        """The JSON to print for a request in ``version``."""
        body: dict[str, Any] = self.to_json()  # type: ignore[attr-defined]
        body.pop("cniVersion", None)
        return convert.from_current(body, version)

    @classmethod
    def from_version(cls, data: dict[str, Any], version: str) -> Any:
        """Parse a result (a prevResult) written in ``version``."""
        return cls.model_validate(convert.to_current(data, version))  # type: ignore[attr-defined]
