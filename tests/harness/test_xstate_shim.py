"""The UML harness on every x86-64 host: build/uml/xstate_shim.c and run-in-uml's post-mortem.

On CPUs whose user XSAVE area is larger than UML's fixed register buffer (AMX), the host kernel
refuses UML's short PTRACE_SETREGSET with EFAULT and UML dies at its first task switch. The shim
makes these calls full-size and keeps, per guest task, the bytes UML's buffer cannot hold. These
tests check its buffer logic against the size THIS host's kernel reports (xstate_driver.c plays
UML with a 576-byte buffer, so every AVX and AVX-512 byte lies beyond it), and that run-in-uml
names the cause in one line when UML dies before the command starts. The vector workload inside
UML is tests/uml/test_vector_state.py.

Imports nothing of cnivpc.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_IN_UML = REPO / "build" / "uml" / "run-in-uml"
DRIVER = Path(__file__).with_name("xstate_driver.c")

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="XSTATE is x86-64's")


@pytest.fixture(scope="module")
def shim() -> Path:
    """Name: shim. Scope: module. The .so run-in-uml preloads, built the way it builds it."""
    proc = subprocess.run([str(RUN_IN_UML), "--build-shim"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert path.is_file() and path.suffix == ".so"
    return path


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Name: driver. Scope: module. xstate_driver.c compiled with the host's cc."""
    out = tmp_path_factory.mktemp("xstate") / "driver"
    proc = subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-o", str(out), str(DRIVER)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


def run_driver(driver: Path, preload: Path | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if preload is not None:
        env["LD_PRELOAD"] = str(preload)
    return subprocess.run([str(driver)], env=env, capture_output=True, text=True, timeout=60)


def test_shim_gives_each_task_back_its_complete_state(shim: Path, driver: Path) -> None:
    proc = run_driver(driver, shim)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "short SETs restore each task's complete state: ok" in lines
    assert "short SET of an unread buffer: ok" in lines
    assert "full-size GET passes through: ok" in lines
    host_size, short = (int(x) for x in lines[-1].split()[1:])
    # The size the host kernel reports for a full GET is the one the shim must write back.
    assert host_size > short == 576


def test_without_the_shim_the_host_refuses_a_short_set(driver: Path) -> None:
    # What UML meets on an AMX host, shown on this one with a buffer shorter than its area: the
    # driver must fail exactly there, so the test above cannot pass without the shim's work.
    proc = run_driver(driver, None)
    assert proc.returncode == 1
    assert "raw short SET: EFAULT (the host's rule)" in proc.stdout
    assert proc.stdout.rstrip().endswith("FAIL: short SET t1 through the shim failed")


def test_run_in_uml_names_the_cause_when_uml_dies_before_the_command(
    tmp_path: Path, require_root: None
) -> None:
    # The shim's test knob fails every XSTATE SET with EFAULT, as the host kernel does on an AMX
    # CPU without the shim: a real UML boot dies of it, and run-in-uml must say so in one line,
    # quickly, with its "UML failed" status -- never as a skipped or passed command.
    marker = tmp_path / "ran"
    env = {**os.environ, "CNL_UML_XSTATE_FAKE_EFAULT": "1"}
    start = time.monotonic()
    proc = subprocess.run([str(RUN_IN_UML), "-t", "90", "--", "touch", str(marker)], env=env,
                          capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode == 125, proc.stderr
    assert not marker.exists()
    died = [line for line in proc.stderr.splitlines() if "UML died" in line]
    assert died == [
        f"run-in-uml: UML died (exit {died[0].split('exit ')[1].split(')')[0]}) before the command"
        " started: userspace - ptrace set fp regs failed, errno = 14"
    ], proc.stderr
    assert "hint: the host refused UML's vector-register buffer" in proc.stderr
    assert elapsed < 60, f"UML's death took {elapsed:.0f} s to report"


def test_run_in_uml_runs_commands_with_the_shim(tmp_path: Path, require_root: None) -> None:
    marker = tmp_path / "ran"
    proc = subprocess.run([str(RUN_IN_UML), "-t", "90", "--", "sh", "-c",
                           f"echo guest > {marker}; exit 7"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 7, proc.stderr
    assert marker.read_text() == "guest\n"
