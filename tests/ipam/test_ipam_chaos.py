"""A short seeded chaos run in the suite (``./build/dev chaos`` runs long ones): random ADD
(some asking for an address by name), DEL, CHECK, GC and ``ipam warm`` on two lab nodes through
the built zipapp, with EC2 faults and SIGKILLs at EC2 steps, ``cnivpc ipam audit`` after every
step (see ``cnivpc.lab.chaos``); IPv4, prefix delegation, dual-stack and IPv6-only pods."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnivpc.lab import chaos
from tests.support.zipapp import Zipapp

pytestmark = [pytest.mark.netns, pytest.mark.artifact]


@pytest.mark.parametrize(("seed", "prefixes", "family"), [
    (7, False, "ipv4"), (20261204, False, "ipv4"), (15, True, "ipv4"),
    (16, False, "dual-stack"), (17, False, "ipv6")])
def test_short_chaos_run_finds_no_violation(zipapp: Zipapp, tmp_path: Path,
                                             require_root: None, seed: int,
                                             prefixes: bool, family: str) -> None:
    zipapp.run("cnivpc", args=("--version",))  # extracted once, outside the measured run
    report = chaos.run(zipapp.path, seed=seed, ops=25, nodes=2, instance_type="c5.xlarge",
                       workdir=tmp_path, shiv_root=zipapp.shiv_root, prefixes=prefixes,
                       family=family)
    print(report.line())
    assert report.failures == [], f"seed {seed}: {report.failures}"
    assert report.violations == [], f"seed {seed}: {report.violations}"
    assert report.operations == 25
