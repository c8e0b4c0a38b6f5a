"""Build the cnivpc zipapp: ``<out>/cnivpc`` and the ``<out>/bin/cnivpc-{ipam,ipvlan,ptp}``
symlinks (relative, to ``../cnivpc``) that run it as each CNI plugin. One file runs on CPython
3.10 to 3.14, on x86_64 and aarch64 (``--arch`` builds a smaller one for one architecture).

The recipe (each step exists so that two builds of one commit are byte-identical, the artifact
carries only what runs on a node, and it runs on every target):
wheel of the project (without cnivpc/lab) → ``pip install --target`` of the pinned runtime
dependencies as resolved for the oldest target (3.10), from the wheelhouse under build/work
(build/multiabi.py: filled once from PyPI, offline after) → every compiled extension added for
every other target (multiabi.add_extensions) and every requirement checked for every target
(multiabi.check_requirements) → scrub what makes trees differ between checkouts (``bin/``,
``direct_url.json``, RECORD lines for them, pycs, file modes) → trim botocore's data to EC2
(build/trim_botocore.py) → ENTRY added to site-packages → ``shiv --reproducible`` with
``SOURCE_DATE_EPOCH`` = the HEAD commit time → the archive's head becomes build/launcher.sh (it
picks the node's interpreter, and starts from the extraction through ENTRY once there is one)
and its ``__main__.py`` FAST_MAIN → the completeness check (multiabi.check_complete): a
build missing any extension for any target fails. Two builds of one commit on one machine are
byte-identical.

Stdlib (and ``packaging``, for the requirement check) only; runs under the dev venv's python,
whose pip and shiv it uses. It must not import cnivpc or anything the zipapp ships: those are
handled as files.

    .venv/bin/python build/zipapp.py [--out DIR] [--work DIR] [--root DIR] [--arch A]...
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import multiabi  # build/ is sys.path[0] when this file runs as a script
import trim_botocore

REPO = Path(__file__).resolve().parent.parent
PLUGIN_LINKS = ("cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp")
ENTRY_POINT = "cnivpc.__main__:main"
# The archive's head: a POSIX sh prologue that finds the interpreter and execs it with -sSE
# on the archive (launcher.sh says how and why). -s: no user site-packages; -E: no PYTHON*
# variables (the runtime passes its environment on); -S: no site module at all, so nothing of
# the node's system Python (dist-packages, its .pth files, sitecustomize, Ubuntu's apport hook)
# is imported or can shadow what the zipapp carries, and start-up is shorter (python3 -c pass
# here: 50 ms with site, 10 ms without).
LAUNCHER = Path(__file__).resolve().parent / "launcher.sh"
# shiv's own shebang, replaced by LAUNCHER; shiv needs one to build.
SHIV_PYTHON = "/bin/false"
DEFAULT_ROOT = "/var/lib/cnivpc/shiv"
# What goes into the wheel. cnivpc/lab (the simulated VPC) never ships.
SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE")
EXCLUDED_PACKAGES = ("lab",)


# shiv adds its own _bootstrap/*.py in directory order (on ext4 a per-filesystem hash order),
# so one commit built on two machines could differ in entry order. Run shiv with that one
# listing sorted by name; everything else shiv already sorts.
SHIV_SORTED_BOOTSTRAP = """\
import shiv.builder
from shiv.cli import main
unsorted = shiv.builder.iter_package_files
shiv.builder.iter_package_files = lambda package: sorted(unsorted(package), key=lambda f: f[1])
main(prog_name="shiv")
"""


def log(msg: str) -> None:
    print(f"zipapp: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, env=env)


def clean_env() -> dict[str, str]:
    """Our environment without SHIV_* (they would change what shiv bakes in or runs)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SHIV_")}


def source_epoch() -> str:
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return os.environ["SOURCE_DATE_EPOCH"]
    out = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct", "HEAD"],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def stage_source(project: Path, dst: Path) -> None:
    """Copy what the wheel is built from: builds in-tree would write into our build/ dir."""
    for name in SOURCE_FILES:
        shutil.copy2(project / name, dst / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")

    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = set(skip(directory, names))
        if Path(directory) == project / "cnivpc":
            ignored.update(n for n in names if n in EXCLUDED_PACKAGES)
        return ignored

    shutil.copytree(project / "cnivpc", dst / "cnivpc", ignore=ignore)


def build_wheel(src: Path, wheels: Path) -> Path:
    # --no-build-isolation: use the venv's pinned setuptools (no download, same result).
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(src)])
    (wheel,) = wheels.glob("cnivpc-*.whl")
    return wheel


