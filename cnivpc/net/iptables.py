"""The one place iptables is run: ``iptables``/``ip6tables`` with ``-w`` (wait for the xtables
lock instead of failing when kube-proxy holds it), in the current netns or inside another one.

Rules are argument lists exactly as given to ``-A``/``-C``/``-D`` (``["-s", "10.0.0.5",
"-j", "CNI-..."]``); listed rules come back from ``-S`` split the same way, so a listed rule
can be deleted as it is. Works with both backends (``nf_tables`` and ``legacy``): only the
iptables command line is used, never nft directly.

Every exec counts: a plugin's ADD used to run iptables once per rule (check, then append), 14
execs for a pod with ipMasq, and an exec costs 2-10 ms of CPU on a node and 0.2-0.4 s under
user-mode-linux. So changes go through :meth:`Iptables.apply` (one ``iptables-restore
--noflush`` for any number of commands, each table committed atomically, in order), which can
also declare a chain (``[DECLARE, chain]``: created, or flushed when it exists) and check rules
(``["-C", chain, *rule]``: a missing one fails its table's commit, and :meth:`Iptables.attempt`
reports that instead of raising); "is it there already" is otherwise answered from one ``-S``
listing (:func:`covers`) where possible.

Imports nothing of cnivpc but ``net.errors`` and ``net.netns``.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from . import netns
from .errors import IptablesError, IptablesNotFound

# Plugins run with whatever PATH the runtime has (sometimes none): also look where
# distributions install iptables.
FALLBACK_PATH = "/usr/sbin:/sbin:/usr/bin:/bin:/usr/local/sbin"
TIMEOUT_SECONDS = 30.0
RANDOM_FULLY_SINCE = (1, 6, 2)
# What iptables-legacy says when the kernel has no such table.
TABLE_MISSING = "Table does not exist"
# An apply() command declaring a chain: ``:CHAIN - [0:0]`` in iptables-restore's input, which
# creates the chain or, with --noflush, flushes it when it exists (both backends).
DECLARE = ":"


# A NamedTuple, not a dataclass: the plugin path never imports dataclasses (with inspect and
# ast it costs ~6 ms per exec, and each class ~0.4 ms to create; a NamedTuple 0.06 ms).
class Version(NamedTuple):
    """``iptables --version``: the release and the backend ("nf_tables" or "legacy")."""

    release: tuple[int, int, int]
    backend: str

    @property
    def random_fully(self) -> bool:
        """MASQUERADE --random-fully exists from iptables 1.6.2 (and needs a kernel that has
        it, which every kernel with nf_tables has)."""
        return self.release >= RANDOM_FULLY_SINCE


def parse_version(text: str) -> Version:
    """``iptables v1.8.9 (nf_tables)`` -> Version((1, 8, 9), "nf_tables")."""
    match = re.search(r"v(\d+)\.(\d+)(?:\.(\d+))?(?:\s+\((\w+)\))?", text)
    if not match:
        raise IptablesError("cannot parse the iptables version", text.strip())
    major, minor, patch, backend = match.groups()
    return Version((int(major), int(minor), int(patch or 0)), backend or "legacy")


@functools.cache
def _binary(name: str) -> str:
    # Not shutil.which: shutil imports bz2 and lzma (two shared libraries loaded per exec,
    # ~0.1 s under user-mode-linux) for this one lookup.
    # Relative PATH entries (and the empty one, meaning the cwd) are skipped: a plugin must
    # not run whatever iptables lies in the directory the runtime happened to start it in.
    for directory in [*os.environ.get("PATH", "").split(os.pathsep),
                      *FALLBACK_PATH.split(os.pathsep)]:
        path = os.path.join(directory, name)
        if os.path.isabs(path) and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise IptablesNotFound(f"{name} not found",
                           f"looked in PATH and {FALLBACK_PATH}; install iptables")


class Iptables(NamedTuple):
    """iptables (or ip6tables with ``ipv6``) acting in the netns at ``netns_path`` (the
    current one when None)."""

    ipv6: bool = False
    netns_path: str | None = None
    wait_seconds: int = 10

    @property
    def name(self) -> str:
        return "ip6tables" if self.ipv6 else "iptables"

    def run(self, *args: str, tool: str = "", stdin: str | None = None
            ) -> subprocess.CompletedProcess[str]:
        """Run one command (of ``<name><tool>``, e.g. ``iptables-restore``); the result is
        returned whatever the exit status."""
        argv = [_binary(self.name + tool), "-w", str(self.wait_seconds), *args]
        env = {"PATH": os.environ.get("PATH") or FALLBACK_PATH, "LC_ALL": "C"}

        def body() -> subprocess.CompletedProcess[str]:
            # Forked while in the netns, so iptables runs in that netns (see netns.run_in).
            return subprocess.run(argv, capture_output=True, text=True, env=env, input=stdin,
                                  timeout=TIMEOUT_SECONDS, check=False)

        try:
            return netns.run_in(self.netns_path, body)
        except subprocess.TimeoutExpired as exc:
            raise IptablesError(f"{self.name} timed out", shlex.join(argv)) from exc
        except OSError as exc:
            raise IptablesError(f"cannot run {self.name}", str(exc)) from exc

    def must(self, *args: str) -> str:
        """Run a command that has to succeed; its stdout."""
        done = self.run(*args)
        if done.returncode != 0:
            raise IptablesError(f"{self.name} {' '.join(args[:4])} failed",
                                f"{shlex.join(args)}: {done.stderr.strip()}",
                                returncode=done.returncode)
        return done.stdout

    def version(self) -> Version:
        """The binary's version (the same in every netns, so asked once per process)."""
        return _version(self.ipv6)

    def exists(self, table: str, chain: str, rule: Sequence[str]) -> bool:
        """True if ``rule`` is in ``chain`` (False as well when the chain does not exist)."""
        done = self.run("-t", table, "-C", chain, *rule)
        if done.returncode == 0:
            return True
        if done.returncode == 1:
            return False
        raise IptablesError(f"{self.name} -C {chain} failed",
                            f"{shlex.join(rule)}: {done.stderr.strip()}",
                            returncode=done.returncode)

    def append(self, table: str, chain: str, rule: Sequence[str]) -> bool:
        """Append ``rule`` (one exec, no check); True."""
        self.must("-t", table, "-A", chain, *rule)
        return True

    def append_unique(self, table: str, chain: str, rule: Sequence[str]) -> bool:
        """Append ``rule`` unless it is there already; True if it was appended."""
        if self.exists(table, chain, rule):
            return False
        self.must("-t", table, "-A", chain, *rule)
        return True

    def delete(self, table: str, chain: str, rule: Sequence[str]) -> bool:
        """Delete ``rule`` if present; True if it was there. One exec: ``-D`` exits 1 when
        there is no such rule (or chain), like ``-C``."""
        done = self.run("-t", table, "-D", chain, *rule)
        if done.returncode in (0, 1):
            return done.returncode == 0
        raise IptablesError(f"{self.name} -D {chain} failed",
                            f"{shlex.join(rule)}: {done.stderr.strip()}",
                            returncode=done.returncode)

    def apply(self, commands: Mapping[str, Sequence[Sequence[str]]]) -> None:
        """Run ``{table: [command, ...]}`` (each command an argument list as given to
        iptables after ``-t table``: ``["-N", chain]``, ``["-A", chain, *rule]``, ``["-D",
        ...]``, ``["-F", chain]``, ``["-X", chain]``, ``["-C", chain, *rule]``, or
        ``[DECLARE, chain]``) in one ``iptables-restore --noflush``. Each table's commands
        land together or not at all, the tables in the order given."""
        done, script = self._restore(commands)
        if done is not None and done.returncode != 0:
            raise IptablesError(f"{self.name}-restore failed",
                                f"{done.stderr.strip()}; input: {' / '.join(script)}",
                                returncode=done.returncode)

    def attempt(self, commands: Mapping[str, Sequence[Sequence[str]]]) -> bool:
        """``apply``, reporting a refused input (a ``-C`` that found no rule, a ``-D`` of a
        missing one) as False instead of raising: the tables before the failing one are
        committed, that one and those after are not. Only a failure to run it raises."""
        done, _ = self._restore(commands)
        return done is None or done.returncode == 0

    def _restore(self, commands: Mapping[str, Sequence[Sequence[str]]]
                 ) -> tuple[subprocess.CompletedProcess[str] | None, list[str]]:
        script = []
        for table, lines in commands.items():
            if lines:
                script += [f"*{table}", *(restore_line(line) for line in lines), "COMMIT"]
        if not script:
            return None, script
        return self.run("--noflush", tool="-restore", stdin="\n".join(script) + "\n"), script

    def listing(self, table: str, containing: str = ""
                ) -> tuple[set[str], list[tuple[str, list[str]]]]:
        """One ``-S`` of ``table``: its chains, and every rule as (chain, rule args); only
        the rules whose line holds ``containing`` when given. (kube-proxy's nat table on a
        busy node has tens of thousands of rules: splitting each the shell's way would take
        longer than the exec.)"""
        chains: set[str] = set()
        rules: list[tuple[str, list[str]]] = []
        done = self.run("-t", table, "-S")
        if done.returncode != 0 and TABLE_MISSING in done.stderr:
            # legacy backend without the table's kernel module (e.g. no ip6table_nat): a
            # table the kernel lacks holds nothing, which is what DEL and GC need to know.
            return chains, rules
        if done.returncode != 0:
            raise IptablesError(f"{self.name} -t {table} -S failed", done.stderr.strip(),
                                returncode=done.returncode)
        for line in done.stdout.splitlines():
            if line.startswith(("-N ", "-P ")):
                chains.add(line.split()[1])  # chain names hold no blanks or quotes
            elif line.startswith("-A ") and containing in line:
                words = shlex.split(line)
                rules.append((words[1], words[2:]))
        return chains, rules


