"""UML tests: what needs a kernel with ipvlan (Debian's user-mode-linux kernel when the host
lacks it). Every test here is marked ``uml``; ``build/dev test`` runs ``pytest -m uml`` in ONE
UML run through build/uml/run-in-uml (or directly when the host kernel has ipvlan).

Where the kernel cannot do ipvlan the tests skip, except when CNL_REQUIRE_UML=1 (set by
build/dev's UML run): there a missing ipvlan is a failure, so a broken harness never turns into
silently skipped tests.

Fixtures: the fabric ones of the tests.support.lab plugin (``fabric``, ``in_ns``); no EC2
here: moto's first call costs 13-16 s inside UML, and the fabric code is the same.
"""

from __future__ import annotations

import functools
import os
import subprocess

import pytest


@functools.cache
def kernel_has_ipvlan() -> bool:
    """Try it for real in a throw-away netns (modules may autoload; /proc/modules can lie)."""
    if os.geteuid() != 0:
        return False
    ns = f"cnivpc-probe-{os.getpid()}"

    def ip(*args: str) -> bool:
        return subprocess.run(["ip", *args], capture_output=True).returncode == 0

    if not ip("netns", "add", ns):
        return False
    try:
        return ip("-n", ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1") and ip(
            "-n", ns, "link", "add", "link", "p0", "name", "p2", "type", "ipvlan", "mode", "l2")
    finally:
        ip("netns", "del", ns)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    uml_items = [i for i in items if i.get_closest_marker("uml")]
    if not uml_items or kernel_has_ipvlan():
        return
    if os.environ.get("CNL_REQUIRE_UML") == "1":
        raise pytest.UsageError("CNL_REQUIRE_UML=1 but this kernel cannot create ipvlan links")
    skip = pytest.mark.skip(reason="no ipvlan here: run `pytest -m uml` via build/uml/run-in-uml")
    for item in uml_items:
        item.add_marker(skip)
