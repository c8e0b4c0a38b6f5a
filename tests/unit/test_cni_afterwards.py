"""cnivpc.cni.afterwards: work after the answer, in a detached child. The parent answers and
exits with its own code at once (a runtime reading the pipes to EOF does not wait for the
child); the child is a session leader holding no pipe (fds 0/1/2 on /dev/null), runs its tasks
and exits 0 whatever they do; without fork the tasks run inline. And the dispatcher runs what a
handler registered with ``Request.after_answer`` after the answer, never changing it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cnivpc.cni import afterwards
from cnivpc.cni.plugin import Plugin, Request
from cnivpc.cni.skel import Dispatcher
from cnivpc.cni.types import IPConfig, NetConf, Result

REPO = Path(__file__).resolve().parents[2]

# The "plugin": answers on stdout, leaves a task that reports on its process and then waits for a
# gate, and exits 3. Run by a reaper (a child subreaper, as init is on a node) that reads the
# plugin through pipes to EOF as a runtime does, and only then opens the gate and reaps the
# orphaned child. No timing: if the plugin's answer waited for its task, the two would wait for
# each other until the 60 s timeout, and the test would fail.
PLUGIN = textwrap.dedent("""
    import json, os, sys, time
    from cnivpc.cni import afterwards

    report, gate, fail = sys.argv[1], sys.argv[2], sys.argv[3] == "fail"
    parent = os.getpid()

    def task():
        fds = {}
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                pass
        info = {"pid": os.getpid(), "parent": parent, "sid": os.getsid(0), "fds": fds}
        waited = time.monotonic() + 50
        while not os.path.exists(gate) and time.monotonic() < waited:
            time.sleep(0.02)
        info["gate_opened"] = os.path.exists(gate)
        with open(report, "w") as f:
            json.dump(info, f)
        if fail:
            raise RuntimeError("a failing task")

    print("the answer", flush=True)
    afterwards.run([task], detach=True, deadline=20)
    sys.exit(3)
""")
REAPER = textwrap.dedent("""
    import ctypes, json, os, subprocess, sys, time
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    gate = sys.argv[3]
    proc = subprocess.run([sys.executable, "-c", sys.argv[1], *sys.argv[2:]],
                          capture_output=True, text=True, timeout=60)
    # EOF on both pipes and the plugin's exit status: only now may its task finish.
    open(gate, "w").close()
    pid, status = os.wait()  # the orphaned child, reparented to us
    print(json.dumps({"rc": proc.returncode, "stdout": proc.stdout,
                      "stderr": proc.stderr, "orphan": pid,
                      "orphan_exit": os.waitstatus_to_exitcode(status)}))
