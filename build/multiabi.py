"""One runtime tree for every supported CPython and architecture (build/zipapp.py uses it).

The zipapp's dependencies are pure Python except pydantic-core, whose compiled extension is
built per interpreter (cp310 … cp314) and per architecture. CPython picks an extension module by
its ABI suffix (``_pydantic_core.cpython-312-aarch64-linux-gnu.so``), so the extensions of every
target can sit side by side in one package directory; each interpreter loads its own and never
looks at the others. This module owns:

- the target matrix (TARGETS) and the wheelhouse under build/work, a cache of every wheel the
  zipapp is made from, so a repeated build is offline (pip runs with ``--no-index`` against it;
  only a missing wheel is downloaded, under a lock, since a test session and the UML step can
  build at the same time);
- ``add_extensions``: every compiled distribution's files from its wheel for each target, the
  shared (pure) files checked byte-identical between those wheels;
- ``check_requirements``: every distribution's Requires-Python admits every target interpreter
  and every requirement that applies to a target (its markers evaluated for that interpreter
  and machine) is installed at a matching version;
- ``check_complete``: the artifact holds every extension for every target, each an ELF for the
  right machine; the build fails loudly otherwise (also ``python build/multiabi.py ZIPAPP``).

Stdlib plus ``packaging`` (in the dev venv); never imports cnivpc or anything the zipapp ships.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14")
ARCHES = ("x86_64", "aarch64")
# glibc 2.17 (manylinux2014): what pydantic-core publishes, and older than any distribution a
# node runs (Amazon Linux 2023 has 2.34, Ubuntu 22.04 2.35, Debian 12 2.36).
MANYLINUX = ("manylinux2014_{arch}", "manylinux_2_17_{arch}")
# e_machine in the ELF header (offset 18, little-endian) for each architecture.
ELF_MACHINE = {"x86_64": 0x3E, "aarch64": 0xB7}
EXT_RE = re.compile(r"^(?P<stem>.+)\.cpython-(?P<abi>3\d+)-(?P<arch>[a-z0-9_]+)-linux-gnu\.so$")


@dataclass(frozen=True)
class Target:
    python: str  # "3.12"
    arch: str    # "x86_64"

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def suffix(self) -> str:
        """The extension suffix this interpreter loads (importlib.machinery.EXTENSION_SUFFIXES)."""
        return f".cpython-{self.abi[2:]}-{self.arch}-linux-gnu.so"

    def pip_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--implementation", "cp", "--python-version",
                self.python, "--abi", self.abi, "--abi", "abi3", "--abi", "none"]
        for tag in MANYLINUX:
            args += ["--platform", tag.format(arch=self.arch)]
        return args

    def __str__(self) -> str:
        return f"cp{self.abi[2:]}-{self.arch}"


def targets(arches: tuple[str, ...] = ARCHES) -> list[Target]:
    return [Target(p, a) for a in arches for p in PYTHONS]


def log(msg: str) -> None:
    print(f"zipapp: {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def locked(wheelhouse: Path) -> Iterator[None]:
    wheelhouse.mkdir(parents=True, exist_ok=True)
    with open(wheelhouse / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def pip(args: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def install_offline_first(wheelhouse: Path, install: list[str], download: list[str]) -> None:
    """pip ``install`` from the wheelhouse alone; if a wheel is missing there, ``download`` it
    into the wheelhouse (the only step that may touch the network) and install again."""
    offline = ["--no-index", "--find-links", str(wheelhouse)]
    if pip([*install, *offline]).returncode == 0:
        return
    with locked(wheelhouse):
        log(f"fetching into {wheelhouse}: pip download {' '.join(download)}")
        got = pip(["download", "-q", "-d", str(wheelhouse), *download])
        if got.returncode != 0:
            raise SystemExit(f"zipapp: pip download failed:\n{got.stderr[-3000:]}")
    done = pip([*install, *offline])
    if done.returncode != 0:
        raise SystemExit(f"zipapp: pip install failed:\n{done.stderr[-3000:]}")


def _dist_info(site: Path) -> list[Path]:
    return sorted(site.glob("*.dist-info"))


def _metadata(info: Path) -> tuple[str, str, list[str], str]:
    msg = Parser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
    return (msg["Name"], msg["Version"], msg.get_all("Requires-Dist") or [],
            msg.get("Requires-Python") or "")


def _is_pure(info: Path) -> bool:
    wheel = Parser().parsestr((info / "WHEEL").read_text(encoding="utf-8"))
    return all(tag.endswith("-none-any") for tag in wheel.get_all("Tag") or [])


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_for(wheelhouse: Path, name: str, version: str, target: Target) -> Path:
    """The wheel of ``name==version`` for ``target`` from the wheelhouse, downloaded if absent."""
    pattern = f"{_norm(name)}-{version}-{target.abi}-{target.abi}-*{target.arch}*.whl"

    def found() -> Path | None:
        hits = sorted(wheelhouse.glob(pattern))
        return hits[0] if hits else None

    hit = found()
    if hit is None:
        with locked(wheelhouse):
            hit = found()
            if hit is None:
                log(f"fetching {name}=={version} for {target}")
                got = pip(["download", "-q", "--no-deps", "-d", str(wheelhouse),
                           *target.pip_args(), f"{name}=={version}"])
                if got.returncode != 0:
                    raise SystemExit(f"zipapp: no {name}=={version} wheel for {target} "
                                     f"(pip download failed):\n{got.stderr[-3000:]}")
                hit = found()
    if hit is None:
        raise SystemExit(f"zipapp: pip fetched no wheel matching {pattern}")
    return hit


def add_extensions(site: Path, wheelhouse: Path, wanted: list[Target]) -> list[str]:
    """Add every compiled distribution's files for every target; returns the added paths."""
    added: list[str] = []
    for info in _dist_info(site):
        if _is_pure(info):
            continue
        name, version, _, _ = _metadata(info)
        tags = set(Parser().parsestr((info / "WHEEL").read_text(encoding="utf-8"))
                   .get_all("Tag") or [])
        record = (info / "RECORD").read_text(encoding="utf-8").splitlines()
        for target in wanted:
            whl = wheel_for(wheelhouse, name, version, target)
            with zipfile.ZipFile(whl) as zf:
                for entry in zf.infolist():
                    if entry.is_dir():
                        continue
                    rel = entry.filename
                    data = zf.read(entry)
                    if rel == f"{info.name}/WHEEL":
                        tags.update(Parser().parsestr(data.decode()).get_all("Tag") or [])
                        continue
                    if rel.startswith(f"{info.name}/"):
                        continue  # RECORD is rewritten; METADATA etc. checked equal below
                    dst = site / rel
                    if dst.exists():
                        if dst.read_bytes() != data:
                            raise SystemExit(f"zipapp: {rel} differs between the {name} wheels "
                                             f"(here and {whl.name}): cannot share one tree")
                        continue
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_bytes(data)
                    record.append(f"{rel},,")
                    added.append(rel)
        # WHEEL lists every tag this tree now serves, sorted (reproducible).
        wheel_text = (info / "WHEEL").read_text(encoding="utf-8").splitlines()
        kept = [line for line in wheel_text if not line.startswith("Tag:")]
        kept += [f"Tag: {t}" for t in sorted(tags)]
        (info / "WHEEL").write_text("\n".join(kept) + "\n", encoding="utf-8")
        (info / "RECORD").write_text("\n".join(record) + "\n", encoding="utf-8")
    return sorted(added)


