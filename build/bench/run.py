"""``./build/dev bench``: every benchmark section in one run, one table.

Runs each section (a script of this directory, see common.py) as its own process, in order:
start-up and the artifact (``startup``), ptp alone on the host kernel (``ptp_host``), EC2
economy and the 110-pod burst in the lab (``ec2``), the warm chain in user-mode-linux
(``chain_uml``). Each writes ``build/out/bench/<section>.json``; this script merges them into
``build/out/bench.json``, prints the table and writes it as Markdown to
``build/out/bench.md`` (what the README's Performance section shows).

    ./build/dev bench [--only startup,ptp_host,...] [--quick] [--out build/out]

``--quick`` runs every section with the fewest repetitions that still exercise all of it
(the test suite's check that the harness works); its figures mean nothing.
Stdlib only: the sections that need the lab run under the venv's Python (``--venv-python``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"

# section -> (interpreter: "system" or "venv", normal arguments, --quick arguments)
SECTIONS: dict[str, tuple[str, list[str], list[str]]] = {
    "startup": ("system", [], ["--runs", "3"]),
    "ptp_host": ("system", [], ["--runs", "2"]),
    "ec2": ("venv", [], ["--pods", "4", "--concurrency", "2", "--latency", "zero",
                         "--instance-type", "c5.xlarge"]),
    "chain_uml": ("venv", [], ["--runs", "1"]),
}
COLUMNS = ("figure", "cnivpc", "peer", "ratio / gap", "goal", "")


def render(sections: list[dict[str, Any]]) -> str:
    """The merged table as GitHub Markdown: one block of rows per section."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for doc in sections:
        lines.append(f"| **{doc['title']}** |" + " |" * (len(COLUMNS) - 1))
        for r in doc["rows"]:
            mark = {True: "met", False: "MISSED", None: ""}[r["met"]]
            cells = [r["what"], r["ours"], r["peer"] or "", r["ratio"] or "", r["goal"] or "",
                     mark]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help="comma-separated sections (default: all)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "out")
    parser.add_argument("--zipapp", type=Path, default=REPO / "build" / "out" / "cnivpc")
    parser.add_argument("--venv-python", default=str(REPO / ".venv" / "bin" / "python"))
    args = parser.parse_args(argv)
    wanted = [s for s in args.only.split(",") if s]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    outdir = args.out / "bench"
    outdir.mkdir(parents=True, exist_ok=True)
    docs, failed = [], []
    started = time.monotonic()
    for name in wanted:
        interpreter, normal, quick = SECTIONS[name]
        python = SYSTEM_PYTHON if interpreter == "system" else args.venv_python
        out = outdir / f"{name}.json"
        out.unlink(missing_ok=True)
        cmd = [python, str(HERE / f"{name}.py"), "--out", str(out), "--zipapp",
               str(args.zipapp), *(quick if args.quick else normal)]
        print(f"== bench {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
        begun = time.monotonic()
        rc = subprocess.run(cmd, cwd=REPO).returncode
        took = time.monotonic() - begun
        if rc != 0 or not out.exists():
            failed.append(name)
            print(f"== bench {name}: FAILED (exit {rc}) after {took:.0f} s", file=sys.stderr)
            continue
        doc = json.loads(out.read_text())
        doc["seconds"] = round(took, 1)
        docs.append(doc)
        print(f"== bench {name}: {took:.0f} s", file=sys.stderr, flush=True)
    table = render(docs)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine = docs[0]["machine"] if docs else {}
    header = (f"cnivpc bench, {when}; {machine.get('cpus')} CPUs ({machine.get('cpu')}), "
              f"kernel {machine.get('kernel')}, load {machine.get('load1')} at start; "
              f"{time.monotonic() - started:.0f} s" + (" (--quick: figures meaningless)"
                                                       if args.quick else ""))
    (args.out / "bench.md").write_text(header + "\n\n" + table + "\n")
    (args.out / "bench.json").write_text(json.dumps(
        {"when": when, "quick": args.quick, "failed": failed, "sections": docs}, indent=2) + "\n")
    print("\n" + header + "\n\n" + table)
    if failed:
        print(f"\nbench: sections failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
