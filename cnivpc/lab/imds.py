"""IMDSv2 emulator for the lab: the EC2 instance metadata service, driven by lab EC2 state.

Owns: the IMDS wire protocol (token PUT, 401/400/403/404/405, exact bodies, content types and
listings), the metadata tree cnivpc reads (instance keys, ``network/interfaces/macs/<mac>/…``,
the identity document, IAM role credentials so SDK credential chains work unchanged), and the
propagation lag that makes new ENIs and new IPs show up in IMDS later than in EC2 (404 meanwhile,
as on AWS). Reference: shared spec ``aws-reference.md`` §1-2 and §4.

Data flows one way: a ``MetadataSource`` (``instance_id -> InstanceView | None``) is polled; the
views are plain frozen dataclasses, so the server neither knows nor imports moto. ``moto_source``
adapts moto's in-process EC2 backend by attribute access only.

The server is stdlib ``http.server`` (threaded). It never opens sockets itself except through
``listen_tcp``: callers hand it listening sockets (the lab creates them inside node network
namespaces) together with the instance id that socket speaks for, so one server object can be
many instances' IMDS, exactly like 169.254.169.254 is per-instance on AWS.

Must not import moto, botocore, pyroute2 or anything from ``cnivpc`` outside ``cnivpc.lab``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

log = logging.getLogger(__name__)

TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TTL = 21600
# Dated API versions mirror `latest` [aws-reference §1.1]; `GET /` lists them, `latest` last.
VERSIONS = ("1.0", "2007-01-19", "2016-09-02", "2018-09-24", "2020-10-27", "2021-03-23")
DEFAULT_ROLE = "cnl-node-role"

Tree = dict[str, "Tree | str"]


# ---------------------------------------------------------------------------------------------
# What the metadata is made of
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EniView:
    """One attached ENI as IMDS shows it. ``ipv4s[0]`` is the ENI's primary private IP."""

    eni_id: str
    mac: str
    device_index: int
    subnet_id: str
    subnet_cidr: str
    vpc_id: str
    vpc_cidrs: tuple[str, ...]  # primary VPC CIDR first
    owner_id: str
    ipv4s: tuple[str, ...] = ()
    ipv6s: tuple[str, ...] = ()
    ipv4_prefixes: tuple[str, ...] = ()
    ipv6_prefixes: tuple[str, ...] = ()
    subnet_ipv6_cidrs: tuple[str, ...] = ()
    vpc_ipv6_cidrs: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    security_group_names: tuple[str, ...] = ()
    network_card: int = 0
    stale: bool = False  # detached but still listed by IMDS: sub-keys 404


@dataclass(frozen=True)
class InstanceView:
    """One instance: identity plus its ENIs in device-index order (device 0 = primary)."""

    instance_id: str
    instance_type: str
    image_id: str
    region: str
    availability_zone: str
    availability_zone_id: str
    account_id: str
    launch_time: datetime
    enis: tuple[EniView, ...]
    architecture: str = "x86_64"
    multi_card: bool = False  # `network-card` is only served on multi-card types [§2.2]

    @property
    def primary(self) -> EniView | None:
        return next((e for e in self.enis if e.device_index == 0 and e.network_card == 0), None)


MetadataSource = Callable[[str], InstanceView | None]


def moto_source(backend: Any, lock: AbstractContextManager[Any] | None = None) -> MetadataSource:
    """Adapt moto's EC2 backend (``Ec2Lab.backend``) into a ``MetadataSource``.

    Reads attributes in-process: no HTTP round trip, so IMDS answers in well under the 500 ms
    that Go SDK clients allow before they decide there is no IMDS [§1.4]. moto mutates its
    dicts from request threads without locks, so a read racing a write may raise
    ``RuntimeError: dictionary changed size during iteration``: pass the lab's EC2 state lock
    (reads then see whole actions only), and without one, retry: the next read is whole.
    """

    def read(instance_id: str) -> InstanceView | None:
        for _ in range(20):
            try:
                with lock if lock is not None else contextlib.nullcontext():
                    return _moto_instance(backend, instance_id)
            except RuntimeError:
                time.sleep(0.001)
        return _moto_instance(backend, instance_id)

    return read


