"""``./build/dev bench``'s UML section runs: build/bench/chain_uml.py measures one round of the
warm chain (chained, fused, and Debian's Go chain with and without ipMasq) on a lab node of its
own and writes its section. Outcomes only, never timings: every leg measured, the per-plugin
breakdown present, and the measured rounds really on the warm path (no EC2 call at all)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.uml

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "build" / "bench"
ZIPAPP = Path(os.environ.get("CNIVPC_ZIPAPP", REPO / "build/out/cnivpc"))


def chain_uml() -> ModuleType:
    sys.path.insert(0, str(BENCH))  # the sections import their shared common.py
    spec = importlib.util.spec_from_file_location("bench_chain_uml", BENCH / "chain_uml.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_round_of_the_warm_chain_bench(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    pytest.importorskip("moto")
    if not ZIPAPP.exists():
        pytest.fail(f"{ZIPAPP} is missing: ./build/dev zipapp builds it (./build/dev test does)")
    out = tmp_path / "chain.json"
    # --inside: this test already runs where ipvlan exists (UML, or a host kernel with it).
    assert chain_uml().main(["--out", str(out), "--runs", "1", "--inside",
                             "--zipapp", str(ZIPAPP)]) == 0
    doc = json.loads(out.read_text())
    assert doc["section"] == "chain_uml"
    ms = doc["data"]["ms"]
    assert set(ms) == {f"{leg} {c}" for leg in ("chained", "fused", "go-masq", "go")
                       for c in ("ADD", "DEL")}
    assert all(s["n"] == 1 and s["median"] > 0 for s in ms.values())
    assert {k.split()[0] for k in doc["data"]["per_plugin_ms"]} == {
        "cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp"}
    assert doc["data"]["ec2_calls_measured"] == 0  # the warm path asks EC2 nothing
    ratio_row = next(r for r in doc["rows"] if r["what"].startswith("warm ADD, chained"))
    assert ratio_row["goal"] and ratio_row["met"] in (True, False) and "Go" in ratio_row["peer"]
