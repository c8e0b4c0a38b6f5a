"""The node as AWS sees it: identity, ENIs (instance metadata), instance limits, subnets, VPC
and peered CIDRs (EC2), each read lazily and cached in the store with a TTL (errors are never
cached). The EC2 client is created only when a cache misses or work must be done, so the warm
ADD path never imports botocore.

TTLs: identity 1 h, subnets 5 min, VPC and peer CIDRs 1 h, instance limits 24 h (when
DescribeInstanceTypes fails: the built-in table of ``aws/limits.py`` for types it knows, else
the original's 4 x 15 guess; neither is cached).

Imports ``aws/`` (IMDS, EC2) and the store; no netlink.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ...aws.ec2 import Ec2, Ec2Error
from ...aws.metadata import EniMetadata, Identity, Metadata
from ...cni import logs
from ...cni.errors import CniError
from ...cni.records import Record
from .store import Store

log = logs.get("ipam")

IDENTITY_TTL = 3600.0
SUBNETS_TTL = 300.0
VPC_TTL = 3600.0
LIMITS_TTL = 86400.0
# When DescribeInstanceTypes fails: the original's fallback (4 ENIs x 15 IPv4).
FALLBACK_LIMITS = (4, 15)
# Families whose metadata once omitted secondary VPC CIDRs (the original worked around it the
# same way): ask EC2 instead.
BROKEN_CIDR_FAMILIES = frozenset({"c5", "m5", "c5d", "m5d", "m5a", "r5", "r5d", "r5a"})


class Limits(Record):
    enis: int
    ipv4_per_eni: int
    fallback: bool = False  # a guess (FALLBACK_LIMITS), not this type's real limits
    # where they come from: "DescribeInstanceTypes" (or its cached answer), "built-in table",
    # or "fallback guess"
    source: str = "DescribeInstanceTypes"
    problem: str = ""  # why EC2 was not the source
    # Nitro-based (prefix delegation possible); None when not known (the built-in table, a
    # guess, or a cached answer from before this was recorded).
    nitro: bool | None = None

    @property
    def pod_ips_per_eni(self) -> int:
        """IPs an ENI can give pods: all but its primary IP, which is never a pod's (a host
        network agent -- ec2-net-utils, systemd-networkd's DHCP on a hot-plugged NIC -- may
        configure it on the node, and EC2 never unassigns it)."""
        return max(0, self.ipv4_per_eni - 1)


class Subnet(Record):
    subnet_id: str
    cidr: str
    available: int
    tags: dict[str, str]
    ipv6_cidr: str = ""  # its associated IPv6 /64, "" when none

    def has_tags(self, tags: dict[str, str]) -> bool:
        """Whether it carries every one of ``tags`` (``subnetTags``; none: any subnet)."""
        return all(self.tags.get(k) == v for k, v in tags.items())


class Node:
    """Lazy, cached views of this instance; ``ec2`` is created on first use."""

    def __init__(self, store: Store, *, deadline: float,
                 metadata: Metadata | None = None,
                 limiter: Callable[[str, float, float], float] | None = None) -> None:
        self.store = store
        self.deadline = deadline
        self._metadata = metadata or Metadata()
        self._limiter = limiter
        self._ec2: Ec2 | None = None
        self._identity: Identity | None = None
        # What this process already read (a fallback included), so a decision under the lock
        # can use what was fetched before it without a network call.
        self._memo: dict[str, Any] = {}
        self._failed: dict[str, Exception] = {}  # and what could not be read, with why
        self._offline = 0

    @contextmanager
    def offline(self) -> Iterator[None]:
        """No network inside (the host lock is held): every read must come from the store's
        caches or what this process already read, else ``NotPrefetched``."""
        self._offline += 1
        try:
            yield
        finally:
            self._offline -= 1

    def _network(self, what: str) -> None:
        if self._offline:
            raise NotPrefetched(what)

    @property
    def metadata(self) -> Metadata:
        self._network("the instance metadata")
        return self._metadata

    @property
    def ec2(self) -> Ec2:
        self._network("EC2")
        if self._ec2 is None:
            # The node's metadata client also fetches the role credentials (IMDSv2, no proxy).
            self._ec2 = Ec2(self.identity.region, deadline=self.deadline, limiter=self._limiter,
                            metadata=self._metadata)
        return self._ec2

    @property
    def ec2_calls(self) -> dict[str, int]:
        return dict(self._ec2.calls) if self._ec2 else {}

    def _cached(self, key: str, ttl: float, fetch: Callable[[], Any]) -> Any:
        value = self._memo.get(key)
        if value is None:
            value = self.store.cache_get(key)
        if value is None:
            failed = self._failed.get(key)
            if failed is not None:
                raise failed  # this process asked already (before the lock): the same answer
            self._network(key)
            try:
                value = fetch()
            except (Ec2Error, CniError) as exc:
                self._failed[key] = exc
                raise
            self.store.cache_put(key, value, ttl)
        self._memo[key] = value
        return value

    @property
    def identity(self) -> Identity:
        if self._identity is None:
            raw = self._cached("identity", IDENTITY_TTL,
                               lambda: self.metadata.identity().__dict__)
            self._identity = Identity(**raw)
        return self._identity

    def fresh_identity(self) -> Identity:
        """The identity read from the metadata now (and cached again): what reconciliation
        binds the state to, so a cached identity can never vouch for itself."""
        raw = self.metadata.identity().__dict__
        self.store.cache_put("identity", raw, IDENTITY_TTL)
        self._memo["identity"] = raw
        self._identity = Identity(**raw)
        return self._identity

    def interfaces(self, *, ipv6: bool = False) -> list[EniMetadata]:
        return self.metadata.interfaces(ipv6=ipv6)

    def limits(self) -> Limits:
        itype = self.identity.instance_type
        memo = self._memo.get(f"limits-answer:{itype}")
        if isinstance(memo, Limits):
            return memo  # a fallback too: it is not cached in the store, but good for this run
        cached = self.store.cache_get(f"limits:{itype}")
        if cached is not None:
            return _cached_limits(cached)
        self._network(f"the limits of {itype}")
        limits = self._read_limits(itype)
        self._memo[f"limits-answer:{itype}"] = limits
        return limits

    def _read_limits(self, itype: str) -> Limits:
        try:
            answer = self.ec2.call("DescribeInstanceTypes", InstanceTypes=[itype])
            kind = answer["InstanceTypes"][0]
            info = kind["NetworkInfo"]
            # Bare metal reports no hypervisor and runs on the Nitro system.
            nitro = kind.get("Hypervisor") == "nitro" or bool(kind.get("BareMetal"))
            value = (int(info["MaximumNetworkInterfaces"]), int(info["Ipv4AddressesPerInterface"]),
                     nitro)
        except (Ec2Error, KeyError, IndexError) as exc:
            from ...aws.limits import known_limits

            known = known_limits(itype)
            if known is not None:
                log.warning("cannot read limits of %s (%s); using the built-in table: %s",
                            itype, exc, known)
                return Limits(*known, source="built-in table", problem=str(exc))
            log.warning("cannot read limits of %s (%s); using fallback %s", itype, exc,
                        FALLBACK_LIMITS)
            return Limits(*FALLBACK_LIMITS, fallback=True, source="fallback guess",
                          problem=str(exc))
        self.store.cache_put(f"limits:{itype}", list(value), LIMITS_TTL)
        return _cached_limits(list(value))

    def cached_limits(self) -> Limits | None:
        """The limits when the store has them (identity and limits cached): no IMDS, no EC2,
        for decisions on the warm path that must stay cheap."""
        identity = self._identity.__dict__ if self._identity else self.store.cache_get("identity")
        if not isinstance(identity, dict) or "instance_type" not in identity:
            return None
        cached = self.store.cache_get(f"limits:{identity['instance_type']}")
        return None if cached is None else _cached_limits(cached)

    def subnets(self, vpc_id: str) -> list[Subnet]:
        """Subnets of the node's VPC and AZ (filtered, paginated), most free addresses first."""
        az = self.identity.availability_zone

        def fetch() -> list[dict[str, Any]]:
            items = self.ec2.paginate(
                "DescribeSubnets", "Subnets", MaxResults=100,
                Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                         {"Name": "availability-zone", "Values": [az]}])
            return [{"subnet_id": s["SubnetId"], "cidr": s["CidrBlock"],
                     "available": int(s["AvailableIpAddressCount"]),
                     "tags": {t["Key"]: t["Value"] for t in s.get("Tags", [])},
                     "ipv6_cidr": next((a["Ipv6CidrBlock"] for a in s.get(
                         "Ipv6CidrBlockAssociationSet", []) if a.get("Ipv6CidrBlockState", {})
                         .get("State") == "associated"), "")}
                    for s in items]

        raw = self._cached(f"subnets:{vpc_id}:{az}", SUBNETS_TTL, fetch)
        subnets = [Subnet(**s) for s in raw]
        return sorted(subnets, key=lambda s: (-s.available, s.subnet_id))

    def eni_ips(self, eni_id: str) -> dict[str, str]:
        """The ENI's private IPs as EC2 has them now (the truth when the metadata lags), the
        addresses of its /28 prefixes included: each to its prefix ("" for a plain IP)."""
        from .prefixes import by_address

        answer = self.ec2.call("DescribeNetworkInterfaces", NetworkInterfaceIds=[eni_id])
        found: dict[str, str] = {}
        for i in answer.get("NetworkInterfaces", []):
            found.update((a["PrivateIpAddress"], "") for a in i.get("PrivateIpAddresses", []))
            found.update(by_address([p["Ipv4Prefix"] for p in i.get("Ipv4Prefixes", [])]))
        return found

    def eni_ipv6_prefixes(self, eni_id: str) -> list[str]:
        """The ENI's IPv6 prefixes as EC2 has them now (the truth when the metadata lags)."""
        answer = self.ec2.call("DescribeNetworkInterfaces", NetworkInterfaceIds=[eni_id])
        return [p["Ipv6Prefix"] for i in answer.get("NetworkInterfaces", [])
                for p in i.get("Ipv6Prefixes", [])]

    def forget_subnets(self, vpc_id: str) -> None:
        """Drop the cached subnet list (its free counts are stale after a subnet-full error)."""
        key = f"subnets:{vpc_id}:{self.identity.availability_zone}"
        self._memo.pop(key, None)
        self.store.cache_drop(key)

    def vpc_cidrs(self, eni: EniMetadata) -> list[str]:
        family = self.identity.instance_type.split(".")[0]
        if family not in BROKEN_CIDR_FAMILIES:
            return list(eni.vpc_cidrs)

        def fetch() -> list[str]:
            vpcs = self.ec2.call("DescribeVpcs", VpcIds=[eni.vpc_id])["Vpcs"]
            return [a["CidrBlock"] for v in vpcs for a in v.get("CidrBlockAssociationSet", [])
                    if a.get("CidrBlockState", {}).get("State") == "associated"]

        cidrs: list[str] = self._cached(f"vpc-cidrs:{eni.vpc_id}", VPC_TTL, fetch)
        return cidrs

    def service_cidrs(self, names: list[str]) -> list[str]:
        """The IPv4 CIDRs of AWS service prefix lists (``routeServicePrefixLists``): a short
        name is ``com.amazonaws.<region>.<name>``; a full name or a ``pl-`` id is taken as it
        is. Cached like the VPC's CIDRs (they change rarely; AWS announces changes)."""
        region = self.identity.region
        wanted = [n if n.startswith(("pl-", "com.")) else f"com.amazonaws.{region}.{n}"
                  for n in names]

        def fetch() -> list[str]:
            ids = [n for n in wanted if n.startswith("pl-")]
            by_name = [n for n in wanted if not n.startswith("pl-")]
            if by_name:
                found = {pl["PrefixListName"]: pl["PrefixListId"] for pl in self.ec2.paginate(
                    "DescribeManagedPrefixLists", "PrefixLists", MaxResults=100,
                    Filters=[{"Name": "prefix-list-name", "Values": by_name}])}
                for name in by_name:
                    if name not in found:
                        log.warning("no managed prefix list %s in %s: no route for it", name,
                                    region)
                ids += [found[n] for n in by_name if n in found]
            cidrs: set[str] = set()
            for pl in ids:
                for entry in self.ec2.paginate("GetManagedPrefixListEntries", "Entries",
                                               PrefixListId=pl, MaxResults=100):
                    net = ipaddress.ip_network(entry["Cidr"], strict=False)
                    if net.version == 4:
                        cidrs.add(str(net))
            return sorted(cidrs)

        cidrs: list[str] = self._cached(f"service-cidrs:{','.join(wanted)}", VPC_TTL, fetch)
        return cidrs

    def peer_cidrs(self, vpc_id: str) -> list[str]:
        def fetch() -> list[str]:
            found: set[str] = set()
            conns = self.ec2.paginate(
                "DescribeVpcPeeringConnections", "VpcPeeringConnections", MaxResults=100,
                Filters=[{"Name": "status-code", "Values": ["active"]}])
            for conn in conns:
                requester = conn.get("RequesterVpcInfo", {})
                accepter = conn.get("AccepterVpcInfo", {})
                peer = accepter if requester.get("VpcId") == vpc_id else (
                    requester if accepter.get("VpcId") == vpc_id else None)
                if peer is None:
                    continue
                blocks = [b["CidrBlock"] for b in peer.get("CidrBlockSet", [])] or (
                    [peer["CidrBlock"]] if peer.get("CidrBlock") else [])
                for block in blocks:
                    found.add(str(ipaddress.ip_network(block, strict=False)))
            return sorted(found)

        cidrs: list[str] = self._cached(f"peer-cidrs:{vpc_id}", VPC_TTL, fetch)
        return cidrs


def _cached_limits(cached: list[Any]) -> Limits:
    """Limits from the store's cache: [ENIs, IPv4 per ENI, Nitro] (older entries lack Nitro)."""
    nitro = bool(cached[2]) if len(cached) > 2 else None
    return Limits(int(cached[0]), int(cached[1]), nitro=nitro)


class NotPrefetched(RuntimeError):
    """A decision under the host lock needed a network read that was not made before it. The
    allocator catches it, reads outside the lock and decides again; anywhere else it is a bug
    (never a user-facing error: the lock must not be held across a network call)."""


def monotonic_deadline(seconds: float) -> float:
    return time.monotonic() + seconds