def _moto_instance(backend: Any, instance_id: str) -> InstanceView | None:
    try:
        inst = backend.get_instance(instance_id)
    except Exception:  # moto raises its own InvalidInstanceID error class
        return None
    if getattr(getattr(inst, "_state", None), "name", "running") in ("terminated", "shutting-down"):
        return None
    enis: list[EniView] = []
    zone_id = ""
    for device_index, eni in sorted(dict(inst.nics).items()):
        subnet = eni.subnet
        zone_id = zone_id or str(getattr(subnet, "availability_zone_id", "") or "")
        vpc = backend.get_vpc(subnet.vpc_id)
        vpc_cidrs = [str(vpc.cidr_block)] + [
            str(a["cidr_block"])
            for a in vpc.cidr_block_association_set
            if a.get("cidr_block_state", {}).get("state", "associated") == "associated"
            and a["cidr_block"] != vpc.cidr_block
        ]
        # moto's association dicts carry the block as ``cidr_block`` (and a camel-case copy)
        vpc_v6 = [
            str(a.get("ipv6CidrBlock") or a.get("cidr_block"))
            for a in vpc.ipv6_cidr_block_association_set
            if a.get("cidr_block_state", {}).get("state", "associated") == "associated"
        ]
        subnet_v6 = [
            str(a["ipv6CidrBlock"])
            for a in dict(getattr(subnet, "ipv6_cidr_block_associations", {})).values()
            if a.get("ipv6CidrBlock")
        ]
        primary = eni.private_ip_address
        secondaries = [
            str(a["PrivateIpAddress"])
            for a in list(eni.private_ip_addresses)
            if not a.get("Primary") and a.get("PrivateIpAddress") not in (None, primary)
        ]
        prefixes = [_prefix_str(p) for p in list(getattr(eni, "ipv4_prefixes", None) or [])]
        prefixes6 = [_prefix_str(p) for p in list(getattr(eni, "ipv6_prefixes", None) or [])]
        groups = list(eni.group_set)
        enis.append(
            EniView(
                eni_id=eni.id,
                mac=str(eni.mac_address).lower(),
                device_index=int(device_index),
                subnet_id=subnet.id,
                subnet_cidr=str(subnet.cidr_block),
                vpc_id=subnet.vpc_id,
                vpc_cidrs=tuple(vpc_cidrs),
                owner_id=str(backend.account_id),
                ipv4s=((str(primary),) if primary else ()) + tuple(secondaries),
                ipv6s=tuple(str(a) for a in list(eni.ipv6_addresses) if a),
                ipv4_prefixes=tuple(p for p in prefixes if p),
                ipv6_prefixes=tuple(p for p in prefixes6 if p),
                subnet_ipv6_cidrs=tuple(subnet_v6),
                vpc_ipv6_cidrs=tuple(vpc_v6),
                security_group_ids=tuple(dict.fromkeys(g.id for g in groups)),
                security_group_names=tuple(dict.fromkeys(g.name for g in groups)),
            )
        )
    launch = inst.launch_time
    if isinstance(launch, str):
        launch = datetime.fromisoformat(launch.replace("Z", "+00:00"))
    return InstanceView(
        instance_id=inst.id,
        instance_type=str(inst.instance_type),
        image_id=str(inst.image_id),
        region=str(backend.region_name),
        availability_zone=str(inst.placement.zone if hasattr(inst.placement, "zone") else ""),
        availability_zone_id=zone_id,
        account_id=str(backend.account_id),
        launch_time=launch if launch.tzinfo else launch.replace(tzinfo=timezone.utc),
        enis=tuple(enis),
        architecture=str(getattr(inst, "architecture", "x86_64") or "x86_64"),
    )


def _prefix_str(p: Any) -> str:
    if isinstance(p, str):
        return p
    if isinstance(p, dict):
        return str(p.get("Ipv4Prefix") or p.get("Ipv6Prefix") or p.get("ipv4Prefix") or "")
    return str(p)


# ---------------------------------------------------------------------------------------------
# Propagation lag (eventual consistency, §2.4/§4)
# ---------------------------------------------------------------------------------------------


