"""Guest tasks keep their complete vector registers across task switches (inside UML).

vector_workload.c runs 8 threads of one process (one host process under UML, so every switch
between them moves the FPU/vector state through UML's ptrace save/restore, and through
build/uml/xstate_shim.c where the host needs it): each loads a pattern of its own into every
vector register the CPU has (zmm0-31 with AVX-512), yields, and checks them; each also checks
memcpy's output, which glibc does with AVX/AVX-512 registers on these CPUs. A shim that kept only
the first part of the state corrupts both (measured with a deliberately naive one: 1854
mismatches in 2400 rounds).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.uml

SOURCE = Path(__file__).with_name("vector_workload.c")


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_threads_keep_their_vector_registers_across_switches(tmp_path: Path) -> None:
    binary = tmp_path / "vector_workload"
    build = subprocess.run(["cc", "-O2", "-pthread", "-o", str(binary), str(SOURCE)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    proc = subprocess.run([str(binary)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fields = proc.stdout.split()
    report = dict(zip(fields[::2], fields[1::2], strict=True))
    assert report["mismatches"] == "0"
    assert report["copies"] == str(int(report["rounds"]) * int(report["threads"]))
    flags = cpu_flags()
    expected = "avx512" if "avx512f" in flags else "avx" if "avx" in flags else "sse"
    assert report["isa"] == expected
