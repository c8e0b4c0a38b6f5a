"""The IPAM plugin's configuration model (``IpamConf``), declared in pydantic: the source of
truth of its keys, defaults and validation (documented in ``ipam.config``), for the CLI's type
checking and the tests. Processes run the class compiled from it (``ipam.config``, through the
generated ``plugins.schemas``: ``./build/dev schemas`` after any change here), so the checks
its fields run are functions of ``ipam.config`` (pydantic-free). Every invalid value is a
code-7 error naming the key.

Imports pydantic (and ``cni.types``); never imported by a plugin process.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from ...cni.types import ConfigPath, NetConf
from . import config


class IpamConf(NetConf):
    sec_group_ids: Annotated[list[str] | None, AfterValidator(config.security_groups)] = \
        Field(default=None, alias="secGroupIds")
    subnet_tags: dict[str, str] = Field(default_factory=dict)
    interface_index: int = Field(default=1, ge=0, le=100)
    skip_deallocation: bool = False
    route_to_vpc_peers: bool = False
    route_to_cidrs: Annotated[list[str], AfterValidator(config.route_cidrs)] = Field(
        default_factory=list)
    reuse_ip_wait: float = Field(default=60.0, alias="reuseIPWait", ge=0)
    ip_batch_size: int = Field(default=0, alias="ipBatchSize", ge=0, le=100)
    warm_ip_target: int = Field(default=8, alias="warmIPTarget", ge=0, le=1000)
    warm_eni_threshold: int = Field(default=-1, alias="warmENIThreshold", ge=-1, le=10000)
    max_free_ips: int = Field(default=-1, alias="maxFreeIPs", ge=-1)
    free_ip_max_age: float = Field(default=0.0, alias="freeIPMaxAge", ge=0)
    data_dir: ConfigPath = config.DEFAULT_DATA_DIR
    lock_path: ConfigPath = config.DEFAULT_LOCK_PATH
    lock_timeout: float = Field(default=20.0, gt=0, le=110)
    timeout: float = Field(default=60.0, gt=0, le=110)
    reconcile_interval: float = Field(default=60.0, ge=0)
    cluster_name: str = ""
    mtu: int = Field(default=0, ge=0, le=9001)
    ipv4_prefixes: bool = Field(default=False, alias="ipv4Prefixes")
    warm_prefix_target: int = Field(default=0, alias="warmPrefixTarget", ge=0, le=100)
    ipv6: bool = False
    # False (with ipv6): IPv6-only pods, IPv4 egress through the node (see ``ipam.config``).
    ipv4: bool = True
    egress_ipv4_range: Annotated[str | None, AfterValidator(config.egress_range)] = Field(
        default=config.DEFAULT_EGRESS_RANGE, alias="egressIPv4Range")
    route_service_prefix_lists: Annotated[
        list[str], AfterValidator(config.service_prefix_lists)] = Field(
        default_factory=list, alias="routeServicePrefixLists", max_length=16)