class Propagation:
    """Makes IMDS lag EC2: new ENIs/IPs appear ``lag`` s late, removed ones linger ``remove_lag`` s.

    On AWS a newly attached ENI's MAC shows up in ``macs/`` seconds after
    AttachNetworkInterface, new secondary IPs reach ``local-ipv4s`` late, freed IPs keep being
    listed for tens of seconds and a detached ENI's MAC stays listed with its sub-keys answering
    404 [§2.4]. Clients must treat 404 as "not yet" and IMDS as a hint, never as the truth.

    Change times come from ``note_attach`` (exact, fed by the EC2 attach hook) and from
    ``observe`` (the server calls it on every request and from a poller, so a change is timed
    within one poll interval even if nobody asks IMDS). The primary ENI and its primary IP are
    fixed from launch and never lag. An attachment that is ``suppress``-ed never shows up
    (AWS's sick-host "attach never visible", ecs-agent #1520).
    """

    def __init__(self, lag: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 remove_lag: float = 0.0) -> None:
        self.lag = lag
        self.remove_lag = remove_lag
        self.clock = clock
        self._lock = threading.Lock()
        self._eni_seen: dict[tuple[str, str, int], float] = {}  # (instance, eni, device) -> t
        self._ip_seen: dict[tuple[str, str, str], float] = {}  # (eni, kind, address) -> t
        self._suppressed: set[tuple[str, str]] = set()  # (instance, eni)
        self._last: dict[tuple[str, str], EniView] = {}  # (instance, eni) -> last view seen
        self._eni_gone: dict[tuple[str, str], float] = {}  # (instance, eni) -> detach time
        self._ip_gone: dict[tuple[str, str, str], float] = {}  # (eni, kind, address) -> t

    def note_attach(self, instance_id: str, eni_id: str, device_index: int) -> None:
        with self._lock:
            self._eni_seen.setdefault((instance_id, eni_id, device_index), self.clock())

    def suppress(self, instance_id: str, eni_id: str) -> None:
        with self._lock:
            self._suppressed.add((instance_id, eni_id))

    def observe(self, view: InstanceView) -> None:
        now = self.clock()
        iid = view.instance_id
        with self._lock:
            live = {(iid, e.eni_id, e.device_index) for e in view.enis}
            for key in [k for k in self._eni_seen if k[0] == iid and k not in live]:
                # detached: it lingers for remove_lag, and a later re-attach lags again
                del self._eni_seen[key]
                self._suppressed.discard((iid, key[1]))
                if self.remove_lag > 0 and (iid, key[1]) in self._last:
                    self._eni_gone.setdefault((iid, key[1]), now)
            for key in live:
                self._eni_seen.setdefault(key, now)
                self._eni_gone.pop((iid, key[1]), None)
            for eni in view.enis:
                self._last[(iid, eni.eni_id)] = eni
                live_ips = set(_addr_keys(eni))
                for ip_key in [k for k in self._ip_seen if k[0] == eni.eni_id]:
                    if ip_key not in live_ips:
                        del self._ip_seen[ip_key]
                        if self.remove_lag > 0:
                            self._ip_gone.setdefault(ip_key, now)
                for ip_key in live_ips:
                    self._ip_seen.setdefault(ip_key, now)
                    self._ip_gone.pop(ip_key, None)
            # forget what has finished lingering
            for gk in [k for k, t in self._eni_gone.items() if now - t >= self.remove_lag]:
                del self._eni_gone[gk]
            for ik in [k for k, t in self._ip_gone.items() if now - t >= self.remove_lag]:
                del self._ip_gone[ik]

    def visible(self, view: InstanceView) -> InstanceView:
        """The view as IMDS currently shows it."""
        self.observe(view)
        now = self.clock()
        iid = view.instance_id
        with self._lock:
            enis: list[EniView] = []
            for eni in view.enis:
                primary_eni = eni.device_index == 0 and eni.network_card == 0
                if not primary_eni:
                    if (iid, eni.eni_id) in self._suppressed:
                        continue
                    seen = self._eni_seen.get((iid, eni.eni_id, eni.device_index), now)
                    if now - seen < self.lag:
                        continue
                # The ENI's primary IP comes with the ENI; secondaries lag on their own.
                ipv4s = eni.ipv4s[:1] + tuple(
                    a for a in self._shown(eni, "v4", eni.ipv4s[1:], now) if a not in eni.ipv4s[:1]
                )
                enis.append(
                    replace(
                        eni,
                        ipv4s=ipv4s,
                        ipv6s=self._shown(eni, "v6", eni.ipv6s, now),
                        ipv4_prefixes=self._shown(eni, "pfx", eni.ipv4_prefixes, now),
                        ipv6_prefixes=self._shown(eni, "pfx6", eni.ipv6_prefixes, now),
                    )
                )
            for gone_iid, eni_id in self._eni_gone:
                last = self._last.get((gone_iid, eni_id))
                if gone_iid == iid and last is not None:
                    # still listed under macs/, every sub-key 404 [§2.4 item 5]
                    enis.append(replace(last, stale=True))
            return replace(view, enis=tuple(enis))

    def _shown(
        self, eni: EniView, kind: str, addrs: tuple[str, ...], now: float
    ) -> tuple[str, ...]:
        fresh = tuple(
            a for a in addrs if now - self._ip_seen.get((eni.eni_id, kind, a), now) >= self.lag
        )
        lingering = tuple(
            a for (e, k, a) in self._ip_gone if e == eni.eni_id and k == kind and a not in fresh
        )
        return fresh + lingering