def check_requirements(site: Path, wanted: list[Target]) -> None:
    """Every installed distribution runs on every target interpreter, and every requirement
    that applies there is met by what is installed."""
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name

    installed = {}
    metas = []
    for info in _dist_info(site):
        name, version, requires, requires_python = _metadata(info)
        installed[canonicalize_name(name)] = version
        metas.append((name, version, requires, requires_python))
    problems = []
    for name, version, requires, requires_python in metas:
        for target in wanted:
            full = f"{target.python}.0"
            if requires_python and full not in SpecifierSet(requires_python):
                problems.append(f"{name} {version} requires Python {requires_python}: "
                                f"not {target.python}")
            env = {"python_version": target.python, "python_full_version": full,
                   "platform_machine": target.arch, "sys_platform": "linux",
                   "platform_system": "Linux", "os_name": "posix",
                   "implementation_name": "cpython",
                   "platform_python_implementation": "CPython", "extra": ""}
            for line in requires:
                req = Requirement(line)
                if req.marker is not None and not req.marker.evaluate(env):
                    continue
                have = installed.get(canonicalize_name(req.name))
                if have is None:
                    problems.append(f"{name} needs {req} on {target}: not installed")
                elif have not in req.specifier:
                    problems.append(f"{name} needs {req} on {target}: {have} installed")
    if problems:
        raise SystemExit("zipapp: the runtime tree does not fit every target:\n  "
                         + "\n  ".join(sorted(set(problems))))


def check_complete(zipapp: Path, wanted: list[Target]) -> list[str]:
    """Problems (empty when complete): every extension module of the archive must exist for
    every target, as an ELF for that target's machine."""
    stems: dict[str, set[tuple[str, str]]] = {}
    problems: list[str] = []
    with zipfile.ZipFile(zipapp) as zf:
        for info in zf.infolist():
            base = info.filename.rsplit("/", 1)[-1]
            m = EXT_RE.match(base)
            if m is None:
                if base.endswith(".so"):
                    problems.append(f"{info.filename}: a shared object without a CPython ABI "
                                    f"suffix (which interpreter loads it?)")
                continue
            stem = info.filename[:-len(base)] + m["stem"]
            stems.setdefault(stem, set()).add((m["abi"], m["arch"]))
            head = zf.open(info).read(20)
            want = ELF_MACHINE.get(m["arch"])
            if head[:4] != b"\x7fELF" or int.from_bytes(head[18:20], "little") != want:
                problems.append(f"{info.filename}: not an ELF for {m['arch']}")
    if not stems:
        problems.append("no extension module at all (pydantic-core's is expected)")
    for stem, have in sorted(stems.items()):
        for target in wanted:
            if (target.abi[2:], target.arch) not in have:
                problems.append(f"missing {stem}{target.suffix} ({target})")
        extra = have - {(t.abi[2:], t.arch) for t in wanted}
        problems += [f"unexpected {stem}.cpython-{abi}-{arch}-linux-gnu.so"
                     for abi, arch in sorted(extra)]
    return problems


def main(argv: list[str]) -> int:
    """``python build/multiabi.py ZIPAPP [ARCH...]``: the completeness check on its own."""
    if not argv:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    arches = tuple(argv[1:]) or ARCHES
    problems = check_complete(Path(argv[0]), targets(arches))
    for p in problems:
        print(f"INCOMPLETE: {p}", file=sys.stderr)
    if not problems:
        print(f"complete: {len(targets(arches))} targets ({', '.join(map(str, targets(arches)))})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
