"""``python -m cnivpc.lab chaos``: a seeded chaos run of the IPAM on a multi-node lab.

Random ADD / DEL / CHECK / GC / ``ipam warm`` steps, each exec'ing the built zipapp in a node's
netns as a runtime does (``env -i``, the node's own boot id), with random EC2 faults armed
before some steps (5xx and throttling bursts, lost responses of every mutating call, latency,
metadata lag) and SIGKILLs of ADDs at an EC2 step (the step's answer is held by the lab, the
plugin's process group is killed once the lab has counted the call). After every step:
``cnivpc ipam audit`` on the node (store against EC2 and the kernel: goal, no violation), and
across nodes, no IP held by two of them. An ENI left without DeleteOnTermination (its Modify
failed under the step's fault) is marked by the next maintenance
by design: when the step's fault hit ModifyNetworkInterfaceAttribute, it gets one ``ipam warm``
before it counts (``settled`` in the report).

    python -m cnivpc.lab chaos --zipapp build/out/cnivpc [--seed S] [--ops N] [--nodes N]
        [--prefixes] [--family ipv4|dual-stack|ipv6]

``--family`` runs the IPAM dual-stack (``ipv6``) or with IPv6-only pods (``ipv4: false``); the
cross-node check then covers the pods' IPv6 addresses too. Outside IPv6-only runs, some ADDs ask
for an address by name (CNI_ARGS ``IP=``): one a pod of the node had before, or a free one of
its pool.

Prints one JSON line (seed, operations, faults, kills, violations, failures, seconds) and exits
1 when anything was wrong, after printing what and the seed that replays it. A step's outcome
is a failure when a DEL, CHECK or GC fails, or an ADD fails with other than code 11 (try
again) or 100 (node full; 101 for an address asked for by name that cannot be had), or the
plugin prints something that is not CNI JSON.

Must not be imported by plugin code; never in the zipapp.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .runtime import tagged_processes

MUTATING = ("CreateNetworkInterface", "AttachNetworkInterface",
            "ModifyNetworkInterfaceAttribute", "AssignPrivateIpAddresses",
            "UnassignPrivateIpAddresses", "DeleteNetworkInterface", "DetachNetworkInterface",
            "AssignIpv6Addresses")
KILLABLE = ("CreateNetworkInterface", "AttachNetworkInterface",
            "ModifyNetworkInterfaceAttribute", "AssignPrivateIpAddresses")
NODE_EC2_URL = "http://169.254.169.254:8773"
TAG = "CNIVPC_CHAOS_NODE"  # in every process a step starts (and its detached children)


@dataclass
class Report:
    seed: int
    operations: int = 0
    faults: int = 0
    kills: int = 0
    settled: int = 0  # unmarked ENIs the next maintenance (an ipam warm) marked
    violations: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> dict[str, Any]:
        return {"seed": self.seed, "operations": self.operations, "faults": self.faults,
                "kills": self.kills, "settled": self.settled,
                "violations": len(self.violations),
                "failures": len(self.failures), "seconds": round(self.seconds, 1)}


def _settles(violation: dict[str, Any]) -> bool:
    """A violation maintenance repairs by design: an ENI not yet DeleteOnTermination."""
    return violation.get("invariant") == "eni-ready" and \
        "DeleteOnTermination" in str(violation.get("detail", ""))


class Node:
    """One lab node as the runtime and the operator see it: the zipapp run in its netns."""

    def __init__(self, lab: Any, node: Any, zipapp: Path, shiv_root: Path, workdir: Path,
                 conf: dict[str, Any]) -> None:
        self.lab, self.node, self.zipapp, self.shiv_root = lab, node, zipapp, shiv_root
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = {"cniVersion": "1.1.0", "name": "cnivpc", "type": "cnivpc-ipam",
                     "dataDir": str(workdir / "state"), "lockPath": str(workdir / "lock"),
                     "logFile": str(workdir / "cnivpc.log"), "logLevel": "info", **conf}
        self.conflist = workdir / "10-cnivpc.conflist"
        entry = {k: v for k, v in self.conf.items() if k not in ("cniVersion", "name")}
        self.conflist.write_text(json.dumps({"cniVersion": "1.1.0", "name": "cnivpc",
                                             "plugins": [entry]}))
        self.live: dict[str, dict[str, Any]] = {}  # container id -> its ADD result
        self.freed: list[str] = []  # IPv4s pods of this node had, oldest first

    def argv(self, args: list[str], env: dict[str, str]) -> list[str]:
        boot = self.lab.boot_id_file(self.node.instance_id)
        full = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SHIV_ROOT": str(self.shiv_root),
                "AWS_ENDPOINT_URL_EC2": NODE_EC2_URL, TAG: str(self.workdir), **env}
        return ["ip", "netns", "exec", self.node.netns, "sh", "-c",
                'mount --bind "$0" /proc/sys/kernel/random/boot_id && exec "$@"', str(boot),
                "env", "-i", *(f"{k}={v}" for k, v in full.items()), str(self.zipapp), *args]

    def cni_env(self, command: str, cid: str = "", want: str = "") -> dict[str, str]:
        env = {"CNI_COMMAND": command, "CNI_PATH": "/opt/cni/bin"}
        if cid:
            env.update(CNI_CONTAINERID=cid, CNI_IFNAME="eth0", CNI_NETNS="/proc/1/ns/net",
                       CNI_ARGS=f"IgnoreUnknown=1;K8S_POD_NAMESPACE=chaos;K8S_POD_NAME={cid}"
                                + (f";IP={want}" if want else ""))
        return env

    def plugin(self, command: str, cid: str = "", extra: dict[str, Any] | None = None,
               want: str = "") -> tuple[int, dict[str, Any]]:
        proc = subprocess.run(self.argv(["ipam"], self.cni_env(command, cid, want)),
                              input=json.dumps({**self.conf, **(extra or {})}), capture_output=True,
                              text=True, timeout=180)
        try:
            doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
        except ValueError:
            doc = {"not-json": proc.stdout[:200]}
        return proc.returncode, doc

    def start_add(self, cid: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(self.argv(["ipam"], self.cni_env("ADD", cid)),
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(self.conf))
        proc.stdin.close()
        return proc

    def start_cli(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv([*args, "--conf", str(self.conflist)], {}),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, text=True, start_new_session=True)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv([*args, "--conf", str(self.conflist)], {}),
                              capture_output=True, text=True, timeout=180)

    def settle(self, timeout: float = 90.0) -> bool:
        """Wait for this node's background refills (detached children) to end."""
        deadline = time.monotonic() + timeout
        while tagged_processes(TAG, str(self.workdir)):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def held_ips(self) -> set[str]:
        """Every VPC address a pod of this node holds: IPv4, dual-stack IPv6, IPv6-only."""
        path = self.workdir / "state" / "ipam.db"
        if not path.exists():
            return set()
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT ip, COALESCE(ipv6, '') FROM ips "
                                "WHERE container_id IS NOT NULL").fetchall()
            v6only = conn.execute("SELECT ipv6 FROM v6leases").fetchall()
        return {str(a) for row in rows for a in row if a} | {str(r[0]) for r in v6only}

    def free_ips(self) -> list[str]:
        path = self.workdir / "state" / "ipam.db"
        if not path.exists():
            return []
        with sqlite3.connect(path) as conn:
            return [str(r[0]) for r in conn.execute(
                "SELECT ip FROM ips WHERE container_id IS NULL ORDER BY ip")]