def install(wheel: Path, site: Path, constraints: Path, wheelhouse: Path,
            base: multiabi.Target) -> None:
    """The project and its pinned dependencies as pip resolves them for ``base`` (the oldest
    interpreter: version markers there pull in whatever backport a newer one does without)."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [line.split(":", 1)[1].strip() for line in zf.read(meta).decode().splitlines()
                    if line.startswith("Requires-Dist:") and "extra ==" not in line]
    pinned = ["-c", str(constraints), *base.pip_args()]
    log(f"pip install --target {site} (for {base}) {wheel.name}")
    multiabi.install_offline_first(
        wheelhouse,
        install=["install", "-q", "--target", str(site), "--no-compile",
                 "--no-warn-script-location", *pinned, str(wheel)],
        download=[*pinned, *requires])


def scrub(site: Path) -> None:
    """Remove what differs between checkouts or is useless in the zipapp, then make RECORD
    files list exactly what is left, sorted."""
    shutil.rmtree(site / "bin", ignore_errors=True)
    for name in EXCLUDED_PACKAGES:
        shutil.rmtree(site / "cnivpc" / name, ignore_errors=True)
    for path in list(site.rglob("direct_url.json")):
        path.unlink()
    for path in list(site.rglob("__pycache__")):
        shutil.rmtree(path)
    for path in list(site.rglob("*.pyc")):
        path.unlink()


def rewrite_records(site: Path) -> None:
    for record in sorted(site.glob("*.dist-info/RECORD")):
        lines = []
        for line in record.read_text(encoding="utf-8").splitlines():
            rel = line.split(",", 1)[0]
            target = (site / rel).resolve()
            # Drop entries for deleted files and anything outside the tree (../../bin/...).
            if site.resolve() not in target.parents or not target.exists():
                continue
            if target == record.resolve():
                continue
            data = target.read_bytes()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            lines.append(f"{rel},sha256={digest.decode()},{len(data)}")
        lines.sort()
        lines.append(f"{record.relative_to(site)},,")
        record.write_text("\n".join(lines) + "\n", encoding="utf-8")


def normalize_modes(site: Path) -> None:
    """shiv stores each file's mode; make it independent of the umask and of pip."""
    for path in site.rglob("*"):
        if path.is_dir() or path.suffix == ".so":
            path.chmod(0o755)
        else:
            path.chmod(0o644)


# The archive's __main__.py, in front of shiv's bootstrap. shiv's own start-up (its _bootstrap
# package, shipped as source and so recompiled on every run, plus the imports it makes) costs
# tens of ms on every exec even when the extraction exists; a plugin is exec'd three times
# per pod. When this build's extraction is there, go straight to it; otherwise (first run, or
# a SHIV_* override) hand over to shiv's bootstrap, which extracts and runs as usual.
#
# It first refuses, clearly, an interpreter or machine the archive has no extension for (the
# launcher's override can name any python): on stderr, and as a CNI error on stdout when run as
# a plugin (a DEL succeeds: a plugin that cannot start set nothing up). Written for any
# Python 3 (no f-strings): it must be able to say why it cannot run.
FAST_MAIN = """\
# cnivpc: fast path in front of shiv's bootstrap (build/zipapp.py explains why).
import os
import sys

if sys.version_info[:2] not in {pythons!r} or os.uname()[4] not in {arches!r}:
    _why = "cnivpc: this file runs on CPython %s on %s, not %d.%d on %s" % (
        ", ".join("%d.%d" % v for v in {pythons!r}), "/".join({arches!r}),
        sys.version_info[0], sys.version_info[1], os.uname()[4])
    sys.stderr.write(_why + "\\n")
    _plugin = os.path.basename(sys.argv[0]).startswith("cnivpc-") or (
        os.environ.get("CNI_COMMAND") and len(sys.argv) == 1)
    if not _plugin:
        sys.exit(127)
    if os.environ.get("CNI_COMMAND") == "DEL":
        sys.exit(0)
    import json

    try:
        _ver = str(json.load(sys.stdin).get("cniVersion") or "1.0.0")
    except Exception:
        _ver = "1.0.0"
    sys.stdout.write(json.dumps({{"cniVersion": _ver, "code": 50, "msg": _why,
                                 "details": "pick another interpreter (CNIVPC_PYTHON)"}}) + "\\n")
    sys.exit(1)


def _extracted():
    if any(k.startswith("SHIV_") and k != "SHIV_ROOT" for k in os.environ):
        return None
    root = os.path.expanduser(os.environ.get("SHIV_ROOT") or {root!r})
    name = os.path.basename(os.path.realpath(sys.argv[0]))
    site = os.path.join(root, name + "_" + {build_id!r}, "site-packages")
    return site if os.path.isdir(os.path.join(site, "cnivpc")) else None


_site = _extracted()
if _site is None:
    import _bootstrap

    _bootstrap.bootstrap()
else:
    # Before the interpreter's own site/dist-packages, as shiv's bootstrap places it.
    _at = next((i for i, p in enumerate(sys.path)
                if p.endswith(("site-packages", "dist-packages"))), len(sys.path))
    sys.path.insert(_at, _site)
    from cnivpc.__main__ import main

    sys.exit(main())
"""


