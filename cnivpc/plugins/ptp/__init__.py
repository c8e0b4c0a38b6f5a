"""cnivpc-ptp: the unnumbered point-to-point plugin, chained after IPAM and ipvlan. It adds a
veth pair without addresses between the pod and the host so that the pod reaches its node
(and, through it, services and non-VPC destinations) while VPC traffic stays on the ipvlan.

Modules: ``config`` (PtpConf), ``naming`` (pure: names, table probe, rule specs),
``attachment`` (facts derived from the request), ``add`` (ADD with rollback), ``cleanup``
(DEL, GC), ``check`` (CHECK, STATUS), ``lock`` (host-wide lock). Never imports botocore.
"""

from __future__ import annotations

from ...cni.plugin import Plugin
from .add import add
from .check import check, status
from .cleanup import delete, gc
from .config import PtpConf

PLUGIN = Plugin(name="cnivpc-ptp", conf_model=PtpConf, add=add, delete=delete, check=check,
                status=status, gc=gc)

__all__ = ["PLUGIN", "PtpConf"]