def _addr_keys(eni: EniView) -> list[tuple[str, str, str]]:
    return (
        [(eni.eni_id, "v4", a) for a in eni.ipv4s]
        + [(eni.eni_id, "v6", a) for a in eni.ipv6s]
        + [(eni.eni_id, "pfx", a) for a in eni.ipv4_prefixes]
        + [(eni.eni_id, "pfx6", a) for a in eni.ipv6_prefixes]
    )


# ---------------------------------------------------------------------------------------------
# The metadata tree
# ---------------------------------------------------------------------------------------------


def _hostname(ip: str, region: str) -> str:
    # us-east-1 uses the legacy `ec2.internal` domain, every other region
    # `<region>.compute.internal` [§2.1].
    domain = "ec2.internal" if region == "us-east-1" else f"{region}.compute.internal"
    return "ip-" + ip.replace(".", "-") + "." + domain


def _lines(items: Iterable[str]) -> str:
    # Multi-valued leaves: one per line, no newline after the last [§1.6].
    return "\n".join(items)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def identity_document(view: InstanceView) -> str:
    """The identity document, pretty-printed the way IMDS does (`"key" : value`) [§2.3]."""
    primary = view.primary
    doc: dict[str, object] = {
        "accountId": view.account_id,
        "architecture": view.architecture,
        "availabilityZone": view.availability_zone,
        "billingProducts": None,
        "devpayProductCodes": None,
        "marketplaceProductCodes": None,
        "imageId": view.image_id,
        "instanceId": view.instance_id,
        "instanceType": view.instance_type,
        "kernelId": None,
        "pendingTime": _iso(view.launch_time),
        "privateIp": primary.ipv4s[0] if primary and primary.ipv4s else None,
        "ramdiskId": None,
        "region": view.region,
        "version": "2017-09-30",
    }
    return json.dumps(doc, indent=2, separators=(",", " : "))


def _eni_tree(eni: EniView, view: InstanceView) -> Tree:
    t: Tree = {
        "device-number": str(eni.device_index),
        "interface-id": eni.eni_id,
        "mac": eni.mac,
        "owner-id": eni.owner_id,
        "security-group-ids": _lines(eni.security_group_ids),
        "security-groups": _lines(eni.security_group_names),
        "subnet-id": eni.subnet_id,
        "subnet-ipv4-cidr-block": eni.subnet_cidr,
        "vpc-id": eni.vpc_id,
        "vpc-ipv4-cidr-block": eni.vpc_cidrs[0],
        "vpc-ipv4-cidr-blocks": _lines(eni.vpc_cidrs),
    }
    # Keys without data are absent (404), never an empty 200 [§1.7].
    if eni.ipv4s:
        t["local-ipv4s"] = _lines(eni.ipv4s)
        t["local-hostname"] = _hostname(eni.ipv4s[0], view.region)
    if eni.ipv6s:
        t["ipv6s"] = _lines(eni.ipv6s)
    if eni.ipv4_prefixes:
        t["ipv4-prefix"] = _lines(eni.ipv4_prefixes)
    if eni.ipv6_prefixes:
        t["ipv6-prefix"] = _lines(eni.ipv6_prefixes)
    if eni.subnet_ipv6_cidrs:
        t["subnet-ipv6-cidr-blocks"] = _lines(eni.subnet_ipv6_cidrs)
    if eni.vpc_ipv6_cidrs:
        t["vpc-ipv6-cidr-blocks"] = _lines(eni.vpc_ipv6_cidrs)
    if view.multi_card:
        t["network-card"] = str(eni.network_card)
    if not eni.security_group_ids:
        del t["security-group-ids"], t["security-groups"]
    return t


