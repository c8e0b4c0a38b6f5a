"""net helpers that need no root: netns path checks (never creating anything), running in a
netns, gratuitous ARP frames, sysctl key validation, and the lazy pyroute2 import."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnivpc.net import arp, netns, sysctl
from cnivpc.net.errors import NetnsNotFound, NotANetns


def test_missing_netns_is_not_found_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "gone"
    with pytest.raises(NetnsNotFound):
        netns.check(str(path))
    with pytest.raises(NetnsNotFound), netns.open_fd(str(path)):
        pass
    assert not path.exists()  # pyroute2's O_CREAT default would have made one
    assert not netns.exists(str(path))


def test_regular_file_is_not_a_netns(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(NotANetns) as info:
        netns.check(str(path))
    assert info.value.code == 4


def test_proc_paths() -> None:
    netns.check("/proc/self/ns/net")
    with netns.open_fd("/proc/self/ns/net") as fd:
        assert fd >= 0
    # procfs, but a mount namespace: the ioctl check tells them apart.
    with pytest.raises(NotANetns), netns.open_fd("/proc/self/ns/mnt"):
        pass


def test_run_in_current_and_errors_cross_the_thread() -> None:
    assert netns.run_in(None, lambda: 42) == 42
    if os.geteuid() != 0:
        pytest.skip("setns needs root")
    assert netns.run_in("/proc/self/ns/net", lambda: 7) == 7

    def boom() -> None:
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        netns.run_in("/proc/self/ns/net", boom)


def test_gratuitous_arp_frame() -> None:
    frame = arp.frame("02:00:00:00:00:01", ipaddress.IPv4Address("10.0.16.23"))
    assert len(frame) == 42
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == bytes.fromhex("020000000001")
    assert frame[12:14] == b"\x08\x06"
    assert frame[20:22] == b"\x00\x01"  # request, as arping -U
    sender_ip, target_ip = frame[28:32], frame[38:42]
    assert sender_ip == target_ip == bytes([10, 0, 16, 23])
    with pytest.raises(ValueError):
        arp.frame("02:00", ipaddress.IPv4Address("10.0.0.1"))


def test_sysctl_keys() -> None:
    assert sysctl.read("kernel/ostype") == "Linux"
    with pytest.raises(ValueError):
        sysctl.read("net/../../etc/passwd")
    with pytest.raises(sysctl.SysctlError):
        sysctl.read("net/ipv4/conf/nonexistent0/rp_filter")


def test_pyroute2_lazy_import_keeps_the_full_package_usable() -> None:
    code = (
        "import sys\n"
        "from cnivpc.net import netns, links\n"
        "with netns.iproute() as ipr: links.get(ipr, 'lo')\n"
        "assert 'pyroute2.ndb' not in sys.modules, 'the heavy __init__ ran'\n"
        "assert 'multiprocessing' not in sys.modules, 'the real pyroute2.config ran'\n"
        "from pyroute2 import IPRoute, NDB\n"
        "with IPRoute() as ipr: ipr.get_links()\n"
        "from pyroute2 import config\n"
        "print(IPRoute.__name__, NDB.__name__, config.AF_BRIDGE, type(config.kernel).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["IPRoute", "NDB", "7", "list"]


def test_a_fifo_or_a_device_is_refused_before_any_open(tmp_path: Path) -> None:
    """Opening a FIFO would block and a device could act: neither is on nsfs, so neither is
    opened."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/null"):
        with pytest.raises(NotANetns) as info, netns.open_fd(path):
            pass
        assert "not on nsfs" in str(info.value.details), info.value.details


def test_without_proc_statfs_decides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "_nsfs_device", lambda: None)
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(NotANetns) as info:
        netns.check(str(path))
    assert "neither nsfs nor procfs" in str(info.value.details)
    netns.check("/proc/self/ns/net")
    with pytest.raises(NetnsNotFound):
        netns.check(str(tmp_path / "gone"))


SETNS_PROBE = """
import sys
from cnivpc.net import netns
assert netns.run_in("/proc/self/ns/net", lambda: 42) == 42
print("ctypes" in sys.modules)
"""


def test_no_ctypes_where_the_stdlib_has_setns() -> None:
    """CPython 3.12+ has os.setns: entering a namespace loads no ctypes (nor libffi)."""
    from tests.support.zipapp import python_for

    newer = python_for("3.12") or python_for("3.13") or python_for("3.14")
    if newer is None:
        pytest.skip("MISSING INTERPRETER: no CPython 3.12+ here to check os.setns with")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([newer, "-sSE", "-c", SETNS_PROBE], capture_output=True, text=True,
                          cwd=repo, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, "False"), proc.stderr
