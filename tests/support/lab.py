"""Fixtures for the lab's fabric, nodes and IMDS (a plugin: tests/fabric, tests/uml, the IPAM
and CLI tests use them).

* ``lab`` -- a started :class:`cnivpc.lab.lab.Lab` (2 nodes, profile ``zero``), new per test,
  so every test starts from clean EC2 state and fresh namespaces; torn down after the test.
  Needs root (marker ``netns``) and moto (skipped without it).
* ``lab_factory`` -- build labs with other knobs (profile, node count); all torn down after.
* ``ec2_client`` -- a botocore EC2 client on the host pointed at ``lab.ec2.url``.
* ``fabric`` -- a bare VPC fabric (no EC2, no moto): subnets, nodes and hot-plug by hand; what the
  UML tests use (moto is far too slow inside UML).
* ``in_ns`` -- run a command inside a namespace (``ip netns exec``), returning CompletedProcess.
* ``servers`` -- a list to put started server processes in (``probes.serve_whoami``); each is
  killed after the test.
* ``eventually(cond)`` -- wait for an event (poll ``cond`` until true, fail after a generous
  timeout): what tests use instead of sleeping for a guessed time.

Every lab/fabric gets a random id; namespaces are ``cnl-<id>-*`` and are gone after the test.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cnivpc.lab.fabric import Fabric

Run = Callable[..., subprocess.CompletedProcess[str]]


def run_in(netns: str | None, *cmd: str, check: bool = False, timeout: float = 30
           ) -> subprocess.CompletedProcess[str]:
    full = (["ip", "netns", "exec", netns] if netns else []) + list(cmd)
    res = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{full} -> {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


def ipvlan_slave(fab: Fabric, node: str, eni_if: str, pod: str) -> str:
    """A new pod netns holding ``eth0``, an ipvlan L2 slave of the ENI link ``eni_if`` of
    ``node`` (the ENI brought up), itself still down and without an address: what
    cnivpc-ipvlan starts from. Returns the netns."""
    netns = fab.add_netns(pod)
    node_ns = fab.node_ns(node)
    slave = f"ipv{pod[-4:]}"
    run_in(node_ns, "ip", "link", "set", eni_if, "up", check=True)
    run_in(node_ns, "ip", "link", "add", "link", eni_if, "name", slave, "type", "ipvlan",
           "mode", "l2", check=True)
    run_in(node_ns, "ip", "link", "set", slave, "netns", netns, check=True)
    run_in(netns, "ip", "link", "set", slave, "name", "eth0", check=True)
    return netns


def eventually(cond: Callable[[], object], timeout: float = 30.0, step: float = 0.02) -> float:
    """Poll ``cond()`` until it is true; the seconds it took. Raises AssertionError after
    ``timeout`` (long: a loaded 2-core machine must not fail a test that is only slow)."""
    started = time.monotonic()
    while not cond():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true within {timeout:.0f}s: {cond}")
        time.sleep(step)
    return time.monotonic() - started


def ping(netns: str, dst: str, src: str | None = None, attempts: int = 3) -> bool:
    """One echo, retried (the CI VM can be loaded enough to miss a 1 s reply); pass
    ``attempts=1`` when the test expects silence."""
    args = ["ping", "-n", "-c", "1", "-W", "1" if attempts == 1 else "2",
            *(["-I", src] if src else []), dst]
    return any(run_in(netns, *args).returncode == 0 for _ in range(attempts))


@pytest.fixture
def in_ns() -> Run:
    """Name: in_ns. Scope: function. ``in_ns(netns, *cmd, check=False)``."""
    return run_in


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


@pytest.fixture
def fabric() -> Iterator[Fabric]:
    """Name: fabric. Scope: function. A bare fabric; destroyed (all namespaces gone) after."""
    _need_root()
    fab = Fabric().create()
    try:
        yield fab
    finally:
        fab.destroy()


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., Any]]:
    """Name: lab_factory. Scope: function. ``lab_factory(**Lab kwargs)`` -> started Lab."""
    _need_root()
    pytest.importorskip("moto")
    from cnivpc.lab.lab import Lab

    labs: list[Lab] = []

    def make(**kwargs: Any) -> Lab:
        lab = Lab(**kwargs)
        labs.append(lab)
        return lab.start()

    yield make
    for lab in labs:
        lab.stop()


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Name: servers. Scope: function. Started servers to kill after the test."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


@pytest.fixture
def lab(lab_factory: Callable[..., Any]) -> Any:
    """Name: lab. Scope: function. A started 2-node lab on the ``zero`` profile."""
    return lab_factory(nodes=2)


@pytest.fixture
def ec2_client(lab: Any) -> Any:
    """Name: ec2_client. Scope: function. botocore EC2 client for ``lab`` (host side)."""
    return make_client(lab)


def make_client(lab: Any) -> Any:
    import botocore.config
    import botocore.session

    session = botocore.session.get_session()
    return session.create_client(
        "ec2",
        region_name=lab.region,
        endpoint_url=lab.ec2.url,
        aws_access_key_id="AKIDLABTEST",
        aws_secret_access_key="lab-secret",
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )
