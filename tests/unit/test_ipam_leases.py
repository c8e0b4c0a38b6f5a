"""In-flight EC2 work is alive exactly while its process is: leases, not pids.

An op (an Assign or a Create+Attach some IPAM process is doing) is recorded so concurrent ADDs
wait for its IPs. It used to be judged alive by kill(recorded pid, 0): a process in another pid
namespace (the DaemonSet's containers, ``kubectl exec``, ``unshare -p``) records a pid that means
another process on the host, and a SIGKILLed op then never expired: every ADD that needed a new
ENI waited on it and failed. Now the op holds a flock the kernel drops when its holder dies.
Real processes, real pid namespaces (root), a real state file.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cnivpc.plugins.ipam.store import LEASE_DIR, LEASE_MAX_AGE, Store

REPO = Path(__file__).resolve().parents[2]

# Starts an op in its own store handle, says so, and waits to be killed.
HOLDER = """
import os, sys, time
from cnivpc.plugins.ipam.store import Store
store = Store.open(sys.argv[1], boot_id="boot-a")
with store.transaction():
    op_id = store.start_op("create", 3, device_index=2)
print(op_id, os.getpid(), flush=True)
time.sleep(300)
"""


def start_holder(data_dir: Path, *prefix: str) -> tuple[subprocess.Popen[str], int, int]:
    proc = subprocess.Popen([*prefix, sys.executable, "-c", HOLDER, str(data_dir)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, "the holder died before starting its op"
    op_id, pid = (int(x) for x in line.split())
    return proc, op_id, pid


def live_ops(data_dir: Path) -> list[int]:
    with Store.open(str(data_dir), boot_id="boot-a") as store, store.transaction():
        return [op.id for op in store.ops()]


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.stdout is not None
    proc.stdout.close()


def test_op_lives_while_its_process_does_and_is_forgotten_when_it_is_killed(
    tmp_path: Path,
) -> None:
    proc, op_id, _ = start_holder(tmp_path)
    try:
        assert live_ops(tmp_path) == [op_id]
        assert live_ops(tmp_path) == [op_id]  # looking does not end it
    finally:
        kill(proc)
    assert live_ops(tmp_path) == []
    assert not (tmp_path / LEASE_DIR / str(op_id)).exists()


def test_op_of_a_process_in_its_own_pid_namespace(tmp_path: Path, require_root: None) -> None:
    # Inside `unshare -pf` the holder is pid 1 of its namespace: the pid it records names the
    # host's init, which kill(pid, 0) finds alive forever. The lease does not care.
    proc, op_id, pid = start_holder(tmp_path, "unshare", "--pid", "--fork", "--kill-child")
    try:
        assert pid == 1
        assert live_ops(tmp_path) == [op_id]
    finally:
        kill(proc)
    # unshare's --kill-child signals the holder when unshare dies, a moment later.
    deadline = time.monotonic() + 10
    while live_ops(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert live_ops(tmp_path) == []


def test_own_ops_are_alive_and_finish_removes_the_lease(tmp_path: Path) -> None:
    with Store.open(str(tmp_path), boot_id="boot-a") as store:
        with store.transaction():
            op_id = store.start_op("assign", 2, eni_id="eni-1")
            assert [op.id for op in store.ops()] == [op_id]
        assert (tmp_path / LEASE_DIR / str(op_id)).exists()
        with store.transaction():
            store.finish_op(op_id)
            assert store.ops() == []
        assert not (tmp_path / LEASE_DIR / str(op_id)).exists()


def test_an_op_past_the_age_cap_is_forgotten_even_if_held(tmp_path: Path) -> None:
    now = [1000.0]
    with Store.open(str(tmp_path), boot_id="boot-a", clock=lambda: now[0]) as store:
        with store.transaction():
            store.start_op("create", 1, device_index=3)
        now[0] += LEASE_MAX_AGE - 1
        with store.transaction():
            assert len(store.ops()) == 1
        now[0] += 2
        with store.transaction():
            assert store.ops() == []


def test_a_new_boot_forgets_ops_and_their_leases(tmp_path: Path) -> None:
    proc, _, _ = start_holder(tmp_path)
    try:
        with Store.open(str(tmp_path), boot_id="boot-b") as store, store.transaction():
            assert store.ops() == []
        assert list((tmp_path / LEASE_DIR).iterdir()) == []
    finally:
        kill(proc)


def _open_and_close(data_dir: str, results: multiprocessing.Queue[str]) -> None:
    try:
        Store.open(data_dir, boot_id="boot-a").close()
        results.put("ok")
    except Exception as exc:  # the test reports whatever it was
        results.put(repr(exc))


def test_a_fresh_state_file_opened_by_four_processes_at_once(tmp_path: Path) -> None:
    # A fresh node's first burst: before the open was serialised, 1 trial in 6 had an ADD answer
    # "IPAM state ... is busy or unreadable" (database is locked while switching to WAL).
    ctx = multiprocessing.get_context("fork")
    failures = []
    for trial in range(12):
        data_dir = tmp_path / f"trial{trial}"
        results: multiprocessing.Queue[str] = ctx.Queue()
        procs = [ctx.Process(target=_open_and_close, args=(str(data_dir), results))
                 for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        outcomes = [results.get(timeout=10) for _ in procs]
        failures += [o for o in outcomes if o != "ok"]
    assert failures == []


def _open_close_many(data_dir: str, rounds: int, results: multiprocessing.Queue[str]) -> None:
    try:
        for _ in range(rounds):
            Store.open(data_dir, boot_id="boot-a").close()
        results.put("ok")
    except Exception as exc:  # the test reports whatever it was
        results.put(repr(exc))


def test_opens_and_closes_by_many_processes_never_fail(tmp_path: Path) -> None:
    # sqlite deletes -wal and -shm when the last connection closes, in another process, while
    # this one is checking their modes: 16 concurrent DELs once failed on exactly that.
    ctx = multiprocessing.get_context("fork")
    Store.open(str(tmp_path), boot_id="boot-a").close()
    results: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_open_close_many, args=(str(tmp_path), 150, results))
             for _ in range(12)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [results.get(timeout=10) for _ in procs] == ["ok"] * 12
