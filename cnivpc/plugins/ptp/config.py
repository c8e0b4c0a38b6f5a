"""The ptp plugin's configuration (``PtpConf``): keys, defaults and validation. Every invalid
value fails the request with code 7 naming the key (the dispatcher reports pydantic's location,
which is the camelCase key).

Imports pydantic and ``cnivpc.cni`` only.
"""

from __future__ import annotations

from pydantic import Field, StrictBool, field_validator

from ...cni.env import validate_ifname
from ...cni.errors import InvalidConfig
from ...cni.types import NetConf

DEFAULT_NODE_PORTS = "30000:32767"
DEFAULT_NODE_PORT_MARK = 0x2000
DEFAULT_ROUTE_TABLE_START = 256
# Route table IDs are u32; keep the per-pod range (start + span) below the top.
MAX_TABLE_ID = 0xFFFFFFFF


class PtpConf(NetConf):
    """The unnumbered point-to-point plugin's keys (camelCase on the wire)."""

    host_interface: str = Field(description="host link whose addresses the pod borrows")
    container_interface: str = Field(description="name of the veth end inside the pod")
    ip_masq: StrictBool = False
    # None: the MTU of hostInterface, read at ADD time.
    mtu: int | None = Field(default=None, ge=68, le=65535)
    route_table_start: int = Field(default=DEFAULT_ROUTE_TABLE_START, ge=1,
                                   le=MAX_TABLE_ID - 65536)
    node_ports: str = DEFAULT_NODE_PORTS
    node_port_mark: int = Field(default=DEFAULT_NODE_PORT_MARK, ge=1, le=0xFFFFFFFF)

    def refuse_ifname(self, ifname: str) -> None:
        """CNI_IFNAME is the pod's main interface (the ipvlan slave): the veth end cannot take
        the same name. Checked before anything is made (in fused mode before the IPAM runs),
        so the runtime gets code 7 naming the clash instead of a half-built pod. Seen from
        podman 4.3: its ``network reload`` re-ADDs with the name of any interface of the old
        result, the veth's included."""
        if ifname == self.container_interface:
            raise InvalidConfig(
                f"CNI_IFNAME {ifname} is also the ptp plugin's containerInterface",
                "the pod's main interface and its veth to the node need two names: the runtime "
                "must ask for another CNI_IFNAME (or set another containerInterface)")

    @field_validator("host_interface", "container_interface")
    @classmethod
    def _check_ifname(cls, v: str) -> str:
        if not v:
            raise ValueError("must be specified")
        problem = validate_ifname(v)
        if problem:
            raise ValueError(f"invalid interface name {v!r}: {problem}")
        return v

    @field_validator("node_ports")
    @classmethod
    def _check_ports(cls, v: str) -> str:
        return parse_port_range(v)

    @field_validator("node_port_mark", mode="before")
    @classmethod
    def _mark_from_string(cls, v: object) -> object:
        # JSON has no hex literals: accept "0x2000" as well as 8192.
        if isinstance(v, str):
            try:
                return int(v, 0)
            except ValueError as exc:
                raise ValueError(f"invalid mark {v!r}") from exc
        return v


def parse_port_range(text: str) -> str:
    """Validate an iptables ``--dport`` value: ``N`` or ``N:M`` with 1 <= N <= M <= 65535."""
    parts = text.split(":")
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise ValueError(f"invalid port range {text!r}, expected N or N:M")
    ports = [int(p) for p in parts]
    if not all(1 <= p <= 65535 for p in ports) or ports != sorted(ports):
        raise ValueError(f"invalid port range {text!r}, need 1 <= N <= M <= 65535")
    return ":".join(str(p) for p in ports)
