"""``./build/dev bench`` runs: build/bench/run.py --quick drives the host sections (start-up
and the artifact, ptp alone vs Debian's Go ptp) through a zipapp built from this tree and
writes the merged table and JSON. Outcomes only (every row filled, goals judged, the Go peer
measured beside ours), never timings: machines are noisy. The ec2 section has its own test
(test_bench_ec2.py), the UML chain its own in tests/uml/test_bench_chain.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.zipapp import Zipapp

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.netns


def test_quick_bench_of_the_host_sections(zipapp: Zipapp, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    if not Path("/usr/lib/cni/ptp").exists():
        pytest.fail("Debian's containernetworking-plugins are missing (build/dev installs them)")
    proc = subprocess.run(
        [sys.executable, str(REPO / "build" / "bench" / "run.py"), "--quick", "--only",
         "startup,ptp_host", "--out", str(tmp_path), "--zipapp", str(zipapp.path)],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["quick"] and doc["failed"] == []
    sections = {s["section"]: s for s in doc["sections"]}
    assert set(sections) == {"startup", "ptp_host"}

    startup = sections["startup"]
    assert startup["data"]["zipapp_bytes"] == zipapp.path.stat().st_size
    rows = {r["what"]: r for r in startup["rows"]}
    for entry in ("cnivpc-ptp", "cnivpc-ipvlan", "cnivpc-ipam", "cnivpc (fused)"):
        r = rows[f"exec start-up: {entry} VERSION"]
        assert r["ours"] and "python3 -c pass" in r["peer"] and r["met"] in (True, False)
    assert startup["data"]["importtime_version"]["modules"] > 10

    ptp = sections["ptp_host"]
    assert set(ptp["data"]["wall_ms"]) == {"ours ADD", "ours DEL", "theirs ADD", "theirs DEL"}
    assert all(s["n"] == 2 for s in ptp["data"]["wall_ms"].values())
    add = ptp["data"]["importtime_add"]
    # The ADD really ran our plugin and its netlink code, not only the dispatcher.
    assert add["modules"] > 100 and any(m["module"].startswith("cnivpc") for m in add["top"])

    table = (tmp_path / "bench.md").read_text()
    assert "| figure | cnivpc | peer |" in table and "Go: ptp + host-local" in table
    assert proc.stdout.strip().endswith(table.strip().splitlines()[-1])
