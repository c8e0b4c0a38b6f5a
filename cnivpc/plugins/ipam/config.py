"""The IPAM plugin's configuration (top-level keys of its conflist entry: it runs first in the
chain, not as a nested ``ipam`` section). Every invalid value is a code-7 error naming the key.

Keys shared with the original (lyft.md §1.2), with our defaults:
``secGroupIds`` (default: the boot ENI's groups), ``subnetTags``, ``interfaceIndex`` (1: never
hand out the boot ENI's IPs), ``skipDeallocation``, ``routeToVpcPeers``, ``routeToCidrs``,
``reuseIPWait`` (60 s), ``ipBatchSize`` (0: size batches from the warm target; 1 reproduces the
original). Ours: ``warmIPTarget`` (keep this many free IPs ready; ADD refills in one batched
call when the pool drops below it), ``maxFreeIPs`` (DEL unassigns free IPs above this many,
never an ENI's primary; -1, the default, keeps them all), ``freeIPMaxAge`` (GC unassigns free
IPs idle longer than this many seconds beyond the warm target; 0 never), ``dataDir``, ``lockPath``,
``lockTimeout``, ``timeout`` (the whole ADD's deadline), ``reconcileInterval``,
``clusterName`` (tagged on ENIs we create, for GC), ``mtu``.

Imports pydantic (through ``cni.types``) and nothing of AWS or netlink.
"""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from ...cni.types import NetConf

DEFAULT_DATA_DIR = "/var/lib/cnivpc"
DEFAULT_LOCK_PATH = "/run/cnivpc/ipam.lock"


class IpamConf(NetConf):
    sec_group_ids: list[str] | None = Field(default=None, alias="secGroupIds")
    subnet_tags: dict[str, str] = Field(default_factory=dict)
    interface_index: int = Field(default=1, ge=0, le=100)
    skip_deallocation: bool = False
    route_to_vpc_peers: bool = False
    route_to_cidrs: list[str] = Field(default_factory=list)
    reuse_ip_wait: float = Field(default=60.0, alias="reuseIPWait", ge=0)
    ip_batch_size: int = Field(default=0, alias="ipBatchSize", ge=0, le=100)
    warm_ip_target: int = Field(default=8, alias="warmIPTarget", ge=0, le=1000)
    max_free_ips: int = Field(default=-1, alias="maxFreeIPs", ge=-1)
    free_ip_max_age: float = Field(default=0.0, alias="freeIPMaxAge", ge=0)
    data_dir: str = DEFAULT_DATA_DIR
    lock_path: str = DEFAULT_LOCK_PATH
    lock_timeout: float = Field(default=20.0, gt=0, le=110)
    timeout: float = Field(default=60.0, gt=0, le=110)
    reconcile_interval: float = Field(default=60.0, ge=0)
    cluster_name: str = ""
    mtu: int = Field(default=0, ge=0, le=9001)

    @field_validator("route_to_cidrs")
    @classmethod
    def _cidrs(cls, values: list[str]) -> list[str]:
        # The network address is what a route needs (10.1.2.3/16 -> 10.1.0.0/16).
        return [str(ipaddress.ip_network(v, strict=False)) for v in values]

    @field_validator("sec_group_ids")
    @classmethod
    def _groups(cls, values: list[str] | None) -> list[str] | None:
        for v in values or []:
            if not v.startswith("sg-"):
                raise ValueError(f"{v!r} is not a security group id (sg-...)")
        return values
