"""The lab orchestrator: simulated EC2 + topology + node namespaces + IMDS + fabric, as one object.

Owns :class:`Lab` (context manager; ``python -m cnivpc.lab up`` is a thin CLI over it) and
:class:`LabNode`. It wires the pieces together and owns none of their internals:

* EC2 (:class:`cnivpc.lab.ec2.Ec2Lab`, the standard topology) is the source of truth.
* Each instance becomes a node netns (:mod:`cnivpc.lab.fabric`) whose ``eth0`` is its primary ENI.
* Attach / detach events from EC2 hot-plug / remove the ENI's netdev in the node after the
  profile's ``attach_visible_delay`` / ``detach_visible_delay`` (read when the event fires, so a
  test may change the profile at run time). With a delay of 0 the netdev exists before the
  AttachNetworkInterface response is sent. ``Faults.attach_hidden`` makes it never appear.
* IMDS (:mod:`cnivpc.lab.imds`) reads moto's backend in-process under the EC2 lock and lags by
  the profile's ``imds_lag`` / ``imds_remove_lag`` (taken at start; change them at run time on
  ``lab.imds.propagation.lag`` / ``.remove_lag``; IMDS knobs such as ``http_tokens`` or
  ``hop_limit`` are on ``lab.imds.config``).
* The VPC router delivers each private IP, each address of a delegated /28 prefix, each IPv6
  address and each /80 IPv6 prefix, to the ENI EC2 assigned it to (``sync_addresses``, every
  100 ms and on each attach), as AWS does, instead of trusting ARP.
* IPv6 (``ipv6=True``, the default): the VPC's /56 and a /64 per subnet in EC2, the router at
  ``fe80::1`` and each /64's base + 1, an egress-only internet gateway (see :mod:`.fabric`).
  ``ipv6=False``: an IPv4-only VPC.
* The gateway endpoint for the region's S3 and DynamoDB prefix lists (their CIDRs are the
  lab's, ``ec2.rules6.SERVICE_CIDRS``): ``cnl-<id>-vpce`` holds them, routed from the VPC.

Endpoints seen from inside a node netns (what plugins get with production defaults):

* IMDS: ``http://169.254.169.254`` (port 80), in the node's ``-md`` netns one routed hop behind
  ``imds0`` (see :mod:`.fabric`), so ``HttpPutResponseHopLimit`` (default 1) stops pods' token
  requests exactly as on AWS. It also serves an instance-profile role, so SDK credential chains
  find credentials as on EC2.
* EC2 API: ``http://169.254.169.254:8773`` (``AWS_ENDPOINT_URL_EC2``; 8773 is the port of the
  EC2-compatible API in Eucalyptus/OpenStack), the same strict app and backend as ``ec2.url``.

From the host (tests): ``Lab.ec2.url`` and ``LabNode.imds_url`` (127.0.0.1, one port per node).

From other processes: the control endpoint (:mod:`.endpoint`, ``/run/cnivpc-lab/<id>.sock``)
arms faults and runs what happens to nodes outside cnivpc's control (``detach_eni``,
``unassign_ips``, ``reboot_node``, ``terminate_node``, ``fragment``: other tenants of a subnet
leaving no free /28). Each node has a boot id, in a file that
plugins run "on" the node may see as ``/proc/sys/kernel/random/boot_id`` (one kernel, one real
boot id for every netns); a reboot changes it.

Must not be imported by plugin code; never in the zipapp.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from . import fabric as fab
from .ec2 import AttachmentEvent, Ec2Lab, LabRequestHandler
from .ec2.addressing import eni_ipv4s, eni_prefixes, set_eni_prefixes
from .ec2.addressing6 import eni_ipv6_prefixes, eni_ipv6s, set_eni_ipv6_prefixes, set_eni_ipv6s
from .ec2.rules6 import SERVICE_CIDRS
from .ec2.topology import Topology
from .ec2.topology import create as create_topology
from .ec2.topology import fragment as fragment_subnet
from .endpoint import ControlEndpoint, LabCommandError, control_socket
from .imds import ImdsConfig, ImdsServer, moto_source
from .profiles import LatencyProfile, get_profile

log = logging.getLogger(__name__)

NODE_IMDS_URL = f"http://{fab.IMDS_ADDR}"
NODE_EC2_PORT = 8773
NODE_EC2_URL = f"http://{fab.IMDS_ADDR}:{NODE_EC2_PORT}"


@dataclass(frozen=True)
class LabNode:
    """One simulated instance and where to find it."""

    instance_id: str
    instance_type: str
    name: str  # fabric node name
    netns: str
    imds_netns: str  # where its 169.254.169.254 listens (one routed hop from the node)
    mac: str
    primary_ip: str
    eni_id: str
    subnet_id: str
    subnet_cidr: str
    availability_zone: str
    imds_url: str  # host-side IMDS for this instance (127.0.0.1:port)


class Lab:
    """VPC-in-a-box. ``with Lab(nodes=2) as lab: ...``; ``lab.describe()`` is the JSON summary."""

    def __init__(
        self,
        nodes: int = 2,
        instance_type: str = "m5.large",
        latency: LatencyProfile | str = "zero",
        *,
        region: str = "us-east-1",
        azs: tuple[str, ...] = ("a", "b"),
        secondary_cidr: str | None = None,
        imds_config: ImdsConfig | None = None,
        lab_id: str | None = None,
        ipv6: bool = True,
    ) -> None:
        self.profile = get_profile(latency)
        self._ipv6 = ipv6  # the VPC's /56 and a /64 per subnet (False: an IPv4-only VPC)
        self.region = region
        self._want_nodes = nodes
        self._instance_type = instance_type
        self._azs = azs
        self._secondary_cidr = secondary_cidr
        self._imds_config = imds_config
        self.ec2 = Ec2Lab(self.profile, region)
        self.fabric = fab.Fabric(lab_id)
        self.imds: ImdsServer | None = None
        self.topology: Topology | None = None
        self.nodes: dict[str, LabNode] = {}  # instance id -> node
        self.subnets: dict[str, str] = {}  # subnet id -> cidr
        self._wsgi: list[tuple[BaseWSGIServer, threading.Thread]] = []
        self._lock = threading.Lock()
        self._gen: dict[tuple[str, str], int] = {}  # (instance, eni) -> event generation
        self._timers: set[threading.Timer] = set()
        self._sync_stop = threading.Event()
        self._sync_lock = threading.Lock()
        self._sync_thread: threading.Thread | None = None
        self._boot_ids: dict[str, str] = {}  # instance id -> the boot id its OS has now
        self._endpoint: ControlEndpoint | None = None
        self._started = False

    @property
    def lab_id(self) -> str:
        return self.fabric.lab_id

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Lab:
        if self._started:
            return self
        self._started = True
        try:
            fab.cleanup_stale()  # leftovers of SIGKILLed labs
            self.ec2.start()
            # moto keeps one backend per account/region for the whole process: start from a
            # clean one, whatever an earlier lab in this process left there.
            self.ec2.reset()
            self.topology = create_topology(
                self.ec2, azs=self._azs, secondary_cidr=self._secondary_cidr, ipv6=self._ipv6
            )
            self.fabric.create()
            with self.ec2.lock:
                for subnet_id in [
                    *self.topology.node_subnets.values(),
                    *self.topology.pod_subnets.values(),
                ]:
                    self.subnets[subnet_id] = str(self.ec2.backend.get_subnet(subnet_id).cidr_block)
            for cidr in self.subnets.values():
                self.fabric.add_subnet(cidr)
            # IPv6: the router answers at base + 1 of every subnet /64 (and at fe80::1)
            for cidr6 in self.topology.subnet_ipv6.values():
                self.fabric.add_subnet(cidr6)
            # the S3 / DynamoDB gateway endpoint, on the CIDRs of the region's prefix lists
            self.fabric.add_gateway_endpoint(dict(SERVICE_CIDRS))
            self.imds = ImdsServer(
                moto_source(self.ec2.backend, self.ec2.lock),
                lag=self.profile.imds_lag,
                remove_lag=self.profile.imds_remove_lag,
                config=self._imds_config,
            )
            self.ec2.on_attach(self._on_attach)
            self.ec2.on_detach(self._on_detach)
            zones = self.topology.azs
            for i in range(self._want_nodes):
                self.add_node(self._instance_type, az=zones[i % len(zones)])
            self._sync_thread = threading.Thread(
                target=self._sync_loop, name="lab-address-sync", daemon=True
            )
            self._sync_thread.start()
            self._endpoint = ControlEndpoint(self, control_socket(self.lab_id)).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Tear everything down: no namespace, link, socket or thread of this lab survives."""
        if not self._started:
            return
        self._started = False
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None
        # Release answers held by lost-response faults: their threads must not outlive the lab.
        self.ec2.faults.clear()
        with contextlib.suppress(Exception):
            self.ec2.remove_callback(self._on_attach)
            self.ec2.remove_callback(self._on_detach)
        with self._lock:
            timers, self._timers = self._timers, set()
        for t in timers:
            t.cancel()
        self._sync_stop.set()
        if self._sync_thread is not None:
            self._sync_thread.join(timeout=5)
            self._sync_thread = None
        if self.imds is not None:
            self.imds.close()
        for server, thread in self._wsgi:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)  # each one stops within its 50 ms poll interval
        self._wsgi.clear()
        self.fabric.destroy()
        shutil.rmtree(fab.REGISTRY / self.lab_id, ignore_errors=True)
        self.ec2.stop()

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- nodes --------------------------------------------------------------------------------

    def add_node(
        self,
        instance_type: str | None = None,
        *,
        az: str | None = None,
        subnet_id: str | None = None,
    ) -> LabNode:
        """Launch an instance in EC2 and give it a node netns, IMDS and an EC2 endpoint."""
        assert self.topology is not None and self.imds is not None, "Lab not started"
        info = self.topology.run_instance(
            instance_type or self._instance_type, subnet_id or self.topology.node_subnet(az)
        )
        cidr = self.subnets[info.subnet_id]
        name = "i" + info.instance_id.removeprefix("i-")[-8:]
        node = self.fabric.add_node(name, mac=info.mac, ip_addr=info.private_ip, subnet=cidr)
        # Listening sockets are made inside the node netns (setns in a short-lived thread) and
        # served by this process, so the node needs no process of its own.
        self.imds.serve(fab.listen_in_netns(node.imds_netns, fab.IMDS_ADDR, 80), info.instance_id)
        self._serve_ec2(fab.listen_in_netns(node.imds_netns, fab.IMDS_ADDR, NODE_EC2_PORT))
        lab_node = LabNode(
            instance_id=info.instance_id,
            instance_type=info.instance_type,
            name=name,
            netns=node.netns,
            imds_netns=node.imds_netns,
            mac=info.mac,
            primary_ip=info.private_ip,
            eni_id=info.eni_id,
            subnet_id=info.subnet_id,
            subnet_cidr=cidr,
            availability_zone=info.availability_zone,
            imds_url=self.imds.listen_tcp(info.instance_id),
        )
        self.nodes[info.instance_id] = lab_node
        self._new_boot(info.instance_id)
        self.sync_addresses()
        return lab_node

    def terminate_node(self, instance_id: str) -> dict[str, list[str]]:
        """TerminateInstances, and the node netns goes away with the instance.

        Returns the ENIs EC2 deleted (DeleteOnTermination) and those it detached (left
        ``available``), as ``{"deleted": [...], "detached": [...]}``.
        """
        assert self.topology is not None
        node = self.nodes[instance_id]
        with self.ec2.lock:
            before = [e.id for e in self.ec2.backend.enis.values()
                      if e.instance is not None and e.instance.id == instance_id]
        self.nodes.pop(instance_id)
        self.topology.terminate(instance_id)
        self.fabric.remove_node(node.name)
        self._boot_ids.pop(instance_id, None)
        self.boot_id_file(instance_id, node.name).unlink(missing_ok=True)
        with self.ec2.lock:
            left = set(self.ec2.backend.enis)
        return {"deleted": sorted(e for e in before if e not in left),
                "detached": sorted(e for e in before if e in left)}

    # -- behind the plugin's back: what happens to a node outside cnivpc's control ------------

    def boot_id(self, instance_id: str) -> str:
        """The node OS's current boot id (what /proc/sys/kernel/random/boot_id says on it)."""
        return self._boot_ids[instance_id]

    def boot_id_file(self, instance_id: str, name: str | None = None) -> Path:
        """A file holding the node's boot id, to bind-mount over
        /proc/sys/kernel/random/boot_id for processes run "on" the node (the host kernel has
        one boot id for every netns; see :class:`cnivpc.lab.runtime.Runtime`)."""
        return fab.REGISTRY / self.lab_id / f"{name or self.nodes[instance_id].name}.boot_id"

    def _new_boot(self, instance_id: str) -> str:
        boot_id = str(uuid.uuid4())
        path = self.boot_id_file(instance_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(boot_id + "\n")
        tmp.replace(path)  # readers see the old or the new id, never a torn file
        self._boot_ids[instance_id] = boot_id
        return boot_id

    def reboot_node(self, instance_id: str) -> dict[str, Any]:
        """Reboot the instance's OS: every link of the node goes down with the netns it lives in
        (pods lose theirs), the node comes back with eth0 and imds0 configured, a new boot id,
        and the ENIs that stay attached in EC2 as fresh NICs (DOWN, no addresses) by device
        index. EC2 and IMDS see no change, as on AWS."""
        node = self.nodes[instance_id]
        with self._lock:
            # hot-plugs still pending for this instance are void: the boot plugs what is attached
            for key in [k for k in self._gen if k[0] == instance_id]:
                self._gen[key] += 1
        self.fabric.reboot_node(node.name)
        boot_id = self._new_boot(instance_id)
        view = moto_source(self.ec2.backend, self.ec2.lock)(instance_id)
        plugged: dict[str, str] = {}
        for eni in sorted(view.enis if view else (), key=lambda e: e.device_index):
            if eni.eni_id == node.eni_id or self.ec2.faults.attach_hidden(instance_id, eni.eni_id):
                continue
            plugged[eni.eni_id] = self.fabric.plug(node.name, eni.eni_id, eni.mac,
                                                   eni.device_index)
        self.sync_addresses()
        return {"instance_id": instance_id, "boot_id": boot_id, "enis": plugged}

    def detach_eni(self, eni_id: str) -> dict[str, Any]:
        """Detach an ENI in EC2 as someone else would (console, another controller): IMDS and
        the node's netdev follow through the usual detach event. It is ``available`` at once
        (no ``detaching`` window: that belongs to calls through the API)."""
        with self.ec2.lock:
            eni = self._eni(eni_id)
            if eni.instance is None:
                raise LabCommandError(f"{eni_id} is not attached",
                                      "attach it first, or pick another ENI")
            if eni.device_index == 0:
                raise LabCommandError(f"{eni_id} is the primary ENI of {eni.instance.id}",
                                      "EC2 never detaches a primary ENI; terminate the node")
            instance_id = str(eni.instance.id)
            self.ec2.backend.detach_network_interface(eni.attachment_id)
        self.ec2.state.flush_events()
        return {"eni": eni_id, "instance_id": instance_id}

    def unassign_ips(self, eni_id: str, ips: list[str] | None = None) -> dict[str, Any]:
        """Unassign secondary private IPs, IPv4 prefixes (``10.0.16.32/28``), IPv6 addresses and
        IPv6 /80 prefixes of an ENI in EC2 (all of them when ``ips`` is empty); the VPC stops
        delivering them and IMDS drops them after its remove lag."""
        with self.ec2.lock:
            eni = self._eni(eni_id)
            secondaries = [a for a in eni_ipv4s(eni) if a != eni.private_ip_address]
            prefixes = eni_prefixes(eni)
            v6, v6_prefixes = eni_ipv6s(eni), eni_ipv6_prefixes(eni)
            held = secondaries + prefixes + v6 + v6_prefixes
            wanted = list(ips) if ips else held
            if eni.private_ip_address in wanted:
                raise LabCommandError(f"{eni.private_ip_address} is {eni_id}'s primary IP",
                                      "only secondary IPs and prefixes can be unassigned")
            missing = [a for a in wanted if a not in held]
            if missing:
                raise LabCommandError(f"not assigned to {eni_id}: {', '.join(missing)}",
                                      "its secondary IPs and prefixes: "
                                      f"{', '.join(held) or 'none'}")
            addresses = [a for a in wanted if a in secondaries]
            if addresses:
                self.ec2.backend.unassign_private_ip_addresses(eni_id, addresses)
            if any(p in prefixes for p in wanted):
                set_eni_prefixes(eni, [p for p in prefixes if p not in wanted])
            if any(a in v6 or a in v6_prefixes for a in wanted):
                set_eni_ipv6s(eni, [a for a in v6 if a not in wanted])
                set_eni_ipv6_prefixes(eni, [p for p in v6_prefixes if p not in wanted])
        self.sync_addresses()
        return {"eni": eni_id, "unassigned": wanted}

    def fragment(self, subnet_id: str, leave: int = 0) -> dict[str, Any]:
        """Squat one address of every free /28 of a subnet but ``leave`` of them (see
        :func:`cnivpc.lab.ec2.topology.fragment`): prefix requests then fail with
        ``InsufficientCidrBlocks`` while single addresses stay plentiful."""
        with self.ec2.lock:
            known = subnet_id in {s.id for az in self.ec2.backend.subnets.values()
                                  for s in az.values()}
        if not known:
            raise LabCommandError(f"no subnet {subnet_id} in this lab",
                                  f"the lab's own subnets: {', '.join(sorted(self.subnets))}")
        if leave < 0:
            raise LabCommandError(f"--leave {leave}: not a number of /28s", "0 or more")
        done = fragment_subnet(self.ec2, subnet_id, leave=leave)
        return asdict(done)

    def _eni(self, eni_id: str) -> Any:
        eni = self.ec2.backend.enis.get(eni_id)
        if eni is None:
            raise LabCommandError(f"no ENI {eni_id} in this lab",
                                  "list them with aws ec2 describe-network-interfaces")
        return eni

    def node(self, index_or_id: int | str = 0) -> LabNode:
        """A node by index, instance id or fabric name (``i1234abcd``)."""
        if isinstance(index_or_id, int):
            return list(self.nodes.values())[index_or_id]
        if index_or_id in self.nodes:
            return self.nodes[index_or_id]
        for node in self.nodes.values():
            if node.name == index_or_id:
                return node
        raise KeyError(index_or_id)

    def _serve_ec2(self, sock: Any) -> None:
        # werkzeug dups the fd (socket.fromfd); the original can go.
        server = make_server(
            fab.IMDS_ADDR, NODE_EC2_PORT, self.ec2.app, threaded=True,
            request_handler=LabRequestHandler, fd=sock.fileno(),
        )
        sock.close()
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="lab-node-ec2",
            daemon=True,
        )
        thread.start()
        self._wsgi.append((server, thread))

    # -- hot-plug -----------------------------------------------------------------------------

    def _bump(self, key: tuple[str, str]) -> int:
        with self._lock:
            self._gen[key] = self._gen.get(key, 0) + 1
            return self._gen[key]

    def _later(self, delay: float, key: tuple[str, str], gen: int, fn: Callable[[], Any]) -> None:
        """Run ``fn`` after ``delay`` unless a newer event for ``key`` came in meanwhile."""

        def current() -> bool:
            with self._lock:
                return self._gen.get(key) == gen

        if delay <= 0:
            # synchronous: the netdev exists before the EC2 response goes out
            if current():
                fn()
            return

        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
            if current():
                try:
                    fn()
                except Exception:
                    log.exception("lab hot-plug for %s failed", key)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()

    def _on_attach(self, ev: AttachmentEvent) -> None:
        node = self.nodes.get(ev.instance_id)
        if node is None or (ev.device_index == 0 and ev.eni_id == node.eni_id):
            return  # not ours, or the primary ENI (made with the node)
        key = (ev.instance_id, ev.eni_id)
        gen = self._bump(key)
        if self.imds is not None:
            self.imds.propagation.note_attach(ev.instance_id, ev.eni_id, ev.device_index)
        if self.ec2.faults.attach_hidden(ev.instance_id, ev.eni_id):
            log.info("fault: attach of %s to %s never shows up", ev.eni_id, ev.instance_id)
            return
        self.sync_addresses()
        delay = self.ec2.control.profile.attach_visible_delay
        self._later(
            delay, key, gen,
            lambda: self.fabric.plug(node.name, ev.eni_id, ev.mac, ev.device_index),
        )

    def _on_detach(self, ev: AttachmentEvent) -> None:
        node = self.nodes.get(ev.instance_id)
        if node is None:
            return
        key = (ev.instance_id, ev.eni_id)
        gen = self._bump(key)
        if ev.reason != "detach":
            return  # instance terminated: its netns goes with it (see terminate_node)
        delay = self.ec2.control.profile.detach_visible_delay
        self._later(delay, key, gen, lambda: self.fabric.unplug(node.name, ev.eni_id))

    def sync_addresses(self) -> None:
        """Tell the VPC router which ENI (MAC) owns each private IP, from EC2's current state.

        Runs every 100 ms (assignments have no event) and on every attach; see
        :meth:`Fabric.set_addresses` for why the router must not learn this from ARP.
        """
        source = moto_source(self.ec2.backend, self.ec2.lock)
        # read and apply as one step: a slower sync must not apply an older snapshot last
        with self._sync_lock:
            owners: dict[str, str] = {}
            for iid in list(self.nodes):
                view = source(iid)
                for eni in view.enis if view else ():
                    for addr in eni.ipv4s:
                        owners[addr] = eni.mac
                    for prefix in eni.ipv4_prefixes:  # every address of a delegated /28
                        owners[prefix] = eni.mac
                    for addr in (*eni.ipv6s, *eni.ipv6_prefixes):  # IPv6 addresses and /80s
                        owners[addr] = eni.mac
            self.fabric.set_addresses(owners)

    def _sync_loop(self) -> None:
        while not self._sync_stop.wait(0.1):
            try:
                self.sync_addresses()
            except Exception:
                log.exception("lab address sync failed")

    def wait_for_link(self, instance_id: str, mac: str, timeout: float = 10.0) -> str:
        """Block until a netdev with ``mac`` exists in the node; return its name."""
        netns = self.nodes[instance_id].netns
        deadline = time.monotonic() + timeout
        while True:
            for name, link_mac in fab.node_links(netns).items():
                if link_mac == mac.lower():
                    return name
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no link with MAC {mac} in {netns} after {timeout}s")
            time.sleep(0.05)

    # -- summary ------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Everything a user of the running lab needs, JSON-ready (the ``up`` output line)."""
        assert self.topology is not None
        topo = self.topology
        subnets = []
        for kind, by_az in (("nodes", topo.node_subnets), ("pods", topo.pod_subnets)):
            for az, sid in by_az.items():
                cidr = self.subnets[sid]
                cidr6 = topo.subnet_ipv6.get(sid)
                subnets.append({"id": sid, "cidr": cidr, "az": az, "kind": kind,
                                "gateway": self.fabric.subnets[cidr],
                                "ipv6_cidr": cidr6,
                                "ipv6_gateway": self.fabric.subnets.get(cidr6 or "")})
        return {
            "lab_id": self.lab_id,
            "region": self.region,
            "profile": self.profile.name,
            "ec2_url": self.ec2.url,
            "node_endpoints": {
                "imds": NODE_IMDS_URL,
                "ec2": NODE_EC2_URL,
                "env": {"AWS_ENDPOINT_URL_EC2": NODE_EC2_URL, "AWS_DEFAULT_REGION": self.region},
            },
            "vpc": {
                "id": topo.vpc_id,
                "cidr": topo.vpc_cidr,
                "secondary_cidr": topo.secondary_cidr,
                "ipv6_cidr": topo.vpc_ipv6_cidr,
                "ipv6_router": fab.ROUTER_LL6,
                "security_group_id": topo.security_group_id,
                "netns": self.fabric.vpc_ns,
            },
            "internet": {"netns": self.fabric.inet_ns, "ip": fab.INET_ADDR,
                         "ipv6": fab.INET6_ADDR},
            "gateway_endpoint": {"netns": self.fabric.vpce_ns,
                                 "cidrs": {k: list(v) for k, v in SERVICE_CIDRS.items()}},
            "subnets": subnets,
            "nodes": [{**asdict(n), "boot_id": self._boot_ids.get(n.instance_id),
                       "boot_id_file": str(self.boot_id_file(n.instance_id))}
                      for n in self.nodes.values()],
            "control": str(control_socket(self.lab_id)),
        }
