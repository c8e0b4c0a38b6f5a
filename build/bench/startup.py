"""Start-up measurements of the built zipapp (``./build/dev bench``): size, first-run extraction,
warm ``cnivpc-ptp`` VERSION under ``env -i`` against a bare ``/usr/bin/python3``, and the
``-X importtime`` top 10 of that path.

Runs are interleaved (bare, zipapp, bare, ...) so load from other processes hits both alike,
and each child's CPU time comes from wait4(2): on a busy machine CPU time is steadier than
wall time. Stdlib only; must not import cnivpc (it measures the artifact from outside).

    /usr/bin/python3 build/bench.py [--runs N] [--zipapp build/out/cnivpc]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = "/usr/bin/python3"
PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall ms, user+sys CPU ms) of one run of ``cmd``, output discarded."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - started) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} exited {proc.returncode}")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def importtime(cmd: list[str], top: int) -> list[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    rows = []
    for line in out.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = line.removeprefix("import time:").split("|")
        rows.append((int(self_us), int(cumulative), name.rstrip()))
    rows.sort(key=lambda r: r[1], reverse=True)
    return [f"{c / 1000:7.1f} ms cumulative {s / 1000:6.1f} ms self  {n}" for s, c, n in rows[:top]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="start-up timings of the cnivpc zipapp")
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "30")))
    parser.add_argument("--zipapp", type=Path, default=Path("build/out/cnivpc"))
    args = parser.parse_args(argv)
    plugin = args.zipapp.parent / "bin" / "cnivpc-ptp"
    print(f"zipapp: {args.zipapp} {args.zipapp.stat().st_size / 1e6:.2f} MB "
          f"({args.zipapp.stat().st_size} bytes)")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    with tempfile.TemporaryDirectory(prefix="cnivpc-bench.") as tmp:
        firsts = []
        for i in range(3):
            root = Path(tmp, f"first{i}")
            firsts.append(timed(["env", "-i", PATH, f"SHIV_ROOT={root}", "CNI_COMMAND=VERSION",
                                 str(plugin)])[0])
            shutil.rmtree(root)
        print(f"first run (extract + compile pyc), median of 3: {statistics.median(firsts):.0f} ms")

        root = Path(tmp, "warm")
        ptp = ["env", "-i", PATH, f"SHIV_ROOT={root}", "CNI_COMMAND=VERSION", str(plugin)]
        commands = {
            "python3 -c pass": [PYTHON, "-c", "pass"],
            "python3 -sE -c pass": [PYTHON, "-sE", "-c", "pass"],
            "env -i cnivpc-ptp VERSION": ptp,
        }
        timed(ptp)  # extract
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
        for _ in range(3):  # warm-up
            for cmd in commands.values():
                timed(cmd)
        for _ in range(args.runs):
            for name, cmd in commands.items():
                samples[name].append(timed(cmd))
        print(f"warm, median of {args.runs} interleaved runs (wall / user+sys CPU):")
        med = {}
        for name, values in samples.items():
            wall = statistics.median(v[0] for v in values)
            cpu = statistics.median(v[1] for v in values)
            med[name] = (wall, cpu)
            print(f"  {name:28} {wall:6.1f} ms / {cpu:6.1f} ms")
        base = med["python3 -c pass"]
        zipapp = med["env -i cnivpc-ptp VERSION"]
        print(f"  gap vs python3 -c pass: {zipapp[0] - base[0]:+.1f} ms wall, "
              f"{zipapp[1] - base[1]:+.1f} ms CPU (goal: <= +40 ms)")

        print("-X importtime, cnivpc-ptp VERSION, top 10 by cumulative time:")
        for row in importtime(["env", "-i", f"SHIV_ROOT={root}", "CNI_COMMAND=VERSION", PYTHON,
                               "-sE", "-X", "importtime", str(plugin)], 10):
            print("  " + row)

        if shutil.which("hyperfine"):
            print("hyperfine:")
            subprocess.run(["hyperfine", "-N", "-w", "3", "-r", str(args.runs),
                            f"{PYTHON} -c pass", " ".join(ptp)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