def metadata_tree(view: InstanceView, *, role: str | None, creds: Tree | None = None) -> Tree:
    """``/latest/`` for one (already lag-filtered) instance view."""
    primary = view.primary
    macs: Tree = {}
    for eni in sorted(view.enis, key=lambda e: (e.stale, e.network_card, e.device_index)):
        if eni.mac not in macs:
            macs[eni.mac] = {} if eni.stale else _eni_tree(eni, view)
    meta: Tree = {
        "ami-id": view.image_id,
        "ami-launch-index": "0",
        "ami-manifest-path": "(unknown)",
        "instance-action": "none",
        "instance-id": view.instance_id,
        "instance-life-cycle": "on-demand",
        "instance-type": view.instance_type,
        "network": {"interfaces": {"macs": macs}},
        "placement": {
            "availability-zone": view.availability_zone,
            "region": view.region,
        },
        "services": {"domain": "amazonaws.com", "partition": "aws"},
    }
    if view.availability_zone_id:
        placement = meta["placement"]
        assert isinstance(placement, dict)
        placement["availability-zone-id"] = view.availability_zone_id
    if primary is not None:
        meta["mac"] = primary.mac
        if primary.security_group_names:
            meta["security-groups"] = _lines(primary.security_group_names)
        if primary.ipv4s:
            meta["local-ipv4"] = primary.ipv4s[0]
            meta["hostname"] = meta["local-hostname"] = _hostname(primary.ipv4s[0], view.region)
    if role is not None and creds is not None:
        meta["iam"] = creds
    return {
        "meta-data": meta,
        "dynamic": {"instance-identity": {"document": identity_document(view)}},
    }


def lookup(tree: Tree, path: str) -> str | None:
    """Resolve a path below ``/latest/``: a listing for a directory, the value for a leaf.

    Directories answer with or without the trailing slash (no redirect), and a leaf asked for
    with a trailing slash still returns its value [§1.7]. ``None`` means 404.
    """
    node: Tree | str = tree
    for part in [p for p in path.split("/") if p]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, str):
        return node
    if not node:
        return None  # a lingering (detached) MAC: listed by its parent, nothing below it
    return _lines(k + "/" if isinstance(v, dict) else k for k, v in _listing_order(node))


def _listing_order(node: Tree) -> list[tuple[str, Tree | str]]:
    items = list(node.items())
    # MACs keep device order (the tree was built that way); every other listing is alphabetical.
    if items and all(_MAC.fullmatch(k) for k, _ in items):
        return items
    return sorted(items)


_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


def _html(code: int, title: str) -> bytes:
    # The shape AEMM and real IMDS use for errors [§1.4].
    return (
        '<?xml version="1.0" encoding="iso-8859-1"?>\n'
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n'
        '\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
        " <head>\n"
        f"  <title>{code} - {title}</title>\n"
        " </head>\n"
        " <body>\n"
        f"  <h1>{code} - {title}</h1>\n"
        " </body>\n"
        "</html>\n"
    ).encode("ascii")


_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
_DATED_TOKEN = re.compile(r"/[^/]+/api/token/?")


@dataclass
class _Token:
    instance_id: str
    expires: float


@dataclass
class _Served:
    server: ThreadingHTTPServer
    thread: threading.Thread
    instance_id: str


@dataclass
class ImdsConfig:
    """Per-server knobs. Defaults are AWS's defaults for a freshly launched instance."""

    http_tokens: Literal["required", "optional"] = "required"  # IMDSv1 only when switched on
    endpoint_enabled: bool = True  # HttpEndpoint=disabled -> 403 everywhere
    hop_limit: int = 1  # HttpPutResponseHopLimit: IP TTL of the token response
    role: str | None = DEFAULT_ROLE  # instance profile role; None = no `iam/` subtree
    user_data: bytes | None = None
    extra_versions: tuple[str, ...] = field(default=())


