"""pydantic models of the CNI wire format: network config (base of every plugin's config),
results in the current (1.1) shape (GC's attachments are ``cni.attachments``).

The source of truth of these models, declared in pydantic for the CLI, the tests and the type
checker; plugin processes run the classes compiled from them (``cni.models``, through the
generated ``cni.schemas``: ``./build/dev schemas`` after any change here), so every check a
field runs is a function of ``cni.wire`` (pydantic-free), named with ``AfterValidator``, and
every method is inherited from ``cni.wire``'s mixins.

Configs keep unknown keys (``extra="allow"``), as the spec asks plugins to pass them through.
Output drops ``None`` fields and empty lists/objects the way the reference library's
``omitempty`` does. Imports pydantic (a real cost at start-up): never imported by a plugin
process. Imports nothing of cnivpc but ``cni.wire``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from . import wire
from .wire import NAME_MAX, NAME_RE

__all__ = ["DNS", "NAME_MAX", "NAME_RE", "ConfigPath", "IPConfig", "Interface", "NetConf",
           "Result", "Route", "WireModel"]

# A path taken from a config (logFile, dataDir, lockPath): checked here, opened with
# ``cni.paths`` (never through a symlink).
ConfigPath = Annotated[str, AfterValidator(wire.config_path)]


class WireModel(BaseModel, wire.WireMethods):
    """camelCase on the wire, snake_case in Python; unknown keys kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


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


class IPConfig(WireModel, wire.IPConfigMethods):
    address: Annotated[str, AfterValidator(wire.cidr)]
    gateway: Annotated[str | None, AfterValidator(wire.ip)] = None
    interface: int | None = None


class Route(WireModel):
    dst: Annotated[str, AfterValidator(wire.network)]
    gw: Annotated[str | None, AfterValidator(wire.ip)] = None
    mtu: int | None = None
    advmss: int | None = None
    priority: int | None = None
    table: int | None = None
    scope: int | None = None


class Result(WireModel, wire.ResultMethods):
    """An ADD result in the current (1.x) shape."""

    interfaces: list[Interface] = Field(default_factory=list)
    ips: list[IPConfig] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    dns: DNS = Field(default_factory=DNS)

    if TYPE_CHECKING:  # the mixin's, with this class's type for the checker
        @classmethod
        def from_version(cls, data: dict[str, Any], version: str) -> Result: ...


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
