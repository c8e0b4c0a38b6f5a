"""Issue 7, sections 3 and 4: EC2 economy and burst latency of the IPAM plugin on a fresh node,
cnivpc's defaults against "original mode", both measured in the same run.

For each mode, a FRESH one-node lab (``cnivpc.lab.lab.Lab``: strict simulated EC2 + IMDSv2, the
``aws-like`` latency profile by default, EC2's token buckets on) of ``--instance-type``
(m5.24xlarge: 15 ENIs x 50 IPv4). N pod ADDs are started as a burst with ``--concurrency``
in flight at a time, then the N pods are deleted the same way. Every ADD/DEL is the built
zipapp exec'd through its ``cnivpc-ipam`` symlink as a container runtime does (a private copy
of ``--zipapp`` taken at start, so a rebuild of ``build/out`` meanwhile changes nothing): a new
process in the node's netns (``ip netns exec``), CNI_* in the environment, the config on stdin,
the result on stdout. One ADD's time is from the exec to the process's exit with its result:
the pod's time to network-ready as far as IPAM is concerned (``ip netns exec`` adds a few ms to
both modes alike).

EC2 calls are counted on the server: the bench wraps the lab's EC2 front door in this process,
so the figures are what EC2 received (throttled answers and retries included), split into the
warm step (defaults only), the up phase (the burst) and the down phase (the DELs). An ADD that
leaves the pool below its warm level refills it after answering, in a detached child: a phase
ends when those children have exited too (found by a tag in their environment; the wait is
``background_s``), so their calls count in the phase that caused them. The plugins' own
``EC2 calls: {...}`` log lines (the children log theirs) are parsed too and kept beside them
in ``data`` as a cross-check (the warm step's CLI logs none). Mutating = every action that is
not a Describe/Get/List/Search (Assign*, Unassign*, Create*, Attach*, Detach*, Delete*,
ModifyNetworkInterfaceAttribute; the lab's own definition).

Modes (the config keys are in the output's ``data.modes.<mode>.config``):

* ``defaults``: cnivpc's defaults (``ipBatchSize`` 0: a new ENI comes with all its IPs, Assigns
  sized from the warm target; ``warmIPTarget`` 8; ``warmENIThreshold`` -1: the next ENI starts
  in the background below 37 free IPs on an m5.24xlarge; ``maxFreeIPs`` -1: DEL keeps IPs),
  with the node started the way the DaemonSet and ``examples/systemd/cnivpc-warm.service``
  start one: ``cnivpc ipam warm`` before the burst (the same zipapp, exec'd in the node's
  netns, ``--conf`` a conflist holding the same IPAM config). Its time and EC2 calls are
  reported as the ``warm`` phase and counted in the mode's totals (mutating calls included).
* ``defaults-cold``: the same defaults without the warm step (the first ADDs find an empty
  pool), reported as extra rows so nothing is hidden.
* ``prefixes`` and ``prefixes-m5.large``: the defaults (warm step included) with
  ``ipv4Prefixes``, on the run's instance type (beside ``defaults``: the same pods out of /28
  prefixes instead of secondary IPs) and on an m5.large, whose 18 secondary-IP pods could not
  hold the burst: 9 prefixes per ENI slot set, 144 addresses per ENI.
* ``original``: ``ipBatchSize`` 1, ``warmIPTarget`` 0, ``maxFreeIPs`` 0 -- the original's
  allocation policy (Lyft's cni-ipvlan-vpc-k8s): one IP per AssignPrivateIpAddresses, a new ENI
  with its primary IP only, no warm refill, and every DEL unassigns the pod's IP. Every other key
  is left at cnivpc's default (``reuseIPWait`` 60 s as in the original; ``interfaceIndex`` 1 as
  the original's README recommends). What original mode does NOT reproduce: the original holds
  its global lock across every EC2 call and polls the metadata in 1 s steps until a new IP shows
  (``imds_lag`` is 3 s in ``aws-like``), so its ADDs run one at a time; cnivpc in original mode
  runs the EC2 work of concurrent ADDs side by side. That makes original mode a faster peer than
  the original, and a costlier one in ENIs: concurrent ADDs that find no room each create an
  ENI. ``data.original_itself_modelled`` counts what the serial original would send instead.
  Its DELs never unassign an ENI's primary IP (the original tries and fails).

Concurrency (default 8): kubelet starts one pod worker per pod and the CRI runtime calls CNI
for every sandbox concurrently, with no cap of its own, so when 110 pods land on a fresh node
the ADDs in flight are bounded by how fast the API server hands pods over and how fast the
runtime creates sandboxes, not by a setting. The bench's bound is the machine: every ADD is a
fresh Python process costing 0.3-0.8 s of CPU (``data.modes.*.up.cpu_per_op_s``), and a real
m5.24xlarge has 96 vCPUs where this machine has 2. 8 in flight is still a burst (8 ADDs arrive
inside one ENI attach, several inside one Assign) and already keeps both cores busy; at 16,
on this 2-core machine (load 1.2 when the run began), DELs that make no EC2 call at all took
7.3 s median for 0.44 s of CPU each, and both modes' ADD p50s were 7.0 s: the percentiles
measured the run queue, not cnivpc. The
figure, the CPU used (plugins and lab) and the machine's load are in the output. A default
run (three modes) takes about 3 minutes on 2 cores (185 s; longer with a test suite running
beside it).

Needs root (network namespaces), the dev venv (moto, the lab) and a built zipapp
(``.venv/bin/python build/zipapp.py``). Talks to humans on stderr; the section JSON goes to
``--out`` (``common.write_section``). Exits 2 when it cannot run (not root, no moto, no zipapp,
lab start-up failed), 1 when an ADD or DEL failed (the JSON is written first), 0 otherwise.

    .venv/bin/python build/bench/ec2.py --out /tmp/ec2.json [--pods 110] [--concurrency 8]
        [--latency aws-like] [--instance-type m5.24xlarge] [--zipapp build/out/cnivpc]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(REPO))

from common import Row, Summary, fmt, ratio, row, summarize, write_section  # noqa: E402

from cnivpc.lab.runtime import logged_ec2_calls, tagged_processes  # noqa: E402

SECTION = "ec2"
TITLE = "EC2 economy and pod burst on a fresh node (IPAM, lab)"
NODE_EC2_URL = "http://169.254.169.254:8773"
INSTANCE_TYPE_KEY = "__instance_type"  # a mode's own instance type (not an IPAM key)
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
MODES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "defaults-cold": {},
    "original": {"ipBatchSize": 1, "warmIPTarget": 0, "maxFreeIPs": 0},
    # Prefix delegation: the defaults plus ``ipv4Prefixes``, on the run's instance type and on
    # an m5.large (3 ENIs x 10 IPv4: 18 pod IPs in secondary mode, 288 addresses in prefixes).
    "prefixes": {"ipv4Prefixes": True},
    "prefixes-m5.large": {"ipv4Prefixes": True, INSTANCE_TYPE_KEY: "m5.large"},
}
WARMED = frozenset({"defaults", "prefixes", "prefixes-m5.large"})  # ``cnivpc ipam warm`` first
TAG = "CNIVPC_BENCH_NODE"  # in every plugin process's environment: finds detached refills
SETTLE_TIMEOUT = 120.0
MUTATING_GOAL = 10
PREFIX_MUTATING_GOAL = 3  # 110 pods on an m5.large in prefix mode: Create, Attach, Modify
P99_GOAL = 0.3
READ_PREFIXES = ("Describe", "Get", "List", "Search")
OP_TIMEOUT = 150.0  # one plugin process; its own deadline (timeout) is 60 s


def say(msg: str) -> None:
    print(f"bench ec2: {msg}", file=sys.stderr, flush=True)


def is_mutating(action: str) -> bool:
    return not action.startswith(READ_PREFIXES)


def mutating(calls: dict[str, int]) -> int:
    return sum(n for op, n in calls.items() if is_mutating(op))


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    out = {k: after[k] - before.get(k, 0) for k in sorted(after)}
    return {k: v for k, v in out.items() if v}


# -- counting what EC2 receives ------------------------------------------------------------------


class ServerCounter:
    """Every EC2 request the lab's front door answered, by action, and error answers by action
    and code: the lab's own per-node counts (``LabState.calls``), summed over nodes, so the
    bench counts exactly what ``python -m cnivpc.lab counts`` shows."""

    def __init__(self, lab: Any) -> None:
        self._calls = lab.ec2.state.calls

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        calls: dict[str, int] = {}
        errors: dict[str, int] = {}
        for actions in self._calls.snapshot().values():
            for action, entry in actions.items():
                calls[action] = calls.get(action, 0) + int(entry["calls"])
                for code, n in entry["errors"].items():
                    key = f"{action}: {code}"
                    errors[key] = errors.get(key, 0) + int(n)
        return calls, errors


# -- running the plugin ----------------------------------------------------------------------


@dataclass
class Op:
    container_id: str
    start: float  # seconds since the phase began
    seconds: float  # exec to exit
    cpu: float  # user+sys CPU seconds of the process (wait4)
    code: int
    ip: str = ""
    error: str = ""


@dataclass
class Runner:
    """Execs the zipapp's ``cnivpc-ipam`` in one node's netns, as a runtime would."""

    plugin: Path
    netns: str
    conf: dict[str, Any]
    shiv_root: str | None = None
    live: set[subprocess.Popen[bytes]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    tag: str = ""

    def env(self, command: str, container_id: str) -> dict[str, str]:
        env = {"PATH": PATH, "CNI_COMMAND": command, "CNI_CONTAINERID": container_id,
               "CNI_NETNS": "/proc/1/ns/net", "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin",
               "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;"
                           f"K8S_POD_NAME={container_id}",
               "AWS_ENDPOINT_URL_EC2": NODE_EC2_URL, TAG: self.tag}
        if self.shiv_root:
            env["SHIV_ROOT"] = self.shiv_root
        return env

    def run(self, command: str, container_id: str, log: Path, t0: float) -> Op:
        if self.stopping.is_set():
            return Op(container_id, 0.0, 0.0, 0.0, -1, error="not started (interrupted)")
        stdin = json.dumps({**self.conf, "logFile": str(log)}).encode()
        with tempfile.TemporaryFile() as errfile:
            started = time.perf_counter()
            proc = subprocess.Popen(["ip", "netns", "exec", self.netns, str(self.plugin)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=errfile, env=self.env(command, container_id))
            with self.lock:
                self.live.add(proc)
            killer = threading.Timer(OP_TIMEOUT, self.kill, (proc,))
            killer.start()
            try:
                assert proc.stdin is not None and proc.stdout is not None
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.write(stdin)
                    proc.stdin.close()
                out = proc.stdout.read()
                proc.stdout.close()
                # Exited, not yet reaped (so a kill can never hit a reused pid); then wait4,
                # which gives the process's own CPU time with its exit status.
                os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
                seconds = time.perf_counter() - started
            finally:
                killer.cancel()
                with self.lock:
                    self.live.discard(proc)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            errfile.seek(0)
            err = errfile.read()
        op = Op(container_id, started - t0, seconds, usage.ru_utime + usage.ru_stime,
                proc.returncode)
        doc: dict[str, Any] = {}
        if out.strip():
            try:
                doc = json.loads(out)
            except ValueError:
                op.error = f"stdout is not JSON: {out[:200]!r}"
        if proc.returncode != 0 and not op.error:
            code = f"code {doc['code']}: " if "code" in doc else ""
            op.error = code + str(doc.get("msg") or err.decode(errors="replace")[-300:])
        elif command == "ADD" and not op.error:
            try:
                op.ip = str(doc["ips"][0]["address"]).split("/")[0]
            except (KeyError, IndexError, TypeError):
                op.error = f"ADD result without an IP: {doc}"
        return op

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL one plugin process this bench started, if it has not exited yet."""
        with self.lock:
            if proc in self.live:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)

    def kill_all(self) -> None:
        self.stopping.set()
        with self.lock:
            procs = list(self.live)
        for proc in procs:
            self.kill(proc)


