"""A minimal CNI runtime for the end-to-end tests and the demo: what containerd does with a
conflist, no more. For each plugin of the chain it builds the plugin's stdin (the conflist
entry with ``cniVersion``, ``name`` and ``prevResult`` injected), execs ``<bin>/<type>`` inside
the node's network namespace with the CNI_* environment, and keeps the final ADD result for
DEL and CHECK (libcni's result cache). DEL runs the chain in reverse.

Also what the tests and benchmarks read back from plugin runs: the EC2 calls cnivpc-ipam
processes log (``logged_ec2_calls``), and the processes still running under a tag in their
environment (``tagged_processes``: plugins and the refills they detached).

Part of the lab: never imported by plugin code, never in the zipapp.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cli.install import fused_conflist

__all__ = ["EXAMPLE_CONFLIST", "PluginFailed", "Runtime", "fused_conflist", "lab_conflist"]

EXAMPLE_CONFLIST = Path(__file__).resolve().parents[2] / "examples" / "cnivpc.conflist"


def lab_conflist(workdir: Path, node: int, example: Path = EXAMPLE_CONFLIST) -> dict[str, Any]:
    """examples/cnivpc.conflist with what differs between the lab and a real node: each
    simulated node needs its own state and lock (they share one filesystem), the lab's subnet
    tags and security group, a routeToCidrs destination (198.18.0.0/15, behind the VPC
    router) to prove that path, and a log file in ``workdir``."""
    doc: dict[str, Any] = json.loads(example.read_text())
    ipam = doc["plugins"][0]
    assert ipam["type"] == "cnivpc-ipam"
    ipam.pop("secGroupIds", None)  # default: the boot ENI's groups
    ipam.update(subnetTags={"cnivpc": "pods"}, routeToCidrs=["198.18.0.0/15"],
                dataDir=str(workdir / f"state{node}"), lockPath=str(workdir / f"lock{node}"))
    for plugin in doc["plugins"]:
        plugin["logFile"] = str(workdir / f"cnivpc{node}.log")
    return doc


def logged_ec2_calls(log: Path) -> dict[str, int]:
    """EC2 calls the cnivpc-ipam processes logging to ``log`` say they made, by operation: the
    sum of their ``EC2 calls: {...}`` lines (one per ADD/DEL, one per background refill)."""
    total: dict[str, int] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        if " EC2 calls: " in line:
            counts = json.loads(line.split(" EC2 calls: ", 1)[1].replace("'", '"'))
            for op, n in counts.items():
                total[op] = total.get(op, 0) + int(n)
    return dict(sorted(total.items()))


def tagged_processes(name: str, value: str) -> list[int]:
    """Pids of live (not zombie) processes, this one excepted, whose environment has
    ``name=value``."""
    marker = f"{name}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in env and state != b"Z":
            found.append(int(entry))
    return found


class PluginFailed(AssertionError):
    pass


@dataclass
class Runtime:
    bin_dir: Path
    conflist: dict[str, Any]
    node_ns: str
    env: dict[str, str] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The node's boot id (``Lab.boot_id_file``): when set, plugins see it as
    # /proc/sys/kernel/random/boot_id (bind-mounted in the mount namespace `ip netns exec`
    # makes for each run), so `python -m cnivpc.lab reboot` voids their allocations as a real
    # reboot would. Off by default: it costs two execs per plugin run.
    boot_id_file: Path | None = None
    timings: list[tuple[str, str, float]] = field(default_factory=list)
    # CPU seconds (user+sys) of each exec's whole process tree, beside ``timings`` (the
    # detached after-answer child is not waited for, so not counted).
    cpu: list[tuple[str, str, float]] = field(default_factory=list)

    def _exec(self, plugin: dict[str, Any], command: str, container_id: str, netns: str,
              prev: dict[str, Any] | None, ifname: str = "eth0") -> dict[str, Any]:
        stdin = {"cniVersion": self.conflist["cniVersion"], "name": self.conflist["name"],
                 **plugin}
        if prev is not None:
            stdin["prevResult"] = prev
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command,
               "CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
               "CNI_PATH": str(self.bin_dir),
               "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;"
                           f"K8S_POD_NAME={container_id};K8S_POD_INFRA_CONTAINER_ID={container_id}",
               **self.env}
        started = time.monotonic()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        boot = [] if self.boot_id_file is None else [
            "sh", "-c", 'mount --bind "$0" /proc/sys/kernel/random/boot_id && exec "$@"',
            str(self.boot_id_file)]
        proc = subprocess.run(
            ["ip", "netns", "exec", self.node_ns, *boot, "env", "-i",
             *(f"{k}={v}" for k, v in env.items()), str(self.bin_dir / plugin["type"])],
            input=json.dumps(stdin), capture_output=True, text=True, timeout=300)
        self.timings.append((plugin["type"], command, time.monotonic() - started))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu.append((plugin["type"], command, after.ru_utime + after.ru_stime
                         - before.ru_utime - before.ru_stime))
        if proc.returncode != 0:
            raise PluginFailed(f"{plugin['type']} {command} {container_id}: exit "
                               f"{proc.returncode}\n{proc.stdout}\n{proc.stderr[-2000:]}")
        return json.loads(proc.stdout) if proc.stdout.strip() else {}

    def add(self, container_id: str, netns: str) -> dict[str, Any]:
        prev: dict[str, Any] | None = None
        for plugin in self.conflist["plugins"]:
            prev = self._exec(plugin, "ADD", container_id, netns, prev)
        assert prev is not None
        self.results[container_id] = prev
        return prev

    def check(self, container_id: str, netns: str) -> None:
        for plugin in self.conflist["plugins"]:
            self._exec(plugin, "CHECK", container_id, netns, self.results[container_id])

    def delete(self, container_id: str, netns: str) -> None:
        prev = self.results.get(container_id)
        for plugin in reversed(self.conflist["plugins"]):
            self._exec(plugin, "DEL", container_id, netns, prev)
        self.results.pop(container_id, None)