""")


def run_plugin(tmp_path: Path, mode: str = "ok") -> tuple[dict[str, Any], dict[str, Any]]:
    report = tmp_path / "report.json"
    gate = tmp_path / "gate"
    proc = subprocess.run([sys.executable, "-c", REAPER, PLUGIN, str(report), str(gate), mode],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), json.loads(report.read_text())


@pytest.mark.parametrize("mode", ["ok", "fail"])
def test_parent_answers_and_exits_at_once_child_runs_detached(tmp_path: Path,
                                                              mode: str) -> None:
    outcome, child = run_plugin(tmp_path, mode)
    # The runtime's view: the answer, the plugin's own exit code, and EOF while the task was
    # still waiting for the gate (the child holds neither pipe, and the parent did not wait).
    assert outcome["stdout"] == "the answer\n"
    assert outcome["rc"] == 3
    assert child["gate_opened"] is True, (outcome, child)
    assert outcome["stderr"] == ""  # a failing task is logged, never printed to the runtime
    # The child: another process, its own session, nothing of the parent's pipes.
    assert child["pid"] != child["parent"] and child["sid"] == child["pid"]
    assert {child["fds"][fd] for fd in ("0", "1", "2")} == {"/dev/null"}
    assert not [t for t in child["fds"].values() if t.startswith(("pipe:", "socket:"))]
    # ... and it exits 0 when its work is done, even when the work failed: no zombie left
    # to whoever reaps orphans.
    assert outcome["orphan"] == child["pid"] and outcome["orphan_exit"] == 0


def test_without_fork_the_tasks_run_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    ran: list[int] = []
    assert afterwards.run([lambda: ran.append(os.getpid())], detach=True, deadline=5) is False
    assert ran == [os.getpid()]


def test_inline_tasks_never_raise() -> None:
    ran: list[str] = []

    def boom() -> None:
        raise SystemExit(9)

    afterwards.run([boom, lambda: ran.append("next")], detach=False, deadline=5)
    assert ran == ["next"]


def test_mode_from_the_environment() -> None:
    assert afterwards.mode(lambda _: None) == "detach"
    assert afterwards.mode({"CNIVPC_AFTERWARDS": "inline"}.get) == "inline"
    assert afterwards.mode({"CNIVPC_AFTERWARDS": " OFF "}.get) == "off"
    assert afterwards.mode({"CNIVPC_AFTERWARDS": "bogus"}.get) == "detach"


# -- the dispatcher ------------------------------------------------------------------------------

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": "/var/run/netns/t",
       "CNI_IFNAME": "eth0"}
CONF = json.dumps({"cniVersion": "1.0.0", "name": "net", "type": "fake"}).encode()


def dispatch(add: Any, env: dict[str, str] | None = None) -> tuple[int, str, list[str]]:
    seen: list[str] = []
    stdout = io.StringIO()

    def handler(req: Request[NetConf]) -> Result:
        return add(req, seen, stdout)

    def nothing(req: Request[NetConf]) -> None:
        return None

    plugin = Plugin(name="fake", conf_model=NetConf, add=handler, delete=nothing,
                    check=nothing, status=nothing, gc=nothing)
    code = Dispatcher("fake", lambda: plugin, getenv={**ENV, **(env or {})}.get,
                      stdin=io.BytesIO(CONF), stdout=stdout, stderr=io.StringIO()).run()
    return code, stdout.getvalue(), seen


RESULT = Result(ips=[IPConfig(address="10.1.2.3/32")])


def test_dispatcher_runs_registered_work_after_the_answer() -> None:
    def add(req: Request[NetConf], seen: list[str], stdout: io.StringIO) -> Result:
        req.after_answer(lambda: seen.append("after: " + stdout.getvalue()[:1]))
        # A request built inside the handler (the fused plugin's per-step ones) registers
        # into the same invocation.
        inner: Request[NetConf] = Request(cmd=req.cmd, conf=req.conf)
        inner.after_answer(lambda: seen.append("inner"))
        return RESULT

    code, out, seen = dispatch(add)
    assert code == 0 and json.loads(out)["ips"][0]["address"] == "10.1.2.3/32"
    assert seen == ["after: {", "inner"]  # the answer was already written


def test_failing_work_changes_neither_answer_nor_code() -> None:
    def add(req: Request[NetConf], seen: list[str], stdout: io.StringIO) -> Result:
        def boom() -> None:
            raise RuntimeError("refill failed")

        req.after_answer(boom)
        req.after_answer(lambda: seen.append("still ran"))
        return RESULT

    code, out, seen = dispatch(add)
    assert code == 0 and "ips" in json.loads(out)
    assert seen == ["still ran"]


def test_afterwards_off_skips_the_work() -> None:
    def add(req: Request[NetConf], seen: list[str], stdout: io.StringIO) -> Result:
        req.after_answer(lambda: seen.append("ran"))
        return RESULT

    assert dispatch(add, {"CNIVPC_AFTERWARDS": "off"})[2] == []
    assert dispatch(add, {"CNIVPC_AFTERWARDS": "inline"})[2] == ["ran"]


def test_requests_outside_a_dispatch_do_not_share_tasks() -> None:
    cmd = Dispatcher  # any object: the field is never looked at
    a: Request[Any] = Request(cmd=cmd, conf=None)  # type: ignore[arg-type]
    b: Request[Any] = Request(cmd=cmd, conf=None)  # type: ignore[arg-type]
    a.after_answer(lambda: None)
    assert len(a.deferred) == 1 and b.deferred == []
