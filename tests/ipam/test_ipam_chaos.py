"""A short seeded chaos run in the suite (``./build/dev chaos`` runs long ones): random ADD,
DEL, CHECK, GC and ``ipam warm`` on two lab nodes through the built zipapp, with EC2 faults and
SIGKILLs at EC2 steps, ``cnivpc ipam audit`` after every step (see ``cnivpc.lab.chaos``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnivpc.lab import chaos
from tests.support.zipapp import Zipapp

pytestmark = [pytest.mark.netns, pytest.mark.artifact]


@pytest.mark.parametrize(("seed", "prefixes"), [(7, False), (20261204, False), (15, True)])
def test_short_chaos_run_finds_no_violation(zipapp: Zipapp, tmp_path: Path,
                                             require_root: None, seed: int,
                                             prefixes: bool) -> None:
    zipapp.run("cnivpc", args=("--version",))  # extracted once, outside the measured run
    report = chaos.run(zipapp.path, seed=seed, ops=25, nodes=2, instance_type="c5.xlarge",
                       workdir=tmp_path, shiv_root=zipapp.shiv_root, prefixes=prefixes)
    print(report.line())
    assert report.failures == [], f"seed {seed}: {report.failures}"
    assert report.violations == [], f"seed {seed}: {report.violations}"
    assert report.operations == 25