class Chaos:
    def __init__(self, lab: Any, nodes: list[Node], rng: random.Random, report: Report) -> None:
        self.lab, self.nodes, self.rng, self.report = lab, nodes, rng, report
        self.serial = 0

    def calls(self, action: str) -> int:
        snap = self.lab.ec2.state.calls.snapshot()
        return sum(int(per.get(action, {}).get("calls", 0)) for per in snap.values())

    def arm_fault(self) -> str:
        faults = self.lab.ec2.control.faults
        kind = self.rng.choice(["fail", "throttle", "lost", "lag"])
        action = self.rng.choice(MUTATING)
        if kind == "fail":
            faults.fail_next(action, self.rng.randint(1, 3), status=self.rng.choice([500, 503]))
        elif kind == "throttle":
            faults.throttle_next("*", self.rng.randint(1, 3))
        elif kind == "lost":
            faults.lose_response_next(action, drop=True)
        else:
            self.lab.imds.propagation.lag = self.rng.choice([0.0, 1.0, 3.0])
            action = f"lag {self.lab.imds.propagation.lag}"
        self.report.faults += 1
        return f"{kind} {action}"

    def new_cid(self) -> str:
        self.serial += 1
        return f"c{self.serial:05d}"

    def step(self, n: int) -> str:
        node = self.rng.choice(self.nodes)
        what = self.rng.choices(["add", "del", "check", "gc", "warm", "kill", "add-ip"],
                                weights=[40, 25, 10, 8, 7, 10,
                                         6 if node.conf.get("ipv4", True) else 0])[0]
        fault = self.arm_fault() if self.rng.random() < 0.25 else ""
        label = f"step {n} on {node.node.name}: {what}" + (f" with {fault}" if fault else "")
        if what == "add" or (what in ("del", "check") and not node.live):
            repeat = node.live and self.rng.random() < 0.2
            cid = self.rng.choice(sorted(node.live)) if repeat else self.new_cid()
            rc, doc = node.plugin("ADD", cid)
            if rc == 0 and "ips" in doc:
                node.live[cid] = doc
            elif doc.get("code") not in (11, 100):
                self.report.failures.append(f"{label}: ADD {cid} -> {rc} {doc}")
        elif what == "add-ip":
            # An address by name: one a pod of the node had (a restart), or a free one.
            choices = node.freed[-5:] + node.free_ips()[:5]
            want = self.rng.choice(choices) if choices else ""
            cid = self.new_cid()
            rc, doc = node.plugin("ADD", cid, want=want)
            got = doc.get("ips", [{}])[0].get("address", "").split("/")[0]
            if rc == 0 and "ips" in doc:
                node.live[cid] = doc
                if want and got != want:
                    self.report.violations.append(f"{label}: asked for {want}, got {got}")
            elif doc.get("code") not in (11, 100, 101):
                self.report.failures.append(f"{label}: ADD {cid} IP={want} -> {rc} {doc}")
        elif what == "del":
            cid = self.rng.choice(sorted(node.live))
            rc, doc = node.plugin("DEL", cid, {"prevResult": node.live[cid]})
            node.freed += [i["address"].split("/")[0] for i in node.live.pop(cid)["ips"]
                           if ":" not in i["address"]]
            if rc != 0:
                self.report.failures.append(f"{label}: DEL {cid} -> {rc} {doc}")
        elif what == "check":
            cid = self.rng.choice(sorted(node.live))
            rc, doc = node.plugin("CHECK", cid, {"prevResult": node.live[cid]})
            if rc != 0:
                self.report.failures.append(f"{label}: CHECK {cid} -> {rc} {doc}")
        elif what == "gc":
            valid = [{"containerID": c, "ifname": "eth0"} for c in sorted(node.live)]
            rc, doc = node.plugin("GC", extra={"cni.dev/valid-attachments": valid})
            if rc != 0:
                self.report.failures.append(f"{label}: GC -> {rc} {doc}")
        elif what == "warm":
            node.cli("ipam", "warm")  # may fail under faults (exit 1): that is its contract
        else:
            label += f" ({self.kill_an_add(node, label)})"
        self.lab.ec2.control.faults.clear()
        self.lab.imds.propagation.lag = 0.0
        return label

    def kill_an_add(self, node: Node, label: str) -> str:
        """SIGKILL a process of the IPAM while EC2 holds the answer of one of its calls: an ADD
        (when the pool is empty it does EC2 work), ``ipam grow`` (an Assign) or ``ipam
        new-eni`` (Create, Attach, Modify). Then what follows on a node: the ADD again (the
        runtime retries), which also reconciles (``reconcileInterval`` 0)."""
        mode = self.rng.choice(["add", "grow", "new-eni"])
        action = {"add": self.rng.choice(KILLABLE), "grow": "AssignPrivateIpAddresses",
                  "new-eni": self.rng.choice(KILLABLE[:3])}[mode]
        before = self.calls(action)
        self.lab.ec2.control.faults.lose_response_next(action, hold=120)
        cid = self.new_cid()
        proc = node.start_add(cid) if mode == "add" else node.start_cli(
            "ipam", *(["grow", "--count", "2"] if mode == "grow" else ["new-eni", "--count", "3"]))
        deadline = time.monotonic() + 30
        while self.calls(action) <= before and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            self.report.kills += 1
        self.lab.ec2.control.faults.clear()  # releases the held answer
        rc, doc = node.plugin("ADD", cid)
        if rc == 0 and "ips" in doc:
            node.live[cid] = doc
        elif doc.get("code") not in (11, 100):
            self.report.failures.append(f"{label} ({mode} killed in {action}): the ADD after "
                                        f"it {cid} -> {rc} {doc}")
        return f"{mode} killed in {action}"

    def audit(self, label: str) -> None:
        for node in self.nodes:
            if not node.settle():
                self.report.failures.append(f"{label}: a background refill on "
                                            f"{node.node.name} outlived 90 s")
            proc = node.cli("ipam", "audit", "--json")
            if proc.returncode == 4:
                continue  # no state on this node yet
            try:
                found = json.loads(proc.stdout)["violations"]
            except (ValueError, KeyError):
                self.report.failures.append(f"{label}: audit on {node.node.name} -> "
                                            f"{proc.returncode} {proc.stderr[-300:]}")
                continue
            if found and "ModifyNetworkInterfaceAttribute" in label.partition(" with ")[2] \
                    and all(_settles(v) for v in found):
                # An unmarked ENI whose Modify failed under this step's fault is retried by the
                # next refill, warm or gc: one warm, then the audit again. What is still there
                # is a violation (and without such a fault, an unmarked ENI is one at once).
                node.cli("ipam", "warm")
                self.report.settled += len(found)
                proc = node.cli("ipam", "audit", "--json")
                found = json.loads(proc.stdout)["violations"] if proc.stdout.strip() else []
            self.report.violations += [f"{label}: {node.node.name}: {v}" for v in found]
        seen: dict[str, str] = {}
        for node in self.nodes:
            for ip in node.held_ips():
                if ip in seen:
                    self.report.violations.append(f"{label}: {ip} held on {seen[ip]} and "
                                                  f"{node.node.name}")
                seen[ip] = node.node.name


