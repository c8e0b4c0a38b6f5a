"""Which CNI spec versions the container runtimes on this node can parse, for ``cnivpc doctor``.

A runtime does not parse plugin results itself: it hands them to the libcni it was built with,
and libcni rejects a result whose ``cniVersion`` it does not know ("unsupported CNI result
version"). Plugins must answer in the conflist's version (the spec says so, and cnivpc does),
so a conflist newer than the node's libcni fails every ADD. Nothing on the node says which
libcni a runtime carries except its version, so this maps runtime versions to the libcni their
releases pin (each project's go.mod) and that libcni to the newest spec version it parses:

==========================  =====================  ==========================
runtime                     libcni it pins         newest cniVersion it parses
==========================  =====================  ==========================
containerd < 1.6            0.7 / 0.8              0.4.0
containerd 1.6, 1.7         1.0 / 1.1 (go-cni 1.1)  1.0.0
containerd >= 2.0           1.2                    1.1.0
CRI-O < 1.23                0.8 (ocicni)           0.4.0
CRI-O 1.23 .. 1.30          1.0 / 1.1              1.0.0
CRI-O >= 1.31               1.2                    1.1.0
podman 4.x (CNI backend)    1.1                    1.0.0
==========================  =====================  ==========================

podman 5 has no CNI backend (netavark only), so it reads no conflist and is not listed.
libcni 1.2 (2024-04) is the first to know spec 1.1.0 (and GC, STATUS); 1.0 and 1.1 stop at
1.0.0. A version this table cannot place is reported as unknown, never guessed.

Stdlib only; runs ``<runtime> --version`` (read-only, short timeout).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

# Searched besides PATH: where packages and the EKS/Bottlerocket-style installs put them.
EXTRA_DIRS = ("/usr/local/bin", "/usr/bin", "/usr/local/sbin", "/usr/sbin", "/bin")
# The runtimes a kubelet talks to: a conflist they cannot parse breaks every pod.
CRI_RUNTIMES = ("containerd", "crio")
RUNTIMES = (*CRI_RUNTIMES, "podman")

_VERSION = re.compile(r"\bv?(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class Runtime:
    name: str
    version: tuple[int, int, int]
    path: str

    @property
    def text(self) -> str:
        return f"{self.name} {'.'.join(map(str, self.version))}"


def newest_cni_version(name: str, version: tuple[int, int, int]) -> str | None:
    """The newest cniVersion the libcni in this runtime release parses (None: unknown)."""
    major, minor = version[:2]
    if name == "containerd":
        if major >= 2:
            return "1.1.0"
        if major == 1:
            return "1.0.0" if minor >= 6 else "0.4.0"
    elif name == "crio":
        if major == 1:
            return "1.1.0" if minor >= 31 else "1.0.0" if minor >= 23 else "0.4.0"
    elif name == "podman" and major == 4:
        return "1.0.0"
    return None


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The first x.y.z in a ``--version`` output (containerd's module path holds none)."""
    match = _VERSION.search(text)
    if match is None:
        return None
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def find(name: str, path: str | None = None) -> str | None:
    dirs = (path if path is not None else os.environ.get("PATH", "")).split(os.pathsep)
    for directory in [*dirs, *EXTRA_DIRS]:
        if directory and (found := shutil.which(name, path=directory)):
            return found
    return None


def installed(path: str | None = None, timeout: float = 5.0) -> list[Runtime]:
    """The runtimes found on this node with the version each reports."""
    found = []
    for name in RUNTIMES:
        exe = find(name, path)
        if exe is None:
            continue
        try:
            proc = subprocess.run([exe, "--version"], capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        version = parse_version(proc.stdout + "\n" + proc.stderr)
        if version is not None:
            found.append(Runtime(name, version, exe))
    return found