@functools.cache
def _version(ipv6: bool) -> Version:
    return parse_version(Iptables(ipv6=ipv6).must("--version"))


def restore_line(command: Sequence[str]) -> str:
    """One ``apply`` command as a line of iptables-restore's input."""
    if command and command[0] == DECLARE:
        return f":{restore_word(command[1])} - [0:0]"
    return " ".join(map(restore_word, command))


def restore_word(word: str) -> str:
    """One argument as iptables-restore reads it: quoted when it holds blanks or quotes
    (comments do: ``name: "net" id: "c1"``), with ``\\`` and ``\"`` escaped inside."""
    if "\n" in word or "\r" in word:
        raise ValueError(f"an iptables argument cannot hold a line break: {word!r}")
    if word and not any(c in word for c in ' \t"\'\\'):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


# How ``-S`` prints what we write: CONNMARK --set-mark M is listed as --set-xmark
# M/0xffffffff (iptables' own translation; both backends).
_LISTED_AS = {"--set-mark": lambda v: ("--set-xmark", f"{v}/0xffffffff")}


def covers(listed: Sequence[str], rule: Sequence[str]) -> bool:
    """True if the listed rule (from ``-S``) is ``rule``: every option of ``rule`` appears in
    it with the same value, ``-S`` adding only implied matches (``-m tcp``) and defaults
    (``--nfmask``). A miss is never wrong, only costly: callers confirm with ``-C``
    before appending."""
    words = list(listed)
    pairs = set(zip(words, [*words[1:], ""], strict=True))
    i = 0
    while i < len(rule):
        word = rule[i]
        value = rule[i + 1] if i + 1 < len(rule) and not rule[i + 1].startswith("-") else None
        if value is None:
            if word not in words:
                return False
            i += 1
            continue
        if word in _LISTED_AS:
            word, value = _LISTED_AS[word](value)
        if (word, value) not in pairs and not (
                word in ("-s", "-d", "--source", "--destination") and "/" not in value
                and any((word, f"{value}/{n}") in pairs for n in (32, 128))):
            return False
        i += 2
    return True


def jump_target(rule: Sequence[str]) -> str | None:
    """The ``-j`` target of a rule given as arguments, if any."""
    for i, word in enumerate(rule[:-1]):
        if word in ("-j", "--jump"):
            return rule[i + 1]
    return None


def comment_of(rule: Sequence[str]) -> str | None:
    """The ``--comment`` of a rule given as arguments, if any."""
    for i, word in enumerate(rule[:-1]):
        if word == "--comment":
            return rule[i + 1]
    return None