def run(zipapp: Path, *, seed: int, ops: int, nodes: int, instance_type: str,
        workdir: Path, audit_every: int = 1, shiv_root: Path | None = None,
        prefixes: bool = False, family: str = "ipv4") -> Report:
    from .lab import Lab

    rng = random.Random(seed)
    report = Report(seed)
    started = time.monotonic()
    shiv_root = shiv_root or workdir / "shiv-root"
    with Lab(nodes=nodes, instance_type=instance_type, latency="zero") as lab:
        conf = {"warmIPTarget": rng.choice([0, 3, 8]), "ipBatchSize": rng.choice([0, 1, 3]),
                "maxFreeIPs": rng.choice([-1, 0, 4]), "reconcileInterval": 0, "timeout": 30}
        if prefixes:
            # Prefix delegation: batches of prefixes, and GCs that give idle ones back whole.
            conf.update(ipv4Prefixes=True, ipBatchSize=rng.choice([0, 1, 2]),
                        freeIPMaxAge=rng.choice([0, 1]),
                        warmPrefixTarget=rng.choice([0, 1]))
        if family in ("dual-stack", "ipv6"):
            conf["ipv6"] = True
        if family == "ipv6":
            conf["ipv4"] = False
            conf.pop("ipv4Prefixes", None)
        members = [Node(lab, lab.node(i), zipapp, shiv_root, workdir / f"node{i}", conf)
                   for i in range(nodes)]
        chaos = Chaos(lab, members, rng, report)
        for n in range(1, ops + 1):
            label = chaos.step(n)
            report.operations += 1
            if n % audit_every == 0 or n == ops:
                chaos.audit(label)
            if report.violations or report.failures:
                break
    report.seconds = time.monotonic() - started
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnivpc.lab chaos",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--zipapp", type=Path, required=True, help="the built zipapp")
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: random)")
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--instance-type", default="c5.xlarge")
    parser.add_argument("--audit-every", type=int, default=1)
    parser.add_argument("--prefixes", action="store_true",
                        help="the IPAM with prefix delegation (ipv4Prefixes; a Nitro type)")
    parser.add_argument("--family", choices=("ipv4", "dual-stack", "ipv6"), default="ipv4",
                        help="dual-stack pods (ipv6), or IPv6-only pods (ipv4: false)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    with tempfile.TemporaryDirectory(prefix="cnivpc-chaos-") as tmp:
        report = run(args.zipapp.resolve(), seed=seed, ops=args.ops, nodes=args.nodes,
                     instance_type=args.instance_type, workdir=Path(tmp),
                     audit_every=args.audit_every, prefixes=args.prefixes,
                     family=args.family)
    print(json.dumps(report.line()), flush=True)
    for line in report.failures + report.violations:
        print(line, file=sys.stderr)
    if report.failures or report.violations:
        print(f"chaos: replay with --seed {seed}", file=sys.stderr)
        return 1
    return 0
