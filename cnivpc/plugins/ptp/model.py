"""The ptp plugin's configuration model (``PtpConf``), declared in pydantic: the source of
truth of its keys, defaults and validation, for the CLI, the tests and the type checker.
Plugin processes run the class compiled from it (``ptp.config``, through the generated
``plugins.schemas``: ``./build/dev schemas`` after any change here), so the checks its fields
run are functions of ``ptp.config`` (pydantic-free). Every invalid value fails the request with
code 7 naming the key (the dispatcher reports the error's location: the camelCase key).

Imports pydantic and ``cnivpc.cni``; never imported by a plugin process.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, StrictBool

from ...cni.types import NetConf
from . import config

IfName = Annotated[str, AfterValidator(config.check_ifname)]


class PtpConf(NetConf):
    """The unnumbered point-to-point plugin's keys (camelCase on the wire)."""

    host_interface: IfName = Field(description="host link whose addresses the pod borrows")
    container_interface: IfName = Field(description="name of the veth end inside the pod")
    ip_masq: StrictBool = False
    # None: the MTU of hostInterface, read at ADD time.
    mtu: int | None = Field(default=None, ge=68, le=65535)
    route_table_start: int = Field(default=config.DEFAULT_ROUTE_TABLE_START, ge=1,
                                   le=config.MAX_TABLE_ID - 65536)
    node_ports: Annotated[str, AfterValidator(config.parse_port_range)] = \
        config.DEFAULT_NODE_PORTS
    # JSON has no hex literals: "0x2000" is accepted as well as 8192.
    node_port_mark: Annotated[int, BeforeValidator(config.mark_from_string)] = Field(
        default=config.DEFAULT_NODE_PORT_MARK, ge=1, le=0xFFFFFFFF)