class ImdsServer:
    """IMDSv2 for any number of instances, each on its own listening socket(s)."""

    def __init__(
        self,
        source: MetadataSource,
        *,
        lag: float = 0.0,
        remove_lag: float = 0.0,
        config: ImdsConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        poll_interval: float = 0.05,
    ) -> None:
        self.source = source
        self.config = config or ImdsConfig()
        self.clock = clock
        self.propagation = Propagation(lag, clock, remove_lag)
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()
        self._served: list[_Served] = []
        self._stop = threading.Event()
        self._poll_interval = poll_interval
        self._poller: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def serve(self, sock: socket.socket, instance_id: str) -> str:
        """Serve IMDS for ``instance_id`` on an already listening socket; return its address."""
        server = _HTTPServer(sock, self, instance_id)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"imds-{instance_id}",
            daemon=True,
        )
        thread.start()
        with self._lock:
            self._served.append(_Served(server, thread, instance_id))
        self._ensure_poller()
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def listen_tcp(self, instance_id: str, host: str = "127.0.0.1", port: int = 0) -> str:
        """Convenience for host-side tests: listen on ``host:port`` in the current netns."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
        return self.serve(sock, instance_id)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            served, self._served = self._served, []
        for s in served:
            s.server.shutdown()
            s.server.server_close()
        if self._poller is not None:
            self._poller.join(timeout=2)

    def __enter__(self) -> ImdsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure_poller(self) -> None:
        # Times EC2 changes even while nobody queries IMDS, so the lag runs from the change,
        # not from the first read.
        if self._poller is None:
            self._poller = threading.Thread(target=self._poll, name="imds-poll", daemon=True)
            self._poller.start()

    def _poll(self) -> None:
        while not self._stop.wait(self._poll_interval):
            with self._lock:
                ids = {s.instance_id for s in self._served}
            if self.propagation.lag <= 0 and self.propagation.remove_lag <= 0:
                continue
            for iid in ids:
                with contextlib.suppress(Exception):
                    view = self.source(iid)
                    if view is not None:
                        self.propagation.observe(view)

    # -- tokens -------------------------------------------------------------------------------

    def issue_token(self, instance_id: str, ttl: int) -> str:
        # Opaque, base64-looking, ~56 chars like the real ones; valid only on this instance.
        token = "AQAAA" + base64.urlsafe_b64encode(secrets.token_bytes(39)).decode("ascii")
        with self._lock:
            now = self.clock()
            self._tokens = {k: v for k, v in self._tokens.items() if v.expires > now}
            self._tokens[token] = _Token(instance_id, now + ttl)
        return token

    def token_remaining(self, token: str, instance_id: str) -> int | None:
        """Seconds left, or None when unknown, expired or from another instance."""
        with self._lock:
            t = self._tokens.get(token)
        now = self.clock()
        # AEMM rejects when now >= issued + ttl: an expired token is just invalid [§1.2].
        if t is None or t.instance_id != instance_id or now >= t.expires:
            return None
        return max(1, int(t.expires - now))

    # -- content ------------------------------------------------------------------------------

    def tree(self, instance_id: str) -> Tree | None:
        view = self.source(instance_id)
        if view is None:
            return None
        visible = self.propagation.visible(view)
        return metadata_tree(visible, role=self.config.role, creds=self._creds(visible))

    def _creds(self, view: InstanceView) -> Tree | None:
        role = self.config.role
        if role is None:
            return None
        # botocore/Go SDK credential chains read these; moto accepts any key, so fixed
        # lab credentials let plugins run with production defaults (no env credentials).
        now = datetime.now(timezone.utc)
        updated = _iso(now)
        creds = {
            "Code": "Success",
            "LastUpdated": updated,
            "Type": "AWS-HMAC",
            "AccessKeyId": "ASIACNIVPCLAB0000000",
            "SecretAccessKey": "cnivpc-lab-secret-access-key-not-a-secret",
            "Token": "cnivpc-lab-session-token",
            "Expiration": _iso(now + timedelta(hours=6)),
        }
        info = {
            "Code": "Success",
            "LastUpdated": updated,
            "InstanceProfileArn": f"arn:aws:iam::{view.account_id}:instance-profile/{role}",
            "InstanceProfileId": "AIPACNIVPCLAB00000000",
        }
        return {
            "info": json.dumps(info, indent=2, separators=(",", " : ")),
            "security-credentials": {role: json.dumps(creds, indent=2, separators=(",", " : "))},
        }


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # The lab may serve hundreds of short requests from polling clients; don't let a slow
    # client hold a thread forever.
    request_queue_size = 64

    def __init__(self, sock: socket.socket, imds: ImdsServer, instance_id: str) -> None:
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()[:2]
        self.imds = imds
        self.instance_id = instance_id


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "EC2ws"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("imds %s: " + format, self.server.instance_id, *args)

    # -- plumbing -----------------------------------------------------------------------------

    def _send(
        self,
        code: int,
        body: bytes = b"",
        ctype: str | None = "text/plain",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.close_connection = True
        self.send_response(code)
        if ctype is not None:
            self.send_header("Content-Type", ctype)
        self.send_header("Accept-Ranges", "none")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _error(self, code: int, headers: dict[str, str] | None = None) -> None:
        self._send(code, _html(code, _TITLES[code]), "text/html", headers)

    def _path(self) -> str:
        return self.path.split("?", 1)[0].split("#", 1)[0]

    # -- methods ------------------------------------------------------------------------------

    def do_PUT(self) -> None:
        imds = self.server.imds
        path = self._path()
        # drain any body so the client does not see a reset
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 65536))
        if not imds.config.endpoint_enabled:
            return self._error(403)
        if path.rstrip("/") != TOKEN_PATH:
            if _DATED_TOKEN.fullmatch(path):
                return self._error(403)  # token only on /latest [§1.1]
            return self._send(405, ctype=None, headers={"Allow": "GET, HEAD"})
        if self.headers.get("X-Forwarded-For") is not None:
            # A proxied token request is refused on purpose [§1.2].
            return self._error(403)
        raw = (self.headers.get(TTL_HEADER) or "").strip()
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_TTL:
            return self._error(400)
        ttl = int(raw)
        token = imds.issue_token(self.server.instance_id, ttl)
        # Hop limit = TTL of the packets carrying the token response: a caller more routed hops
        # away than this never gets it and times out (not an HTTP error) [§1.5].
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, imds.config.hop_limit)
        self._send(200, token.encode("ascii"), headers={TTL_HEADER: str(ttl)})

    def do_GET(self) -> None:
        imds = self.server.imds
        path = self._path()
        if not imds.config.endpoint_enabled:
            return self._error(403)
        if path.rstrip("/") == TOKEN_PATH:
            return self._send(405, ctype=None, headers={"Allow": "OPTIONS, PUT"})
        headers: dict[str, str] = {}
        token = self.headers.get(TOKEN_HEADER)
        if token is not None:
            remaining = imds.token_remaining(token, self.server.instance_id)
            if remaining is None:
                return self._error(401)  # bad or expired token: 401 even when v1 is allowed
            headers[TTL_HEADER] = str(remaining)
        elif imds.config.http_tokens == "required":
            return self._error(401)
        body, ctype = self._resolve(path)
        if body is None:
            return self._error(404)
        headers["Last-Modified"] = self.date_time_string(time.time())
        self._send(200, body, ctype, headers)

    do_HEAD = do_GET

    def _method_not_allowed(self) -> None:
        allow = "OPTIONS, PUT" if self._path().rstrip("/") == TOKEN_PATH else "GET, HEAD"
        self._send(405, ctype=None, headers={"Allow": allow})

    do_POST = do_DELETE = do_PATCH = _method_not_allowed

    def do_OPTIONS(self) -> None:
        allow = "OPTIONS, PUT" if self._path().rstrip("/") == TOKEN_PATH else "GET, HEAD"
        self._send(200, ctype=None, headers={"Allow": allow})

    def _resolve(self, path: str) -> tuple[bytes | None, str]:
        imds = self.server.imds
        versions = VERSIONS + imds.config.extra_versions
        if path in ("", "/"):
            return _lines((*versions, "latest")).encode(), "text/plain"
        parts = path.lstrip("/").split("/", 1)
        version, rest = parts[0], parts[1] if len(parts) > 1 else ""
        if version != "latest" and version not in versions:
            return None, ""
        if rest.rstrip("/") == "user-data":
            ud = imds.config.user_data
            return (ud, "application/octet-stream") if ud is not None else (None, "")
        tree = imds.tree(self.server.instance_id)
        if tree is None:
            return None, ""
        if imds.config.user_data is not None:
            tree["user-data"] = ""
        value = lookup(tree, rest)
        return (value.encode() if value is not None else None), "text/plain"