# The launcher's way in once this build is extracted (launcher.sh says when it takes it), added
# to site-packages as ENTRY_NAME: `python -sSE <it> <the path the runtime exec'd> [args]`. The
# interpreter runs a script from its source (no bytecode cache), so it stays this short. Plain
# syntax: an interpreter the build does not support (CNIVPC_PYTHON may name any) must reach the
# check, which hands over to the archive's own __main__ (FAST_MAIN) to say why in the form the
# caller needs (a CNI error, exit 127).
ENTRY_NAME = "_cnivpc_entry.py"
ENTRY = """\
# cnivpc: the launcher's way in once this build is extracted (build/zipapp.py ENTRY).
import os
import sys

if sys.version_info[:2] not in {pythons!r} or os.uname()[4] not in {arches!r}:
    os.execv(sys.executable, [sys.executable, "-sSE"] + sys.argv[1:])
# sys.path[0] is this file's directory, the extracted site-packages: put it where shiv's
# bootstrap and the archive's __main__ put it, after the standard library.
_site = sys.path.pop(0)
_at = next((i for i, p in enumerate(sys.path)
            if p.endswith(("site-packages", "dist-packages"))), len(sys.path))
sys.path.insert(_at, _site)
del sys.argv[0]  # sys.argv[0] is the path the runtime exec'd again: the dispatch is by name
from cnivpc import _fastimport

_fastimport.install(_site)  # fewer system calls per import (cnivpc/_fastimport.py)
from cnivpc.__main__ import main

sys.exit(main())
"""
# What the launcher's build-time words may hold: they are pasted into sh unquoted.
SAFE_ROOT = re.compile(r"~?[A-Za-z0-9_./+-]*")


def targets_text(arches: tuple[str, ...]) -> dict[str, object]:
    """The interpreters and machines the build runs on, as FAST_MAIN and ENTRY check them."""
    pythons = tuple(tuple(int(n) for n in v.split(".")) for v in multiabi.PYTHONS)
    return {"pythons": pythons, "arches": arches}


def add_entry(site: Path, arches: tuple[str, ...]) -> None:
    (site / ENTRY_NAME).write_text(ENTRY.format(**targets_text(arches)))


def launcher(root: str, build_id: str) -> bytes:
    """build/launcher.sh with this build's extraction root, build id and entry filled in."""
    if not SAFE_ROOT.fullmatch(root):
        raise SystemExit(f"zipapp: --root {root!r}: use letters, digits and _./+- only "
                         "(a leading ~ is allowed); the launcher pastes it into sh")
    text = LAUNCHER.read_text()
    for word, value in (("@ROOT@", root), ("@BUILD_ID@", build_id), ("@ENTRY@", ENTRY_NAME)):
        assert word in text, word
        text = text.replace(word, value)
    return text.encode()


def install_fast_main(path: Path, arches: tuple[str, ...]) -> None:
    """Rewrite the archive with LAUNCHER as its head and FAST_MAIN as its __main__.py; every
    other entry (order, time stamps, modes, compression) is copied as it is, so builds stay
    reproducible."""
    with zipfile.ZipFile(path) as zin:
        env = json.loads(zin.read("environment.json"))
        entries = [(info, zin.read(info)) for info in zin.infolist()]
    body = FAST_MAIN.format(root=env["root"], build_id=env["build_id"],
                            **targets_text(arches)).encode()
    buf = io.BytesIO()
    buf.write(launcher(env["root"], env["build_id"]))
    with zipfile.ZipFile(buf, "w") as zout:
        for info, content in entries:
            zout.writestr(info, body if info.filename == "__main__.py" else content)
    path.write_bytes(buf.getvalue())
    path.chmod(0o755)


