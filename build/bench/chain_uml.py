"""Section 2 of ``./build/dev bench``: warm-path ADD and DEL of the whole chain on a real
kernel with ipvlan (user-mode-linux here: the host kernel has none), as a runtime runs it.

One lab node (strict EC2 + IMDSv2, cnivpc/lab), the built zipapp through its ``cnivpc-*``
symlinks, examples/cnivpc.conflist adapted by the lab (``lab_conflist``) with
``reuseIPWait: 0`` so a freed IP is the next pod's: after ``cnivpc ipam warm`` and two warm-up
cycles every measured ADD finds its IP free on an attached ENI and makes no EC2 call (the EC2
calls of the measured rounds, background refills included, are counted from the plugins' log
and reported). Four legs, interleaved round by round:

* cnivpc chained: cnivpc-ipam -> cnivpc-ipvlan -> cnivpc-ptp (three processes);
* cnivpc fused: one entry of type ``cnivpc`` (one process);
* Debian's containernetworking-plugins (Go) host-local -> ipvlan -> ptp, ``ipMasq`` on for ptp
  (the same function as ours: pod egress SNATed) and off (the least the Go chain can do).

Each figure is the wall time of the runtime's execs (``ip netns exec <node> env -i <plugin>``,
the same wrapper for every leg). Run on the host, it re-executes itself inside UML unless the
host kernel has ipvlan.

    .venv/bin/python build/bench/chain_uml.py --out F [--runs N] [--zipapp build/out/cnivpc]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Row, fmt, ratio, row, summarize, write_section

REPO = Path(__file__).resolve().parents[2]
REFERENCE = Path("/usr/lib/cni")
GOAL_RATIO = 2.0  # chained ADD against the Go chain (ipMasq on): wall and CPU
GOAL_FUSED_CPU = 1.0  # fused ADD CPU against the Go chain (ipMasq on)
LEGS = ("chained", "fused", "go-masq", "go")


def host_has_ipvlan() -> bool:
    ns = f"cnbench-probe-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", ns], capture_output=True).returncode:
        return False
    try:
        return all(subprocess.run(["ip", "-n", ns, "link", "add", *args],
                                  capture_output=True).returncode == 0
                   for args in (["p0", "type", "veth", "peer", "name", "p1"],
                                ["link", "p0", "name", "p2", "type", "ipvlan", "mode", "l2"]))
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def in_uml(argv: list[str]) -> int:
    """Run this script again inside user-mode-linux, the zipapp extracted beforehand on the
    host (the first exec inside UML would otherwise pay extraction and compilation)."""
    shiv_root = REPO / "build" / "work" / "shiv-uml"
    zipapp = Path(argv[argv.index("--zipapp") + 1]) if "--zipapp" in argv else \
        REPO / "build" / "out" / "cnivpc"
    subprocess.run([str(zipapp), "version"], env={**os.environ, "SHIV_ROOT": str(shiv_root)},
                   check=True, capture_output=True)
    return subprocess.run(
        [str(REPO / "build" / "uml" / "run-in-uml"), "--timing", "-t", "1800", "-e",
         f"CNIVPC_SHIV_ROOT={shiv_root}", "--", sys.executable, __file__, "--inside", *argv],
        cwd=REPO).returncode


def measure(runs: int, zipapp: Path, work: Path) -> dict[str, Any]:
    from cnivpc.lab.lab import Lab
    from cnivpc.lab.runtime import Runtime, fused_conflist, lab_conflist, logged_ec2_calls

    def ec2_calls(log: Path) -> int:
        return sum(logged_ec2_calls(log).values())

    bin_dir = work / "bin"
    bin_dir.mkdir()
    (bin_dir / "cnivpc").symlink_to(zipapp.resolve())
    for name in ("cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp"):
        (bin_dir / name).symlink_to("cnivpc")
    env = {"SHIV_ROOT": os.environ.get("CNIVPC_SHIV_ROOT") or str(work / "shiv"),
           "AWS_ENDPOINT_URL_EC2": "http://169.254.169.254:8773"}
    started = time.monotonic()
    with Lab(nodes=1, instance_type="c5.xlarge") as lab:  # room for the warm pool
        node = lab.node(0)
        conf = lab_conflist(work, 0)
        conf["plugins"][0]["reuseIPWait"] = 0
        chained = Runtime(bin_dir, conf, node.netns, env)
        fused = Runtime(bin_dir, fused_conflist(conf), node.netns, env)
        ours_ns = f"/var/run/netns/{lab.fabric.add_netns('bench-ours')}"
        go_ns = f"/var/run/netns/{lab.fabric.add_netns('bench-go')}"
        # Warm-up: the node warmed as at boot (cnivpc ipam warm), one cycle of each mode (the
        # first ADD may still start background refills), then warm again, which waits for
        # that work: the measured rounds find the pool settled and every IP on an attached ENI.
        conflist = work / "10-cnivpc.conflist"
        conflist.write_text(json.dumps(conf))

        def warm() -> None:
            subprocess.run(["ip", "netns", "exec", node.netns, "env", "-i",
                            *(f"{k}={v}" for k, v in env.items()),
                            "PATH=/usr/sbin:/usr/bin:/sbin:/bin", str(bin_dir / "cnivpc"),
                            "ipam", "warm", "--conf", str(conflist)],
                           check=True, capture_output=True, timeout=300)

        warm()
        for rt in (chained, fused, chained, fused):
            rt.add("warm", ours_ns)
            rt.delete("warm", ours_ns)
        warm()
        lab_ready = time.monotonic() - started
        links = json.loads(subprocess.run(["ip", "-n", node.netns, "-j", "link", "show"],
                                          capture_output=True, text=True, check=True).stdout)
        master = sorted(x["ifname"] for x in links if re.fullmatch(r"eth[1-9]\d*", x["ifname"]))[0]

        def go_chain(masq: bool) -> dict[str, Any]:
            tag = "m" if masq else "n"
            return {"cniVersion": "1.0.0", "name": f"go-{tag}", "plugins": [
                {"type": "ipvlan", "master": master, "mode": "l2",
                 "ipam": {"type": "host-local", "dataDir": str(work / f"hl-{tag}1"),
                          "ranges": [[{"subnet": "10.0.240.0/24"}]]}},
                {"type": "ptp", "ipMasq": masq,
                 "ipam": {"type": "host-local", "dataDir": str(work / f"hl-{tag}2"),
                          "ranges": [[{"subnet": "10.0.241.0/24"}]]}}]}

        go = {True: Runtime(REFERENCE, go_chain(True), node.netns),
              False: Runtime(REFERENCE, go_chain(False), node.netns)}

        def go_run(masq: bool, command: str) -> float:
            # Each Go plugin runs its own host-local; ptp makes the pod's eth1, as ours does.
            rt = go[masq]
            ipvlan, ptp = rt.conflist["plugins"]
            order = [(ipvlan, "eth0"), (ptp, "eth1")]
            begun = time.monotonic()
            for plugin, ifname in (order if command == "ADD" else reversed(order)):
                rt._exec(plugin, command, "bench", go_ns, None, ifname=ifname)
            return time.monotonic() - begun

        def ours_run(rt: Runtime, command: str) -> float:
            begun = time.monotonic()
            (rt.add if command == "ADD" else rt.delete)("bench", ours_ns)
            return time.monotonic() - begun

        legs = {"chained": lambda c: ours_run(chained, c), "fused": lambda c: ours_run(fused, c),
                "go-masq": lambda c: go_run(True, c), "go": lambda c: go_run(False, c)}
        samples: dict[str, list[float]] = {f"{leg} {c}": [] for leg in LEGS
                                           for c in ("ADD", "DEL")}
        cpu: dict[str, list[float]] = {k: [] for k in samples}
        per_plugin: dict[str, list[float]] = {}
        per_plugin_cpu: dict[str, list[float]] = {}

        def children_cpu() -> float:
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            return usage.ru_utime + usage.ru_stime
        log = work / "cnivpc0.log"
        calls_before = ec2_calls(log)
        for i in range(runs):
            for leg, fn in legs.items():
                for command in ("ADD", "DEL"):
                    chained.timings.clear()
                    chained.cpu.clear()
                    # CPU of the whole process tree of the leg's execs (every exec is waited
                    # for; the detached after-answer child is not, and not counted).
                    before = children_cpu()
                    samples[f"{leg} {command}"].append(fn(command) * 1000)
                    cpu[f"{leg} {command}"].append((children_cpu() - before) * 1000)
                    for plugin, cmd, took in chained.timings:
                        per_plugin.setdefault(f"{plugin} {cmd}", []).append(took * 1000)
                    for plugin, cmd, took in chained.cpu:
                        per_plugin_cpu.setdefault(f"{plugin} {cmd}", []).append(took * 1000)
            print(f"chain_uml: round {i + 1}/{runs}: " + ", ".join(
                f"{k} {v[-1]:.0f}" for k, v in samples.items()), file=sys.stderr)
        measured_calls = ec2_calls(log) - calls_before
    return {"samples": samples, "cpu": cpu, "per_plugin": per_plugin,
            "per_plugin_cpu": per_plugin_cpu, "ec2_calls_measured": measured_calls,
            "lab_ready_s": lab_ready, "master": master}


def report(raw: dict[str, Any], runs: int, out: Path) -> None:
    s = {k: summarize(v) for k, v in raw["samples"].items()}
    rows: list[Row] = []
    for command in ("ADD", "DEL"):
        go_masq, go = s[f"go-masq {command}"], s[f"go {command}"]
        for leg, label in (("chained", "chained ipam->ipvlan->ptp"), ("fused", "fused (one exec)")):
            ours = s[f"{leg} {command}"]
            goal = met = None
            if command == "ADD" and leg == "chained":
                goal = f"<= {GOAL_RATIO:g}x Go"
                met = ours["median"] <= GOAL_RATIO * go_masq["median"]
            rows.append(row(f"warm {command}, {label}, UML", fmt(ours, digits=0),
                            f"{fmt(go_masq, digits=0)} Go, ipMasq",
                            ratio(ours["median"], go_masq["median"]), goal, met))
        rows.append(row(f"warm {command}, Go chain without ipMasq, UML", "",
                        fmt(go, digits=0), None))
    c = {k: summarize(v) for k, v in raw["cpu"].items()}
    for command in ("ADD", "DEL"):
        go_masq = c[f"go-masq {command}"]
        for leg, label, limit in (("chained", "chained", GOAL_RATIO),
                                  ("fused", "fused", GOAL_FUSED_CPU)):
            ours = c[f"{leg} {command}"]
            goal = met = None
            if command == "ADD":
                goal = f"<= {limit:g}x Go"
                met = ours["median"] <= limit * go_masq["median"]
            rows.append(row(f"CPU per warm {command}, {label}, UML (process tree)",
                            fmt(ours, digits=0), f"{fmt(go_masq, digits=0)} Go, ipMasq",
                            ratio(ours["median"], go_masq["median"]), goal, met))
    per_plugin = {k: summarize(v) for k, v in raw["per_plugin"].items()}
    per_plugin_cpu = {k: summarize(v) for k, v in raw["per_plugin_cpu"].items()}
    rows.append(row("warm chained ADD by plugin, UML", ", ".join(
        f"{k.split()[0].removeprefix('cnivpc-')} {v['median']:.0f}"
        for k, v in per_plugin.items() if k.endswith("ADD")) + " ms"))
    rows.append(row("CPU per warm chained ADD by plugin, UML", ", ".join(
        f"{k.split()[0].removeprefix('cnivpc-')} {v['median']:.0f}"
        for k, v in per_plugin_cpu.items() if k.endswith("ADD")) + " ms"))
    rows.append(row("EC2 calls during the measured rounds", str(raw["ec2_calls_measured"]),
                    goal="0 (warm path)", met=raw["ec2_calls_measured"] == 0))
    write_section(out, "chain_uml", "Warm-path chain ADD/DEL in user-mode-linux vs Debian's Go "
                  "plugins", rows, {"runs": runs, "ms": s, "cpu_ms": c,
                                    "per_plugin_ms": per_plugin,
                                    "per_plugin_cpu_ms": per_plugin_cpu,
                                    "ec2_calls_measured": raw["ec2_calls_measured"],
                                    "lab_ready_s": raw["lab_ready_s"], "master": raw["master"]})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_CHAIN_RUNS", "5")))
    parser.add_argument("--zipapp", type=Path, default=REPO / "build" / "out" / "cnivpc")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("chain_uml: needs root (network namespaces)")
    if not (REFERENCE / "ipvlan").exists():
        raise SystemExit(f"chain_uml: no {REFERENCE}/ipvlan "
                         "(apt-get install containernetworking-plugins)")
    if not args.inside and not host_has_ipvlan():
        return in_uml(argv)
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="cnivpc-bench-chain.") as tmp:
        raw = measure(args.runs, args.zipapp, Path(tmp))
    report(raw, args.runs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
