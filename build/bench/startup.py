"""Section 1 and 5 of ``./build/dev bench``: the zipapp itself. Its size, its first run
(extraction + bytecode compilation), and the warm start-up of every entry point
(``cnivpc-ptp``/``-ipvlan``/``-ipam`` VERSION through the symlinks under ``env -i``, and the
fused ``cnivpc`` VERSION) against a bare ``/usr/bin/python3 -c pass``, with the
``-X importtime`` top offenders of one plugin's VERSION so a regression shows its culprit.
Then the same for every CPython 3.10-3.14 on this machine (the artifact runs on each; the
launcher is told which by CNIVPC_PYTHON): its own ``-c pass``, ``cnivpc-ptp`` VERSION through
the launcher, and the same exec'd as ``python -sSE cnivpc-ptp`` (no launcher), whose difference
is what the sh launcher costs. A version this machine lacks is a row saying so.

Runs are interleaved (bare, ptp, ipvlan, ..., bare, ...) so load from other processes hits all
alike; each child's CPU time comes from wait4(2), steadier than wall time on a busy machine.
Stdlib only; never imports cnivpc (it measures the artifact from outside).

    /usr/bin/python3 build/bench/startup.py --out F [--runs N] [--zipapp build/out/cnivpc]
"""

from __future__ import annotations

import argparse
import glob
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
# One artifact for 10 targets: pydantic-core's extension is ~2.2 MB compressed per target.
GOAL_SIZE_MB = 26.0
PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14")
FLAGS = ["-sSE"]  # what build/launcher.sh starts the interpreter with


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
    """The interpreter as the zipapp's launcher starts it here (PATH below has Debian's
    python3.11 only): ``-X importtime`` runs must start it exactly as exec does."""
    with zipapp.open("rb") as f:
        if not f.readline().startswith(b"#!/bin/sh"):
            raise SystemExit(f"bench: {zipapp} does not start with the sh launcher")
    return [PYTHON, *FLAGS]


def python_for(version: str) -> str | None:
    """CPython ``version`` here: ``python3.X`` on PATH (not a version manager's shim), else
    pyenv's newest build of it (as tests/support/zipapp.py finds them)."""
    for d in os.environ.get("PATH", "").split(os.pathsep):
        found = os.path.join(d, f"python{version}")
        if d and not d.rstrip("/").endswith("/shims") and os.path.isfile(found) \
                and os.access(found, os.X_OK):
            return found
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    hits = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"),
                  key=lambda p: [int(n) for n in p.split("/versions/")[1].split("/")[0]
                                 .split(".") if n.isdigit()])
    return hits[-1] if hits else None


def per_interpreter(bindir: Path, root: Path, runs: int) -> tuple[list[Row], dict[str, object]]:
    """Rows and data for every CPython 3.10-3.14: VERSION through the launcher over that
    interpreter's own ``-c pass``, and the launcher's own cost."""
    rows: list[Row] = []
    data: dict[str, object] = {}
    plugin = str(bindir / "cnivpc-ptp")
    for version in PYTHONS:
        py = python_for(version)
        if py is None:
            rows.append(row(f"CPython {version}: VERSION over -c pass", "NOT MEASURED: no "
                            f"CPython {version} on this machine", goal=f"<= +{GOAL_GAP_MS:g} ms",
                            met=False))
            data[version] = None
            continue
        env = ["env", "-i", PATH, f"SHIV_ROOT={root}", "CNI_COMMAND=VERSION",
               f"CNIVPC_PYTHON={py}"]
        commands = {"pass": [py, "-c", "pass"], "launcher": [*env, plugin],
                    "direct": [*env, py, *FLAGS, plugin]}
        for _ in range(3):  # warm-up: page cache, this interpreter's pycs in the extraction
            for cmd in commands.values():
                timed(cmd)
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
        for _ in range(runs):
            for name, cmd in commands.items():
                samples[name].append(timed(cmd))
        wall = {k: summarize([w for w, _ in v]) for k, v in samples.items()}
        cpu = {k: summarize([c for _, c in v]) for k, v in samples.items()}
        gap = wall["launcher"]["median"] - wall["pass"]["median"]
        cpu_gap = cpu["launcher"]["median"] - cpu["pass"]["median"]
        launcher = wall["launcher"]["median"] - wall["direct"]["median"]
        rows.append(row(f"CPython {version}: cnivpc-ptp VERSION ({py})", fmt(wall["launcher"]),
                        peer=fmt(wall["pass"]) + f" ({version} -c pass)",
                        ratio=f"{gap:+.1f} ms wall, {cpu_gap:+.1f} ms CPU; launcher "
                              f"{launcher:+.1f} ms", goal=f"<= +{GOAL_GAP_MS:g} ms",
                        met=gap <= GOAL_GAP_MS))
        data[version] = {"python": py, "wall_ms": wall, "cpu_ms": cpu, "gap_ms": gap,
                         "cpu_gap_ms": cpu_gap, "launcher_ms": launcher}
    # The launcher alone: the sh prologue's search (python3.14 ... 3.11 missed on a PATH of
    # four directories, python3.10 found) and its exec, of /bin/true instead of a Python.
    with tempfile.TemporaryDirectory(prefix="cnivpc-bench-launcher.") as fake:
        os.symlink("/bin/true", os.path.join(fake, "python3.10"))
        path = f"PATH=/nonexistent/a:/nonexistent/b:/nonexistent/c:{fake}"
        commands = {"true": ["env", "-i", path, "/bin/true"],
                    "search": ["env", "-i", path, str(bindir / "cnivpc-ptp")],
                    "override": ["env", "-i", path, "CNIVPC_PYTHON=/bin/true",
                                 str(bindir / "cnivpc-ptp")]}
        samples = {k: [] for k in commands}
        for _ in range(runs * 2):
            for name, cmd in commands.items():
                samples[name].append(timed(cmd))
    wall = {k: summarize([w for w, _ in v]) for k, v in samples.items()}
    for name, what in (("search", "PATH search"), ("override", "CNIVPC_PYTHON")):
        gap = wall[name]["median"] - wall["true"]["median"]
        rows.append(row(f"launcher alone ({what}), exec'ing /bin/true", fmt(wall[name]),
                        peer=fmt(wall["true"]) + " (env -i /bin/true)", ratio=f"{gap:+.1f} ms"))
    data["launcher"] = wall
    return rows, data


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
        more, per = per_interpreter(bindir, root, args.runs)
        rows += more
        data["interpreters"] = per
    write_section(args.out, "startup", "Exec start-up and the artifact", rows, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