def settle(tag: str) -> float:
    """Wait for the mode's detached refills to end; the seconds waited. Past SETTLE_TIMEOUT
    they are killed (only processes carrying this mode's tag)."""
    started = time.perf_counter()
    while pids := tagged_processes(TAG, tag):
        if time.perf_counter() - started > SETTLE_TIMEOUT:
            say(f"background refills still running after {SETTLE_TIMEOUT:.0f} s: killing "
                f"{pids}")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    return time.perf_counter() - started


def warm_node(runner: Runner, app: Path, workdir: Path) -> dict[str, Any]:
    """``cnivpc ipam warm`` on the fresh node as the DaemonSet's init container (or the
    cnivpc-warm unit) runs it: the zipapp in the node's netns, reading the IPAM settings from
    a conflist holding the same config the ADDs get."""
    conflist = workdir / "10-cnivpc.conflist"
    entry = {k: v for k, v in runner.conf.items() if k not in ("cniVersion", "name")}
    conflist.write_text(json.dumps({"cniVersion": runner.conf["cniVersion"],
                                    "name": runner.conf["name"], "plugins": [entry]}))
    env = {"PATH": PATH, "AWS_ENDPOINT_URL_EC2": NODE_EC2_URL, TAG: runner.tag}
    if runner.shiv_root:
        env["SHIV_ROOT"] = runner.shiv_root
    started = time.perf_counter()
    proc = subprocess.run(["ip", "netns", "exec", runner.netns, str(app), "ipam", "warm",
                           "--conf", str(conflist), "--json"], env=env, capture_output=True,
                          text=True, timeout=OP_TIMEOUT, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench ec2: cnivpc ipam warm failed ({proc.returncode}): "
                         f"{proc.stderr.strip()[-500:]}")
    report: dict[str, Any] = json.loads(proc.stdout)
    return {"command": f"cnivpc ipam warm --conf {conflist.name} --json (in the node's netns)",
            "seconds": round(seconds, 3), "report": report}


