"""The pod-side MASQUERADE rule without ``iptables --version``: ``--random-fully`` first,
the rule without it when the iptables is older than 1.6.2 (a fake iptables on PATH plays
both an old and a new one)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cnivpc.net import iptables
from cnivpc.net.iptables import Iptables
from cnivpc.plugins.ptp.cleanup import change_pod_masq

NEW = 'case "$*" in *" -C "*|*" -D "*) exit 1 ;; esac\n'
# iptables 1.6.1 on --random-fully (exit 2 is iptables' "bad argument").
OLD = ('case "$*" in *--random-fully*) echo "iptables v1.6.1: unknown option '
       '\\"--random-fully\\"" >&2; exit 2 ;; *" -C "*|*" -D "*) exit 1 ;; esac\n')


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """Name: fake. Scope: function. (script to fill, log of calls)."""
    log, script = tmp_path / "calls", tmp_path / "iptables"
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '')}")
    iptables._binary.cache_clear()
    yield script, log
    iptables._binary.cache_clear()


def install(script: Path, log: Path, body: str) -> None:
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\n{body}')
    script.chmod(0o755)


def test_modern_iptables_gets_random_fully_and_no_version_exec(fake: tuple[Path, Path]) -> None:
    script, log = fake
    install(script, log, NEW)
    rule = change_pod_masq(Iptables(), "eth0", True)
    assert rule is not None and "--random-fully" in rule
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and " -A " in calls[0]  # appended unchecked: one exec
    assert not any("--version" in c for c in calls)
    assert change_pod_masq(Iptables(), "eth0", False) is None  # -D: not there (exit 1)


def test_old_iptables_gets_the_rule_without_it(fake: tuple[Path, Path]) -> None:
    script, log = fake
    install(script, log, OLD)
    rule = change_pod_masq(Iptables(), "eth0", True)
    assert rule is not None and "--random-fully" not in rule
    assert log.read_text().splitlines()[-1].startswith("-w 10 -t nat -A POSTROUTING -o eth0 -j "
                                                       "MASQUERADE -m comment")


def test_other_failures_are_not_swallowed(fake: tuple[Path, Path]) -> None:
    script, log = fake
    install(script, log, 'echo "Permission denied (you must be root)" >&2; exit 4\n')
    with pytest.raises(iptables.IptablesError, match="-A POSTROUTING failed"):
        change_pod_masq(Iptables(), "eth0", True)
