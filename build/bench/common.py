"""What every benchmark section shares: summary statistics, how figures are printed, and the
JSON a section writes for ``build/bench/run.py`` to put in the one table.

A section is a script ``build/bench/<name>.py`` run as ``python build/bench/<name>.py --out F``
(plus its own options); it writes ``F`` with :func:`write_section` and talks to humans on stderr.
Each row of its table compares one figure of ours with its peer (``peer`` None when there is
none); ``met`` says whether the issue's goal for that figure was reached (None: no goal).

Stdlib only; never imports cnivpc (the sections measure the artifact from outside).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, TypedDict


class Summary(TypedDict):
    n: int
    median: float
    p25: float
    p75: float
    p99: float
    min: float
    max: float


class Row(TypedDict):
    what: str
    ours: str
    peer: str | None
    ratio: str | None
    goal: str | None
    met: bool | None


def summarize(samples: list[float]) -> Summary:
    """Median with its spread: quartiles, p99, extremes (inclusive method: no extrapolation)."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    if len(ordered) == 1:
        q = [ordered[0]] * 99
    else:
        q = statistics.quantiles(ordered, n=100, method="inclusive")
    return Summary(n=len(ordered), median=statistics.median(ordered), p25=q[24], p75=q[74],
                   p99=q[98], min=ordered[0], max=ordered[-1])


def fmt(s: Summary, unit: str = "ms", digits: int = 1) -> str:
    """``37.6 ms [36.9-38.4]``: the median and its interquartile range."""
    return f"{s['median']:.{digits}f} {unit} [{s['p25']:.{digits}f}-{s['p75']:.{digits}f}]"


def ratio(ours: float, peer: float) -> str:
    return f"{ours / peer:.2f}x" if peer else "n/a"


def row(what: str, ours: str, peer: str | None = None, ratio: str | None = None,
        goal: str | None = None, met: bool | None = None) -> Row:
    return Row(what=what, ours=ours, peer=peer, ratio=ratio, goal=goal, met=met)


def machine() -> dict[str, Any]:
    """Where a run happened: enough to tell two runs' machines apart."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version(), "load1": round(os.getloadavg()[0], 2)}


def write_section(path: Path | str, name: str, title: str, rows: list[Row],
                  data: dict[str, Any]) -> None:
    """The section's JSON: its table rows for humans and every raw figure for machines."""
    doc = {"section": name, "title": title, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                  time.gmtime()),
           "machine": machine(), "rows": rows, "data": data}
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")
