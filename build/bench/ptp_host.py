"""Section 2b of ``./build/dev bench``: the ptp plugin alone on the host kernel, ours
(``cnivpc-ptp`` through the zipapp symlink) against Debian's Go ``ptp`` from
containernetworking-plugins, ADD and DEL, interleaved in one run; plus the ``-X importtime``
picture of our ADD (modules imported, top offenders), the path every pod start pays.

Both run as a runtime runs them: exec'd in the node's netns with the CNI_* environment and the
config on stdin, ``ipMasq`` on (the production setting of examples/cnivpc.conflist). The two
are not the same work, and the table says so: ours is chained after IPAM+ipvlan and takes the
pod's address from ``prevResult`` (no IPAM exec), Debian's ptp runs its own ``host-local`` IPAM
(one more exec, ~3 ms) and numbers the veth. Needs root (network namespaces).

    /usr/bin/python3 build/bench/ptp_host.py --out F [--runs N] [--zipapp build/out/cnivpc]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import Row, fmt, ratio, row, summarize, write_section
from startup import importtime, interpreter, print_importtime, timed

REFERENCE = Path("/usr/lib/cni")
NODE, VPC = "cnbench-node", "cnbench-vpc"
NODE_IP, GATEWAY, POD_IP = "10.97.0.10", "10.97.0.1", "10.97.0.50"
GOAL_CPU = 3.0  # ptp ADD CPU against Debian's ptp + host-local


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def pod_netns(name: str) -> str:
    """A pod netns with an eth0 on the node's subnet: the ipvlan slave of the real chain
    (this kernel may have no ipvlan; a veth into the VPC namespace stands in for it)."""
    ip("netns", "add", name)
    ip("-n", name, "link", "set", "lo", "up")
    ip("link", "add", "eth0", "netns", name, "type", "veth", "peer", "name", f"v{name[-6:]}",
       "netns", VPC)
    ip("-n", name, "addr", "add", f"{POD_IP}/24", "dev", "eth0")
    ip("-n", name, "link", "set", "eth0", "up")
    return f"/var/run/netns/{name}"


def topology() -> None:
    for ns in (NODE, VPC):
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
    ip("link", "add", "eth0", "netns", NODE, "type", "veth", "peer", "name", "eni0", "netns", VPC)
    ip("-n", VPC, "addr", "add", f"{GATEWAY}/24", "dev", "eni0")
    ip("-n", VPC, "link", "set", "eni0", "up")
    ip("-n", NODE, "addr", "add", f"{NODE_IP}/24", "dev", "eth0")
    ip("-n", NODE, "link", "set", "eth0", "up")
    ip("-n", NODE, "route", "add", "default", "via", GATEWAY)


def teardown(names: list[str]) -> None:
    for ns in names:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "20")))
    parser.add_argument("--zipapp", type=Path, default=Path("build/out/cnivpc"))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("ptp_host: needs root (network namespaces)")
    if not (REFERENCE / "ptp").exists():
        raise SystemExit(f"ptp_host: no {REFERENCE}/ptp "
                         "(apt-get install containernetworking-plugins)")
    ours_bin = args.zipapp.resolve().parent / "bin" / "cnivpc-ptp"
    pods = ["cnbench-pod-a", "cnbench-pod-b"]
    teardown([NODE, VPC, *pods])
    with tempfile.TemporaryDirectory(prefix="cnivpc-bench-ptp.") as tmp:
        try:
            topology()
            ours_pod, their_pod = (pod_netns(p) for p in pods)
            ours_conf = json.dumps({
                "cniVersion": "1.0.0", "name": "bench", "type": "cnivpc-ptp",
                "hostInterface": "eth0", "containerInterface": "eth1", "ipMasq": True,
                "logFile": f"{tmp}/cnivpc.log",
                "prevResult": {"cniVersion": "1.0.0",
                               "interfaces": [{"name": "eth0", "sandbox": ours_pod}],
                               "ips": [{"address": f"{POD_IP}/24", "interface": 0}]}}).encode()
            their_conf = json.dumps({
                "cniVersion": "1.0.0", "name": "bench-ref", "type": "ptp", "ipMasq": True,
                "ipam": {"type": "host-local", "dataDir": f"{tmp}/host-local",
                         "ranges": [[{"subnet": "10.98.0.0/24"}]],
                         "routes": [{"dst": "0.0.0.0/0"}]}}).encode()

            def env(command: str, netns: str, ifname: str) -> dict[str, str]:
                return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command,
                        "CNI_CONTAINERID": "bench", "CNI_NETNS": netns, "CNI_IFNAME": ifname,
                        "CNI_PATH": str(REFERENCE)}

            def run(binary: Path, command: str, netns: str, ifname: str,
                    conf: bytes) -> tuple[float, float]:
                return timed(["ip", "netns", "exec", NODE, str(binary)],
                             env=env(command, netns, ifname), stdin=conf)

            legs = {"ours": (ours_bin, ours_pod, "eth0", ours_conf),
                    "theirs": (REFERENCE / "ptp", their_pod, "eth1", their_conf)}
            samples: dict[str, list[tuple[float, float]]] = {
                f"{who} {cmd}": [] for who in legs for cmd in ("ADD", "DEL")}
            for i in range(args.runs + 2):  # two warm-up rounds, not kept
                for who, (binary, netns, ifname, conf) in legs.items():
                    for cmd in ("ADD", "DEL"):
                        sample = run(binary, cmd, netns, ifname, conf)
                        if i >= 2:
                            samples[f"{who} {cmd}"].append(sample)
            # One ADD under -X importtime: what the pod-start path imports.
            count, top = importtime(
                ["ip", "netns", "exec", NODE, *interpreter(args.zipapp), "-X", "importtime",
                 str(ours_bin)],
                env=env("ADD", ours_pod, "eth0"), stdin=ours_conf.decode())
            run(ours_bin, "DEL", ours_pod, "eth0", ours_conf)
        finally:
            teardown([NODE, VPC, *pods])
    print_importtime("-X importtime, cnivpc-ptp ADD", count, top)
    wall = {k: summarize([w for w, _ in v]) for k, v in samples.items()}
    cpu = {k: summarize([c for _, c in v]) for k, v in samples.items()}
    rows: list[Row] = []
    for cmd in ("ADD", "DEL"):
        ours, theirs = wall[f"ours {cmd}"], wall[f"theirs {cmd}"]
        rows.append(row(f"ptp alone {cmd}, host kernel (Go: ptp + host-local)",
                        f"{fmt(ours)} cpu {cpu[f'ours {cmd}']['median']:.0f}",
                        f"{fmt(theirs)} cpu {cpu[f'theirs {cmd}']['median']:.0f}",
                        ratio(ours["median"], theirs["median"])))
    for cmd in ("ADD", "DEL"):
        # CPU of the exec's whole process tree (iptables execs included), wait4's rusage.
        ours, theirs = cpu[f"ours {cmd}"], cpu[f"theirs {cmd}"]
        goal = met = None
        if cmd == "ADD":
            goal, met = f"<= {GOAL_CPU:g}x Go", ours["median"] <= GOAL_CPU * theirs["median"]
        rows.append(row(f"CPU per ptp {cmd}, host kernel (process tree)", fmt(ours),
                        fmt(theirs), ratio(ours["median"], theirs["median"]), goal, met))
    rows.append(row("cnivpc-ptp ADD: modules imported", str(count)))
    write_section(args.out, "ptp_host", "ptp alone on the host kernel vs Debian's Go ptp", rows,
                  {"runs": args.runs, "wall_ms": wall, "cpu_ms": cpu,
                   "importtime_add": {"modules": count, "top": top}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