def build(out: Path, work: Path, root: str, project: Path = REPO,
          arches: tuple[str, ...] = multiabi.ARCHES, wheelhouse: Path | None = None) -> Path:
    started = time.monotonic()
    wanted = multiabi.targets(arches)
    wheelhouse = wheelhouse or REPO / "build" / "work" / "wheelhouse"
    src, wheels, site = work / "src", work / "wheels", work / "site-packages"
    for d in (src, wheels, site):  # not the whole of work: the wheelhouse may live there
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    stage_source(project, src)
    wheel = build_wheel(src, wheels)
    install(wheel, site, REPO / "build" / "constraints.txt", wheelhouse, wanted[0])
    added = multiabi.add_extensions(site, wheelhouse, wanted)
    log(f"extensions for {len(wanted)} targets ({', '.join(map(str, wanted))}): "
        f"{len(added)} files added")
    multiabi.check_requirements(site, wanted)
    scrub(site)
    stats = trim_botocore.trim(site / "botocore" / "data")
    log(f"botocore data {stats['before'] / 1e6:.1f} MB -> {stats['after'] / 1e6:.2f} MB "
        f"({stats['operations']} operations, {stats['shapes']} shapes)")
    rewrite_records(site)
    add_entry(site, arches)
    normalize_modes(site)

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".cnivpc.tmp"
    env = clean_env()
    env["SOURCE_DATE_EPOCH"] = source_epoch()
    shiv_args = ["--site-packages", str(site), "-e", ENTRY_POINT,
                 "-p", SHIV_PYTHON, "--root", root, "--compile-pyc",
                 "--reproducible", "-o", str(tmp)]
    log(f"SOURCE_DATE_EPOCH={env['SOURCE_DATE_EPOCH']} shiv {' '.join(shiv_args)}")
    subprocess.run([sys.executable, "-c", SHIV_SORTED_BOOTSTRAP, *shiv_args], check=True,
                   env=env)
    install_fast_main(tmp, arches)
    problems = multiabi.check_complete(tmp, wanted)
    if problems:
        tmp.unlink()
        raise SystemExit("zipapp: INCOMPLETE build, not installed:\n  " + "\n  ".join(problems))
    log(f"complete: every extension for {len(wanted)} targets")
    target = out / "cnivpc"
    os.replace(tmp, target)  # rename: a running copy keeps its old inode
    bindir = out / "bin"
    bindir.mkdir(exist_ok=True)
    for name in PLUGIN_LINKS:
        link = bindir / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("../cnivpc")
    with zipfile.ZipFile(target) as zf:
        entries = len(zf.infolist())
        build_id = json.loads(zf.read("environment.json"))["build_id"]
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    log(f"built {target}: {target.stat().st_size / 1e6:.2f} MB, {entries} entries, "
        f"build_id {build_id[:12]}, sha256 {digest[:12]}, "
        f"{time.monotonic() - started:.1f} s")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="build the cnivpc zipapp")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "out",
                        help="output directory (default build/out)")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch directory, wiped first (default <out>/../work)")
    parser.add_argument("--arch", action="append", choices=multiabi.ARCHES,
                        help="build for this architecture only (repeatable; default: all, "
                             "one artifact for every node)")
    parser.add_argument("--wheelhouse", type=Path, default=None,
                        help="wheel cache (default build/work/wheelhouse; kept across builds)")
    parser.add_argument("--root", default=os.environ.get("CNIVPC_SHIV_ROOT", DEFAULT_ROOT),
                        help="extraction root baked in (env CNIVPC_SHIV_ROOT; "
                             "default %(default)s; SHIV_ROOT overrides it at run time)")
    parser.add_argument("--src", type=Path, default=REPO,
                        help="project tree to build (pyproject.toml, README.md, LICENSE, "
                             "cnivpc/); default: this checkout")
    args = parser.parse_args(argv)
    if not os.path.isabs(args.root):
        parser.error("--root must be an absolute path (shiv resolves '$VAR' and relative "
                     "roots against the environment and the working directory)")
    out = args.out.resolve()
    work = (args.work or out.parent / "work").resolve()
    arches = tuple(a for a in multiabi.ARCHES if a in (args.arch or multiabi.ARCHES))
    build(out, work, args.root, args.src.resolve(), arches,
          args.wheelhouse.resolve() if args.wheelhouse else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
