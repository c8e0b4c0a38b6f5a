"""The ptp plugin's configuration as its process uses it: ``PtpConf`` compiled from the
pydantic model ``ptp.model`` (``cni.compiled``; the type checker sees the model), its defaults,
and the checks its fields run (named by the model, so they live here, without pydantic).

Imports ``cnivpc.cni`` and the generated ``plugins.schemas``; never pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...cni.env import validate_ifname
from ...cni.errors import InvalidConfig

DEFAULT_NODE_PORTS = "30000:32767"
DEFAULT_NODE_PORT_MARK = 0x2000
DEFAULT_ROUTE_TABLE_START = 256
# Route table IDs are u32; keep the per-pod range (start + span) below the top.
MAX_TABLE_ID = 0xFFFFFFFF


def check_ifname(v: str) -> str:
    if not v:
        raise ValueError("must be specified")
    problem = validate_ifname(v)
    if problem:
        raise ValueError(f"invalid interface name {v!r}: {problem}")
    return v


def mark_from_string(v: object) -> object:
    """JSON has no hex literals: accept "0x2000" as well as 8192."""
    if isinstance(v, str):
        try:
            return int(v, 0)
        except ValueError as exc:
            raise ValueError(f"invalid mark {v!r}") from exc
    return v


def refuse_ifname(conf: PtpConf, ifname: str) -> None:
    """CNI_IFNAME is the pod's main interface (the ipvlan slave): the veth end cannot take the
    same name. Checked before anything is made (in fused mode before the IPAM runs), so the
    runtime gets code 7 naming the clash instead of a half-built pod. Seen from podman 4.3: its
    ``network reload`` re-ADDs with the name of any interface of the old result, the veth's
    included."""
    if ifname == conf.container_interface:
        raise InvalidConfig(
            f"CNI_IFNAME {ifname} is also the ptp plugin's containerInterface",
            "the pod's main interface and its veth to the node need two names: the runtime "
            "must ask for another CNI_IFNAME (or set another containerInterface)")




def parse_port_range(text: str) -> str:
    """Validate an iptables ``--dport`` value: ``N`` or ``N:M`` with 1 <= N <= M <= 65535."""
    parts = text.split(":")
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise ValueError(f"invalid port range {text!r}, expected N or N:M")
    ports = [int(p) for p in parts]
    if not all(1 <= p <= 65535 for p in ports) or ports != sorted(ports):
        raise ValueError(f"invalid port range {text!r}, need 1 <= N <= M <= 65535")
    return ":".join(str(p) for p in ports)


if TYPE_CHECKING:
    from .model import PtpConf
else:
    from ...cni.compiled import model
    from ..schemas import MODELS

    PtpConf = model(MODELS, "cnivpc.plugins.ptp.model:PtpConf")

__all__ = ["PtpConf", "check_ifname", "mark_from_string", "parse_port_range", "refuse_ifname"]
