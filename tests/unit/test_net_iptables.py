"""iptables helpers that need no kernel: version parsing, rule parsing, and the command lines
``Iptables`` runs (through a fake binary on PATH)."""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cnivpc.net import iptables
from cnivpc.net.errors import IptablesError
from cnivpc.net.iptables import Iptables, Version, parse_version
from cnivpc.plugins.ptp.cleanup import teardown_masq


@pytest.mark.parametrize(("text", "expected"), [
    ("iptables v1.8.9 (nf_tables)\n", Version((1, 8, 9), "nf_tables")),
    ("iptables v1.8.7 (legacy)", Version((1, 8, 7), "legacy")),
    ("iptables v1.6.1", Version((1, 6, 1), "legacy")),
    ("ip6tables v1.4", Version((1, 4, 0), "legacy")),
])
def test_parse_version(text: str, expected: Version) -> None:
    assert parse_version(text) == expected


def test_random_fully_needs_1_6_2() -> None:
    assert not Version((1, 6, 1), "legacy").random_fully
    assert Version((1, 6, 2), "legacy").random_fully
    assert Version((1, 8, 0), "nf_tables").random_fully


def test_unparseable_version() -> None:
    with pytest.raises(IptablesError):
        parse_version("something else")


def test_rule_parsing_from_listing() -> None:
    line = ('-A POSTROUTING -s 10.0.16.23/32 -m comment --comment '
            '"name: \\"net\\" id: \\"c1\\"" -j CNI-abc')
    words = shlex.split(line)[2:]
    assert iptables.jump_target(words) == "CNI-abc"
    assert iptables.comment_of(words) == 'name: "net" id: "c1"'
    assert iptables.jump_target(["-s", "1.2.3.4"]) is None
    assert iptables.comment_of(["-j", "ACCEPT"]) is None


