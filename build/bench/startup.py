"""Section 1 and 5 of ``./build/dev bench``: the zipapp itself. Its size, its first run
(extraction + bytecode compilation), and the warm start-up of every entry point
(``cnivpc-ptp``/``-ipvlan``/``-ipam`` VERSION through the symlinks under ``env -i``, and the
fused ``cnivpc`` VERSION) against a bare ``/usr/bin/python3 -c pass``, with the
``-X importtime`` top offenders of one plugin's VERSION so a regression shows its culprit.

Runs are interleaved (bare, ptp, ipvlan, ..., bare, ...) so load from other processes hits all
alike; each child's CPU time comes from wait4(2), steadier than wall time on a busy machine.
Stdlib only; never imports cnivpc (it measures the artifact from outside).

    /usr/bin/python3 build/bench/startup.py --out F [--runs N] [--zipapp build/out/cnivpc]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Row, fmt, row, summarize, write_section

PYTHON = "/usr/bin/python3"
PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
GOAL_GAP_MS = 40.0
GOAL_SIZE_MB = 8.0


def timed(cmd: list[str], env: dict[str, str] | None = None,
          stdin: bytes | None = None) -> tuple[float, float]:
    """(wall ms, user+sys CPU ms) of one run of ``cmd``, output discarded."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None else
                            subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - started) * 1000
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} exited {code}")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def interpreter(zipapp: Path) -> list[str]:
    """The zipapp's shebang as a command (``/usr/bin/python3 -sSE``): ``-X importtime`` runs
    must start the interpreter exactly as exec does."""
    with zipapp.open("rb") as f:
        line = f.readline().decode().strip()
    if not line.startswith("#!"):
        raise SystemExit(f"bench: {zipapp} has no shebang")
    return line[2:].split()


def importtime(cmd: list[str], env: dict[str, str] | None = None, top: int = 10,
               stdin: str = "") -> tuple[int, list[dict[str, object]]]:
    """(modules imported, the ``top`` imports by cumulative time) of one run of ``cmd``,
    which must hold ``-X importtime``."""
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, input=stdin).stderr
    rows = []
    for line in out.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = line.removeprefix("import time:").split("|")
        rows.append({"module": name.strip(), "depth": (len(name) - len(name.lstrip())) // 2,
                     "self_ms": int(self_us) / 1000, "cumulative_ms": int(cumulative) / 1000})
    ranked = sorted(rows, key=lambda r: float(str(r["cumulative_ms"])), reverse=True)
    return len(rows), ranked[:top]


def print_importtime(title: str, count: int, top: list[dict[str, object]]) -> None:
    print(f"{title}: {count} modules imported; top by cumulative time:", file=sys.stderr)
    for r in top:
        print(f"  {r['cumulative_ms']:7.1f} ms cumulative {r['self_ms']:6.1f} ms self  "
              f"{'  ' * int(str(r['depth']))}{r['module']}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "30")))
    parser.add_argument("--zipapp", type=Path, default=Path("build/out/cnivpc"))
    args = parser.parse_args(argv)
    zipapp = args.zipapp.resolve()
    bindir = zipapp.parent / "bin"
    size = zipapp.stat().st_size
    rows: list[Row] = [row("zipapp size", f"{size / 1e6:.2f} MB", goal=f"<= {GOAL_SIZE_MB:g} MB",
                           met=size <= GOAL_SIZE_MB * 1e6)]
    data: dict[str, object] = {"zipapp_bytes": size, "runs": args.runs}

    with tempfile.TemporaryDirectory(prefix="cnivpc-bench.") as tmp:
        firsts = []
        for i in range(3):
            root = Path(tmp, f"first{i}")
            firsts.append(timed(["env", "-i", PATH, f"SHIV_ROOT={root}", "CNI_COMMAND=VERSION",
                                 str(bindir / "cnivpc-ptp")])[0])
            shutil.rmtree(root)
        first = summarize(firsts)
        data["first_run_ms"] = first
        rows.append(row("first run (extract + compile pyc)", fmt(first, digits=0)))

        root = Path(tmp, "warm")
        env = ["env", "-i", PATH, f"SHIV_ROOT={root}", "CNI_COMMAND=VERSION"]
        flags = interpreter(zipapp)[1:]
        floor = f"python3 {' '.join(flags)} -c pass"
        # The yardstick (a node's python3 as it starts by default), and the floor: the
        # interpreter started exactly as the zipapp's shebang starts it.
        commands = {"python3 -c pass": [PYTHON, "-c", "pass"],
                    floor: [PYTHON, *flags, "-c", "pass"]}
        for name in ("cnivpc-ptp", "cnivpc-ipvlan", "cnivpc-ipam"):
            commands[f"{name} VERSION"] = [*env, str(bindir / name)]
        # The fused plugin is the bare binary exec'd with CNI_COMMAND set.
        commands["cnivpc (fused) VERSION"] = [*env, str(zipapp)]
        timed(commands["cnivpc-ptp VERSION"])  # extracts
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
        for _ in range(3):  # warm-up: page cache, pyc
            for cmd in commands.values():
                timed(cmd)
        for _ in range(args.runs):
            for name, cmd in commands.items():
                samples[name].append(timed(cmd))
        wall = {k: summarize([w for w, _ in v]) for k, v in samples.items()}
        cpu = {k: summarize([c for _, c in v]) for k, v in samples.items()}
        data["wall_ms"] = wall
        data["cpu_ms"] = cpu
        base = wall["python3 -c pass"]
        rows.append(row(f"exec start-up: {floor}", fmt(wall[floor]), peer=fmt(base) +
                        " (python3 -c pass)",
                        ratio=f"{wall[floor]['median'] - base['median']:+.1f} ms"))
        for name in commands:
            if name.startswith("python3"):
                continue
            gap = wall[name]["median"] - base["median"]
            over_floor = wall[name]["median"] - wall[floor]["median"]
            rows.append(row(f"exec start-up: {name}", fmt(wall[name]), peer=fmt(base) +
                            " (python3 -c pass)",
                            ratio=f"{gap:+.1f} ms ({over_floor:+.1f} over {' '.join(flags)})",
                            goal=f"<= +{GOAL_GAP_MS:g} ms", met=gap <= GOAL_GAP_MS))
        count, top = importtime(["env", "-i", f"SHIV_ROOT={root}", "CNI_COMMAND=VERSION",
                                 *interpreter(zipapp), "-X", "importtime",
                                 str(bindir / "cnivpc-ptp")])
        data["importtime_version"] = {"modules": count, "top": top}
        print_importtime("-X importtime, cnivpc-ptp VERSION", count, top)
    write_section(args.out, "startup", "Exec start-up and the artifact", rows, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