def burst(runner: Runner, command: str, ids: list[str], concurrency: int, log: Path
          ) -> tuple[list[Op], float, float]:
    """All ``ids`` through ``command`` with ``concurrency`` in flight; returns the ops, the wall
    time and the CPU seconds this process (the lab: EC2, IMDS, hot-plug) used meanwhile."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix=f"bench-{command}")
    try:
        ops = list(pool.map(lambda cid: runner.run(command, cid, log, t0), ids))
    except BaseException:
        runner.kill_all()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    lab_cpu = (after.ru_utime - own.ru_utime) + (after.ru_stime - own.ru_stime)
    return ops, wall, lab_cpu


# -- one mode ---------------------------------------------------------------------------------


def node_state(lab: Any, instance_id: str) -> dict[str, Any]:
    """ENIs attached to the node and IPs on them, as EC2 holds them now (read in-process with
    the lab's metadata source, which has no lag of its own: no API call, nothing counted)."""
    from cnivpc.lab.imds import moto_source

    view = moto_source(lab.ec2.backend, lab.ec2.lock)(instance_id)
    enis = list(view.enis) if view else []
    pods = [e for e in enis if e.device_index >= 1]  # not the boot ENI
    return {"pod_enis": len(pods), "pod_eni_ips": sum(len(e.ipv4s) for e in pods),
            "pod_eni_prefixes": sum(len(e.ipv4_prefixes) for e in pods),
            "by_eni": [{"eni": e.eni_id, "device_index": e.device_index, "ips": len(e.ipv4s),
                        "prefixes": len(e.ipv4_prefixes)} for e in enis]}


def run_mode(name: str, extra: dict[str, Any], args: argparse.Namespace, workdir: Path,
             runners: list[Runner]) -> dict[str, Any]:
    from cnivpc.lab.lab import Lab

    extra = dict(extra)
    instance_type = extra.pop(INSTANCE_TYPE_KEY, args.instance_type)
    say(f"{name}: starting a fresh {instance_type} lab ({args.latency})")
    lab = Lab(nodes=1, instance_type=instance_type, latency=args.latency)
    try:
        lab.start()
    except Exception as exc:
        raise SystemExit(f"bench ec2: the lab did not start: {exc!r}") from exc
    try:
        counter = ServerCounter(lab)
        node = lab.node(0)
        conf: dict[str, Any] = {
            "cniVersion": "1.0.0", "name": "cnivpc", "type": "cnivpc-ipam",
            "dataDir": str(workdir / "state"), "lockPath": str(workdir / "ipam.lock"),
            "logLevel": args.log_level, **extra}
        runner = Runner(plugin=args.plugin, netns=node.netns, conf=conf,
                        shiv_root=args.shiv_root, tag=str(workdir))
        runners.append(runner)
        ids = [f"{name[:4]}-{i:04d}" for i in range(args.pods)]  # 12-char log prefix
        load_before = os.getloadavg()[0]

        warm: dict[str, Any] | None = None
        if name in WARMED:
            say(f"{name}: cnivpc ipam warm on the fresh node (as the DaemonSet does)")
            warm = warm_node(runner, args.app, workdir)
            warm_calls, warm_errors = counter.snapshot()
            warm.update(ec2_calls=dict(sorted(warm_calls.items())), ec2_errors=warm_errors,
                        ec2_mutating=mutating(warm_calls), ec2_total=sum(warm_calls.values()),
                        node_after=node_state(lab, node.instance_id))
            say(f"{name}: warm in {warm['seconds']:.1f} s; EC2 {warm['ec2_mutating']} "
                f"mutating of {warm['ec2_total']}; {warm['report'].get('free')} free IPs")
        before_up, before_up_errors = counter.snapshot()

        say(f"{name}: {args.pods} ADDs, {args.concurrency} in flight")
        up_log = workdir / "up.log"
        adds, add_wall, add_cpu = burst(runner, "ADD", ids, args.concurrency, up_log)
        up_settle = settle(runner.tag)
        up_all, up_all_errors = counter.snapshot()
        up_calls, up_errors = diff(up_all, before_up), diff(up_all_errors, before_up_errors)
        after_up = node_state(lab, node.instance_id)
        say(f"{name}: up in {add_wall:.1f} s; EC2 {mutating(up_calls)} mutating of "
            f"{sum(up_calls.values())}; {after_up['pod_enis']} pod ENIs with "
            f"{after_up['pod_eni_ips']} IPs")

        say(f"{name}: {args.pods} DELs, {args.concurrency} in flight")
        down_log = workdir / "down.log"
        dels, del_wall, del_cpu = burst(runner, "DEL", ids, args.concurrency, down_log)
        down_settle = settle(runner.tag)
        all_calls, all_errors = counter.snapshot()
        down_calls = diff(all_calls, up_all)
        after_down = node_state(lab, node.instance_id)
        say(f"{name}: down in {del_wall:.1f} s; EC2 {mutating(down_calls)} mutating of "
            f"{sum(down_calls.values())}; {after_down['pod_enis']} pod ENIs with "
            f"{after_down['pod_eni_ips']} IPs left")
    finally:
        lab.stop()

    failures = [{"command": cmd, "container_id": o.container_id, "code": o.code,
                 "error": o.error}
                for cmd, ops in (("ADD", adds), ("DEL", dels)) for o in ops if o.error]
    ips = [o.ip for o in adds if o.ip]
    up_logged, down_logged = logged_ec2_calls(up_log), logged_ec2_calls(down_log)
    return {
        "instance_type": instance_type,
        "config": {k: v for k, v in conf.items() if k not in ("dataDir", "lockPath")},
        "load1_before": round(load_before, 2),
        "warm": warm,
        "up": {**phase(adds, add_wall, add_cpu, up_calls, up_errors, up_logged, after_up),
               "background_s": round(up_settle, 3)},
        "down": {**phase(dels, del_wall, del_cpu, down_calls, diff(all_errors, up_all_errors),
                         down_logged, after_down), "background_s": round(down_settle, 3)},
        "distinct_ips": len(set(ips)),
        "failures": failures,
    }


def phase(ops: list[Op], wall: float, lab_cpu: float, calls: dict[str, int],
          errors: dict[str, int], logged: dict[str, int], state: dict[str, Any]
          ) -> dict[str, Any]:
    ok = [o for o in ops if not o.error]
    plugin_cpu = sum(o.cpu for o in ops)
    return {
        "ops": len(ops), "ok": len(ok),
        "latency_s": summarize([o.seconds for o in ok]) if ok else None,
        # one process's own CPU time, and what is left of its latency: waiting for EC2, for
        # the host lock, for another ADD's EC2 work, and for a CPU (run queue)
        "cpu_per_op_s": summarize([o.cpu for o in ok]) if ok else None,
        "off_cpu_per_op_s": summarize([o.seconds - o.cpu for o in ok]) if ok else None,
        "wall_s": round(wall, 3),
        "plugin_cpu_s": round(plugin_cpu, 2),
        "lab_cpu_s": round(lab_cpu, 2),
        # CPU demanded per second of wall time, against the machine's cores
        "cpu_load": round((plugin_cpu + lab_cpu) / wall, 2) if wall else None,
        "ec2_calls": calls, "ec2_mutating": mutating(calls), "ec2_total": sum(calls.values()),
        "ec2_errors": errors,
        "ec2_calls_logged_by_plugins": logged,
        "node_after": state,
        "per_op": [{"id": o.container_id, "start_s": round(o.start, 3),
                    "seconds": round(o.seconds, 3), "cpu_s": round(o.cpu, 3), "code": o.code}
                   for o in ops],
    }


def original_model(pods: int, enis_max: int, per_eni: int) -> dict[str, Any]:
    """The mutating calls the original itself would send for ``pods`` on a fresh node. Its
    global lock makes all of its EC2 work serial, so it never creates ENIs side by side: a new
    ENI (Create + Attach + Modify) brings its primary IP only, every other pod costs one Assign,
    and every DEL one Unassign (EC2 rejects those of primaries)."""
    enis = min(-(-pods // per_eni), enis_max - 1)
    placed = min(pods, enis * per_eni)
    up = 3 * enis + (placed - enis)
    return {"pod_enis": enis, "pods_placed": placed, "mutating_up": up, "mutating_down": placed,
            "mutating": up + placed}


# -- the table --------------------------------------------------------------------------------


def lat(mode: dict[str, Any], ph: str) -> Summary:
    s: Summary | None = mode[ph]["latency_s"]
    if s is None:
        raise SystemExit(f"bench ec2: every {ph} operation failed; nothing to summarize")
    return s


def rows_for(ours: dict[str, Any], peer: dict[str, Any], pods: int, conc: int,
             cold: dict[str, Any] | None = None) -> list[Row]:
    def calls(m: dict[str, Any], key: str) -> tuple[int, str]:
        up, down = m["up"][key], m["down"][key]
        warm = m["warm"][key] if m.get("warm") else 0
        split = f"warm {warm}, up {up}" if m.get("warm") else f"up {up}"
        return warm + up + down, f"{warm + up + down} ({split}, down {down})"

    o_mut, o_mut_s = calls(ours, "ec2_mutating")
    p_mut, p_mut_s = calls(peer, "ec2_mutating")
    o_all, o_all_s = calls(ours, "ec2_total")
    p_all, p_all_s = calls(peer, "ec2_total")
    o_add, p_add = lat(ours, "up"), lat(peer, "up")
    o_del, p_del = lat(ours, "down"), lat(peer, "down")
    p99 = o_add["p99"] / p_add["p99"] if p_add["p99"] else float("inf")
    o_fail, p_fail = len(ours["failures"]), len(peer["failures"])

    def sec(x: float) -> str:
        return f"{x:.2f} s"

    what = f"{pods} pods"
    warmed = " (warm step included)" if ours.get("warm") else ""
    rows = [
        row(f"EC2 mutating calls, {what} up + down{warmed}", o_mut_s, p_mut_s,
            ratio(o_mut, p_mut), f"<= {MUTATING_GOAL} (defaults)", o_mut <= MUTATING_GOAL),
        row(f"EC2 calls in all (Describe* too), {what} up + down", o_all_s, p_all_s,
            ratio(o_all, p_all)),
        row(f"pod ENIs attached for {what}", str(ours["up"]["node_after"]["pod_enis"]),
            str(peer["up"]["node_after"]["pod_enis"]),
            ratio(ours["up"]["node_after"]["pod_enis"], peer["up"]["node_after"]["pod_enis"])),
        row(f"burst of {pods} ADDs ({conc} in flight): p50 to network-ready",
            fmt(o_add, "s", 2), fmt(p_add, "s", 2), ratio(o_add["median"], p_add["median"])),
        row(f"burst of {pods} ADDs: p99", sec(o_add["p99"]), sec(p_add["p99"]), f"{p99:.2f}x",
            f"p99 <= {P99_GOAL}x original", p99 <= P99_GOAL),
        row(f"burst of {pods} ADDs: max", sec(o_add["max"]), sec(p_add["max"]),
            ratio(o_add["max"], p_add["max"])),
        row(f"burst of {pods} ADDs: wall time", sec(ours["up"]["wall_s"]),
            sec(peer["up"]["wall_s"]), ratio(ours["up"]["wall_s"], peer["up"]["wall_s"])),
        row(f"{pods} DELs ({conc} in flight): p50", fmt(o_del, "s", 2), fmt(p_del, "s", 2),
            ratio(o_del["median"], p_del["median"])),
        row(f"failed ADDs + DELs (of {2 * pods})", str(o_fail), str(p_fail), None,
            "0 (defaults)", o_fail == 0),
    ]
    if ours.get("warm"):
        rows.insert(0, row("cnivpc ipam warm on the fresh node, before the burst",
                           f"{ours['warm']['seconds']:.2f} s, {ours['warm']['ec2_mutating']} "
                           "mutating EC2 calls", "none (the original has no warm step)"))
    if cold is not None:
        c_add = lat(cold, "up")
        c_mut, c_mut_s = calls(cold, "ec2_mutating")
        c99 = c_add["p99"] / p_add["p99"] if p_add["p99"] else float("inf")
        rows += [
            row(f"cold node (defaults, no warm step): EC2 mutating calls, {what} up + down",
                c_mut_s, p_mut_s, ratio(c_mut, p_mut)),
            row(f"cold node: burst of {pods} ADDs: p50", fmt(c_add, "s", 2), fmt(p_add, "s", 2),
                ratio(c_add["median"], p_add["median"])),
            row(f"cold node: burst of {pods} ADDs: p99 (max)",
                f"{sec(c_add['p99'])} ({sec(c_add['max'])})",
                f"{sec(p_add['p99'])} ({sec(p_add['max'])})", f"{c99:.2f}x"),
            row(f"cold node: burst of {pods} ADDs: wall time", sec(cold["up"]["wall_s"]),
                sec(peer["up"]["wall_s"]), ratio(cold["up"]["wall_s"], peer["up"]["wall_s"])),
            row("cold node: failed ADDs + DELs", str(len(cold["failures"])), str(p_fail)),
        ]
    return rows


def prefix_rows(results: dict[str, Any], pods: int) -> list[Row]:
    """Prefix mode beside secondary IPs (the defaults) on the run's type, and alone on an
    m5.large, where secondary IPs hold only 18 pods."""
    def mut(m: dict[str, Any]) -> tuple[int, str]:
        warm = m["warm"]["ec2_mutating"] if m.get("warm") else 0
        up, down = m["up"]["ec2_mutating"], m["down"]["ec2_mutating"]
        return warm + up + down, f"{warm + up + down} (warm {warm}, up {up}, down {down})"

    rows: list[Row] = []
    small = results.get("prefixes-m5.large")
    if small is not None:
        n, text = mut(small)
        rows.append(row(f"prefix mode, {pods} pods on an m5.large: EC2 mutating calls "
                        "(warm step included)", text, "secondary IPs: 18 pods at most", None,
                        f"<= {PREFIX_MUTATING_GOAL}", n <= PREFIX_MUTATING_GOAL
                        and not small["failures"]))
        rows.append(row(f"prefix mode, {pods} pods on an m5.large: failed ADDs + DELs",
                        str(len(small["failures"])), "-", None, "0", not small["failures"]))
    big, ours = results.get("prefixes"), results.get("defaults")
    if big is not None and ours is not None:
        itype = big["instance_type"]
        (b_mut, b_text), (o_mut, o_text) = mut(big), mut(ours)
        b_add, o_add = lat(big, "up"), lat(ours, "up")
        rows += [
            row(f"{itype}, {pods} pods: EC2 mutating calls, prefixes vs secondary IPs", b_text,
                o_text, ratio(b_mut, o_mut)),
            row(f"{itype}: pod ENIs, prefixes vs secondary IPs",
                str(big["up"]["node_after"]["pod_enis"]),
                str(ours["up"]["node_after"]["pod_enis"])),
            row(f"{itype}: burst of {pods} ADDs p50, prefixes vs secondary IPs",
                fmt(b_add, "s", 2), fmt(o_add, "s", 2), ratio(b_add["median"], o_add["median"])),
            row(f"{itype}: burst of {pods} ADDs p99, prefixes vs secondary IPs",
                f"{b_add['p99']:.2f} s", f"{o_add['p99']:.2f} s",
                ratio(b_add["p99"], o_add["p99"])),
            row(f"{itype}: prefix mode failed ADDs + DELs", str(len(big["failures"])),
                str(len(ours["failures"])), None, "0", not big["failures"]),
        ]
    return rows


def print_table(rows: Iterable[Row]) -> None:
    say("defaults vs original mode:")
    for r in rows:
        goal = f"  goal {r['goal']}: {'met' if r['met'] else 'MISSED'}" if r["goal"] else ""
        rat = f" ({r['ratio']})" if r["ratio"] else ""
        print(f"  {r['what']}: {r['ours']} vs {r['peer']}{rat}{goal}", file=sys.stderr)


# -- main -------------------------------------------------------------------------------------


def snapshot(zipapp: Path, dst: Path) -> tuple[Path, dict[str, str]]:
    """A private copy of the zipapp with its ``bin/cnivpc-ipam`` symlink, as installed on a
    node: a rebuild of ``build/out`` during the run cannot swap the artifact under test."""
    (dst / "bin").mkdir(parents=True)
    shutil.copy2(zipapp, dst / "cnivpc")
    (dst / "bin" / "cnivpc-ipam").symlink_to("../cnivpc")
    data = (dst / "cnivpc").read_bytes()
    with zipfile.ZipFile(dst / "cnivpc") as zf:
        build_id = str(json.loads(zf.read("environment.json")).get("build_id", ""))
    return dst / "bin" / "cnivpc-ipam", {
        "path": str(zipapp.resolve()), "sha256": hashlib.sha256(data).hexdigest(),
        "build_id": build_id, "bytes": str(len(data))}


def warm_up(args: argparse.Namespace) -> None:
    """One VERSION exec: the zipapp extracts itself once, outside the measurements."""
    env = {"PATH": PATH, "CNI_COMMAND": "VERSION"}
    if args.shiv_root:
        env["SHIV_ROOT"] = args.shiv_root
    proc = subprocess.run([str(args.plugin)], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    if proc.returncode != 0 or "supportedVersions" not in proc.stdout:
        raise SystemExit(f"bench ec2: {args.plugin} VERSION failed ({proc.returncode}): "
                         f"{proc.stderr.strip()[-500:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="EC2 economy and pod burst, defaults vs "
                                                 "original mode (issue 7 sections 3-4)")
    parser.add_argument("--out", type=Path, required=True, help="the section's JSON")
    parser.add_argument("--pods", type=int, default=110)
    parser.add_argument("--concurrency", type=int, default=8,
                        help="ADDs/DELs in flight (see the module docstring)")
    parser.add_argument("--latency", default="aws-like", help="lab profile: aws-like or zero")
    parser.add_argument("--instance-type", default="m5.24xlarge")
    parser.add_argument("--zipapp", type=Path, default=REPO / "build" / "out" / "cnivpc")
    parser.add_argument("--shiv-root", default=None,
                        help="SHIV_ROOT for the plugin processes (default: the build's root)")
    parser.add_argument("--modes",
                        default="defaults,defaults-cold,original,prefixes,prefixes-m5.large",
                        help="comma-separated subset of: " + ", ".join(MODES))
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep each mode's state and plugin logs under this directory")
    parser.add_argument("--log-level", default="info", choices=("debug", "info"),
                        help="the plugins' logLevel (the EC2 call lines are at info)")
    args = parser.parse_args(argv)
    if args.pods < 1 or args.concurrency < 1:
        parser.error("--pods and --concurrency must be at least 1")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes: pick from {', '.join(MODES)}")

    if os.geteuid() != 0:
        say("needs root (the lab's nodes are network namespaces)")
        return 2
    try:
        import moto  # noqa: F401
    except ImportError:
        say("needs moto and the lab: run with the dev venv (.venv/bin/python)")
        return 2
    if not args.zipapp.is_file():
        say(f"no zipapp at {args.zipapp}: .venv/bin/python build/zipapp.py")
        return 2
    from cnivpc.lab.ec2.limits import known_type, limits_for

    if not known_type(args.instance_type):
        parser.error(f"unknown instance type {args.instance_type}")

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    runners: list[Runner] = []
    started = time.perf_counter()
    try:
        results: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="cnivpc-bench-ec2.") as tmp:
            args.plugin, artifact = snapshot(args.zipapp, Path(tmp, "app"))
            args.app = Path(tmp, "app", "cnivpc")
            warm_up(args)
            for name in modes:
                workdir = Path(args.keep or tmp, name)
                workdir.mkdir(parents=True, exist_ok=False)
                results[name] = run_mode(name, MODES[name], args, workdir, runners)
    except KeyboardInterrupt:
        for runner in runners:
            runner.kill_all()
        say("interrupted; the lab was torn down")
        return 130
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 2
        raise
    total = time.perf_counter() - started

    limits = limits_for(args.instance_type)
    rows: list[Row] = []
    if "defaults" in results and "original" in results:
        rows = rows_for(results["defaults"], results["original"], args.pods, args.concurrency,
                        results.get("defaults-cold"))
    rows += prefix_rows(results, args.pods)
    data: dict[str, Any] = {
        "pods": args.pods, "concurrency": args.concurrency, "latency_profile": args.latency,
        "instance_type": args.instance_type,
        "limits": {"enis": limits.max_enis, "ipv4_per_eni": limits.ipv4_per_eni},
        "zipapp": artifact,
        "calls_counted": "server side (what the lab's EC2 received, retries and throttled "
                         "answers included); ec2_calls_logged_by_plugins: the plugins' own "
                         "log lines",
        "mutating": "every action but Describe*/Get*/List*/Search*",
        "original_mode": "cnivpc with " + json.dumps(MODES["original"]) + ": the original's "
                         "allocation policy; its lock across EC2 calls and its 1 s metadata "
                         "polling are not reproduced (they would make it slower)",
        "original_itself_modelled": original_model(args.pods, limits.max_enis,
                                                   limits.ipv4_per_eni),
        "run_wall_s": round(total, 1),
        "modes": results,
    }
    write_section(args.out, SECTION, TITLE, rows, data)
    print_table(rows)
    say(f"wrote {args.out} in {total:.0f} s")
    failed = sum(len(r["failures"]) for r in results.values())
    if failed:
        examples = [json.dumps(r["failures"][0]) for r in results.values() if r["failures"]]
        say(f"{failed} ADD/DEL operations failed, e.g. " + "; ".join(examples))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