@pytest.fixture
def fake_iptables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Name: fake_iptables. Scope: function. Depends: tmp_path, monkeypatch.

    An ``iptables`` on PATH that logs its arguments and answers from canned files: exit 1
    for ``-C`` and ``-D`` (rule absent), a fixed ``-S`` listing; an ``iptables-restore``
    that logs its arguments and its stdin."""
    log = tmp_path / "calls"
    listing = tmp_path / "listing"
    listing.write_text('-P POSTROUTING ACCEPT\n-N CNI-abc\n'
                       '-A POSTROUTING -s 10.0.0.5/32 -m comment --comment "x y" -j CNI-abc\n'
                       '-A CNI-abc -d 10.0.0.5/32 -j ACCEPT\n')
    script = tmp_path / "iptables"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        'case "$*" in\n'
        '  *" -C "* | *" -D "*) exit 1 ;;\n'
        f'  *" -S"*) cat {listing} ;;\n'
        '  *--version*) echo "iptables v1.8.9 (nf_tables)" ;;\n'
        '  *" -X "*) echo "busy" >&2; exit 4 ;;\n'
        "esac\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    restore = tmp_path / "iptables-restore"
    restore.write_text(f'#!/bin/sh\necho "restore $*" >> {log}\ncat >> {log}\n')
    restore.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '')}")
    iptables._binary.cache_clear()
    yield log
    iptables._binary.cache_clear()


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines()


def test_commands(fake_iptables: Path) -> None:
    ipt = Iptables(wait_seconds=3)
    assert ipt.append_unique("nat", "POSTROUTING", ["-s", "1.2.3.4", "-j", "ACCEPT"])
    assert calls(fake_iptables) == ["-w 3 -t nat -C POSTROUTING -s 1.2.3.4 -j ACCEPT",
                                    "-w 3 -t nat -A POSTROUTING -s 1.2.3.4 -j ACCEPT"]
    assert not ipt.delete("nat", "POSTROUTING", ["-j", "X"])  # -D exit 1: it was not there
    assert calls(fake_iptables)[-1] == "-w 3 -t nat -D POSTROUTING -j X"
    chains, rules = ipt.listing("nat")
    assert chains == {"POSTROUTING", "CNI-abc"}
    assert rules[0] == ("POSTROUTING", ["-s", "10.0.0.5/32", "-m", "comment", "--comment",
                                        "x y", "-j", "CNI-abc"])
    # Only the rules whose line holds ``containing`` are split; chains are always listed.
    assert ipt.listing("nat", containing="-d 10.0.0.5") == (
        {"POSTROUTING", "CNI-abc"}, [("CNI-abc", ["-d", "10.0.0.5/32", "-j", "ACCEPT"])])
    assert ipt.listing("nat", containing="CNI-missing")[1] == []


def test_failures_carry_the_command_and_stderr(fake_iptables: Path) -> None:
    with pytest.raises(IptablesError) as info:
        Iptables().must("-t", "nat", "-X", "CNI-abc")
    assert info.value.returncode == 4
    assert "-X CNI-abc" in info.value.details and "busy" in info.value.details


def test_missing_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(iptables, "FALLBACK_PATH", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    iptables._binary.cache_clear()
    try:
        with pytest.raises(iptables.IptablesNotFound):
            Iptables().run("-S")
    finally:
        iptables._binary.cache_clear()


def test_listing_a_table_the_kernel_lacks_is_empty(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "ip6tables"
    script.write_text("#!/bin/sh\necho \"ip6tables v1.8.7 (legacy): can't initialize ip6tables "
                      "table \\`nat': Table does not exist (do you need to insmod?)\" >&2\n"
                      "exit 3\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(iptables, "FALLBACK_PATH", str(tmp_path))
    iptables._binary.cache_clear()
    try:
        assert Iptables(ipv6=True).listing("nat") == (set(), [])
        # what ptp's DEL does with it: nothing to remove, and no iptables-restore run
        assert teardown_masq(Iptables(ipv6=True), "CNI-x") is False
    finally:
        iptables._binary.cache_clear()


def test_apply_is_one_restore_with_every_table(fake_iptables: Path) -> None:
    Iptables(wait_seconds=3).apply({
        "nat": [["-N", "CNI-x"], ["-A", "CNI-x", "-j", "ACCEPT", "-m", "comment", "--comment",
                                  'name: "net" id: "c1"']],
        "mangle": [],
        "raw": [["-D", "PREROUTING", "-s", "1.2.3.4"]]})
    assert calls(fake_iptables) == [
        "restore -w 3 --noflush", "*nat", "-N CNI-x",
        '-A CNI-x -j ACCEPT -m comment --comment "name: \\"net\\" id: \\"c1\\""', "COMMIT",
        "*raw", "-D PREROUTING -s 1.2.3.4", "COMMIT"]
    Iptables().apply({"nat": []})  # nothing to do: no exec
    assert len(calls(fake_iptables)) == 8


@pytest.mark.parametrize(("word", "quoted"), [
    ("ACCEPT", "ACCEPT"), ("", '""'), ("a b", '"a b"'), ('x"y', '"x\\"y"'),
    ("a\\b", '"a\\\\b"')])
def test_restore_quoting(word: str, quoted: str) -> None:
    assert iptables.restore_word(word) == quoted
    assert shlex.split(quoted) == [word]  # the same reading as iptables-restore's


def test_restore_refuses_line_breaks() -> None:
    with pytest.raises(ValueError, match="line break"):
        iptables.restore_word("a\nb")


NODEPORT = ["-i", "eth0", "-p", "tcp", "--dport", "30000:32767", "-j", "CONNMARK",
            "--set-mark", "0x2000", "-m", "comment", "--comment", "NodePort Mark"]
LISTED = shlex.split('-i eth0 -p tcp -m tcp --dport 30000:32767 -m comment --comment '
                     '"NodePort Mark" -j CONNMARK --set-xmark 0x2000/0xffffffff')


def test_covers_reads_rules_as_iptables_lists_them() -> None:
    assert iptables.covers(LISTED, NODEPORT)
    assert iptables.covers(shlex.split("-s 10.0.0.5/32 -j CNI-a"),
                           ["-s", "10.0.0.5", "-j", "CNI-a"])
    restore = ["-i", "cnp+", "-j", "CONNMARK", "--restore-mark"]
    assert iptables.covers(shlex.split("-i cnp+ -j CONNMARK --restore-mark --nfmask 0xffffffff "
                                       "--ctmask 0xffffffff"), restore)


@pytest.mark.parametrize(("index", "other"), [(1, "eth1"), (5, "80"), (9, "0x4000")])
def test_covers_misses_any_other_value(index: int, other: str) -> None:
    rule = list(NODEPORT)
    rule[index] = other
    assert not iptables.covers(LISTED, rule)
