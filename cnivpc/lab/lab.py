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
* The VPC router delivers each private IP to the ENI EC2 assigned it to (``sync_addresses``,
  every 100 ms and on each attach), as AWS does, instead of trusting ARP.

Endpoints seen from inside a node netns (what plugins get with production defaults):

* IMDS: ``http://169.254.169.254`` (port 80), in the node's ``-md`` netns one routed hop behind
  ``imds0`` (see :mod:`.fabric`), so ``HttpPutResponseHopLimit`` (default 1) stops pods' token
  requests exactly as on AWS. It also serves an instance-profile role, so SDK credential chains
  find credentials as on EC2.
* EC2 API: ``http://169.254.169.254:8773`` (``AWS_ENDPOINT_URL_EC2``; 8773 is the port of the
  EC2-compatible API in Eucalyptus/OpenStack), the same strict app and backend as ``ec2.url``.

From the host (tests): ``Lab.ec2.url`` and ``LabNode.imds_url`` (127.0.0.1, one port per node).

Must not be imported by plugin code; never in the zipapp.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from . import fabric as fab
from .ec2 import AttachmentEvent, Ec2Lab, LabRequestHandler
from .ec2.topology import Topology
from .ec2.topology import create as create_topology
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
    ) -> None:
        self.profile = get_profile(latency)
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
                self.ec2, azs=self._azs, secondary_cidr=self._secondary_cidr
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
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Tear everything down: no namespace, link, socket or thread of this lab survives."""
        if not self._started:
            return
        self._started = False
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
        self.sync_addresses()
        return lab_node

    def terminate_node(self, instance_id: str) -> None:
        """TerminateInstances, and the node netns goes away with the instance."""
        assert self.topology is not None
        node = self.nodes.pop(instance_id)
        self.topology.terminate(instance_id)
        self.fabric.remove_node(node.name)

    def node(self, index_or_id: int | str = 0) -> LabNode:
        if isinstance(index_or_id, int):
            return list(self.nodes.values())[index_or_id]
        return self.nodes[index_or_id]

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
                subnets.append({"id": sid, "cidr": cidr, "az": az, "kind": kind,
                                "gateway": self.fabric.subnets[cidr]})
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
                "security_group_id": topo.security_group_id,
                "netns": self.fabric.vpc_ns,
            },
            "internet": {"netns": self.fabric.inet_ns, "ip": fab.INET_ADDR},
            "subnets": subnets,
            "nodes": [asdict(n) for n in self.nodes.values()],
        }
