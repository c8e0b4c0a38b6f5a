"""pydantic models of the CNI wire format: network config (base of every plugin's config),
results in the current (1.1) shape (GC's attachments are ``cni.attachments``).

Configs keep unknown keys (``extra="allow"``), as the spec asks plugins to pass them through.
Output drops ``None`` fields and empty lists/objects the way the reference library's
``omitempty`` does. Imports pydantic (a real cost at start-up): never import this module on the
VERSION path. Imports nothing of cnivpc but ``cni.errors``/``cni.convert``/``cni.versions``/
``cni.paths``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from . import convert
from .paths import config_path_problem

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
# libcni sets no length; ours keeps every name derived from it within the kernel's limits
# with the longest container ID (``cni.env.CONTAINER_ID_MAX``): the ptp veth alias
# (IFALIASZ, 255 bytes) and the masq rules' comment (xt_comment, 255 bytes).
NAME_MAX = 96


def _config_path(value: str) -> str:
    problem = config_path_problem(value)
    if problem:
        raise ValueError(f"invalid path {value!r}: {problem}")
    return value


# A path taken from a config (logFile, dataDir, lockPath): checked here, opened with
# ``cni.paths`` (never through a symlink).
ConfigPath = Annotated[str, AfterValidator(_config_path)]


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown keys kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    def to_json(self) -> dict[str, Any]:
        dumped: dict[str, Any] = _prune(
            self.model_dump(by_alias=True, exclude_none=True, mode="json"))
        return dumped


def _prune(value: Any) -> Any:
    """Drop empty lists and dicts recursively (Go's omitempty on slices, maps and dns)."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v != [] and v != {}}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _ip(value: str) -> str:
    return str(ipaddress.ip_address(value))


def _cidr(value: str) -> str:
    """An address with prefix length (host bits allowed, as in 10.0.0.5/24)."""
    if "/" not in value:
        raise ValueError(f"{value!r} has no prefix length")
    return str(ipaddress.ip_interface(value))


class DNS(WireModel):
    nameservers: list[str] = Field(default_factory=list)
    domain: str | None = None
    search: list[str] = Field(default_factory=list)
    options: list[str] = Field(default_factory=list)


class Interface(WireModel):
    name: str
    mac: str | None = None
    mtu: int | None = None
    sandbox: str | None = None
    socket_path: str | None = None
    pci_id: str | None = Field(default=None, alias="pciID")


class IPConfig(WireModel):
    address: str
    gateway: str | None = None
    interface: int | None = None

    @field_validator("address")
    @classmethod
    def _check_address(cls, v: str) -> str:
        return _cidr(v)

    @field_validator("gateway")
    @classmethod
    def _check_gateway(cls, v: str | None) -> str | None:
        return None if v is None else _ip(v)

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_interface(self.address).ip

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_interface(self.address).network


class Route(WireModel):
    dst: str
    gw: str | None = None
    mtu: int | None = None
    advmss: int | None = None
    priority: int | None = None
    table: int | None = None
    scope: int | None = None

    @field_validator("dst")
    @classmethod
    def _check_dst(cls, v: str) -> str:
        return str(ipaddress.ip_network(v, strict=False))

    @field_validator("gw")
    @classmethod
    def _check_gw(cls, v: str | None) -> str | None:
        return None if v is None else _ip(v)


class Result(WireModel):
    """An ADD result in the current (1.x) shape."""

    interfaces: list[Interface] = Field(default_factory=list)
    ips: list[IPConfig] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    dns: DNS = Field(default_factory=DNS)

    def to_version(self, version: str) -> dict[str, Any]:
        """The JSON to print for a request in ``version``."""
        body = self.to_json()
        body.pop("cniVersion", None)
        return convert.from_current(body, version)

    @classmethod
    def from_version(cls, data: dict[str, Any], version: str) -> Result:
        """Parse a result (a prevResult) written in ``version``."""
        return cls.model_validate(convert.to_current(data, version))


class NetConf(WireModel):
    """The keys every plugin config has. Plugins subclass it with their own keys."""

    cni_version: str = "0.1.0"
    name: str = ""
    type: str = ""
    # prevResult is kept raw here and parsed by the dispatcher in the request's version.
    prev_result: dict[str, Any] | None = None
    dns: DNS | None = None
    runtime_config: dict[str, Any] = Field(default_factory=dict)
    args: dict[str, Any] = Field(default_factory=dict)
    ipam: dict[str, Any] | None = None
    # Logging (ours): a log file per plugin config, and its level.
    log_file: ConfigPath | None = None
    log_level: str | None = None
