"""Build the cnivpc zipapp: ``<out>/cnivpc`` and the ``<out>/bin/cnivpc-{ipam,ipvlan,ptp}``
symlinks (relative, to ``../cnivpc``) that run it as each CNI plugin.

The recipe (each step exists so that two builds of one commit are byte-identical and the
artifact carries only what runs on a node):
wheel of the project (without cnivpc/lab) → ``pip install --target`` with the pinned runtime
dependencies only → scrub what makes trees differ between checkouts (``bin/``,
``direct_url.json``, RECORD lines for them, pycs, file modes) → trim botocore's data to EC2
(build/trim_botocore.py) → ``shiv --reproducible`` with ``SOURCE_DATE_EPOCH`` = the HEAD commit
time. Two builds of one commit on one machine are byte-identical.

Stdlib only; runs under the dev venv's python, whose pip and shiv it uses. It must not import
cnivpc or anything the zipapp ships: those are handled as files.

    .venv/bin/python build/zipapp.py [--out DIR] [--work DIR] [--python INTERP] [--root DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import trim_botocore  # build/ is sys.path[0] when this file runs as a script

REPO = Path(__file__).resolve().parent.parent
PLUGIN_LINKS = ("cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp")
ENTRY_POINT = "cnivpc.__main__:main"
# -s: no user site-packages; -E: no PYTHON* variables (the runtime passes its environment on);
# -S: no site module at all, so nothing of the node's system Python (dist-packages, its .pth
# files, sitecustomize, Ubuntu's apport hook) is imported or can shadow what the zipapp
# carries, and start-up is shorter (python3 -c pass here: 50 ms with site, 10 ms without).
INTERPRETER_FLAGS = "-sSE"
DEFAULT_PYTHON = "/usr/bin/python3"
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


def install(wheel: Path, site: Path, constraints: Path) -> None:
    run([sys.executable, "-m", "pip", "install", "-q", "--target", str(site), "--no-compile",
         "--only-binary", ":all:", "--no-warn-script-location", "-c", str(constraints),
         str(wheel)])


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


def check_interpreter(python: str) -> None:
    """pydantic-core is a compiled cpXY extension: the target interpreter must be our minor."""
    if not os.path.exists(python):
        log(f"warning: {python} does not exist here; not checking its version")
        return
    out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         check=True, capture_output=True, text=True).stdout.strip()
    ours = "{}.{}".format(*sys.version_info[:2])
    if out != ours:
        raise SystemExit(f"zipapp: {python} is Python {out}, but the wheels are installed for "
                         f"{ours}; build with a venv made from that interpreter")


# The archive's __main__.py, in front of shiv's bootstrap. shiv's own start-up (its _bootstrap
# package, shipped as source and so recompiled on every run, plus the imports it makes) costs
# tens of ms on every exec even when the extraction exists; a plugin is exec'd three times
# per pod. When this build's extraction is there, go straight to it; otherwise (first run, or
# a SHIV_* override) hand over to shiv's bootstrap, which extracts and runs as usual.
FAST_MAIN = """\
# cnivpc: fast path in front of shiv's bootstrap (build/zipapp.py explains why).
import os
import sys


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


def install_fast_main(path: Path) -> None:
    """Rewrite the archive with FAST_MAIN as its __main__.py; every other entry (order, time
    stamps, modes, compression) is copied as it is, so builds stay reproducible."""
    data = path.read_bytes()
    shebang = data[:data.index(b"\n") + 1]
    with zipfile.ZipFile(path) as zin:
        env = json.loads(zin.read("environment.json"))
        entries = [(info, zin.read(info)) for info in zin.infolist()]
    body = FAST_MAIN.format(root=env["root"], build_id=env["build_id"]).encode()
    buf = io.BytesIO()
    buf.write(shebang)
    with zipfile.ZipFile(buf, "w") as zout:
        for info, content in entries:
            zout.writestr(info, body if info.filename == "__main__.py" else content)
    path.write_bytes(buf.getvalue())
    path.chmod(0o755)


def build(out: Path, work: Path, python: str, root: str, project: Path = REPO) -> Path:
    started = time.monotonic()
    check_interpreter(python)
    if work.exists():
        shutil.rmtree(work)
    src, wheels, site = work / "src", work / "wheels", work / "site-packages"
    for d in (src, wheels, site):
        d.mkdir(parents=True)
    stage_source(project, src)
    wheel = build_wheel(src, wheels)
    install(wheel, site, REPO / "build" / "constraints.txt")
    scrub(site)
    stats = trim_botocore.trim(site / "botocore" / "data")
    log(f"botocore data {stats['before'] / 1e6:.1f} MB -> {stats['after'] / 1e6:.2f} MB "
        f"({stats['operations']} operations, {stats['shapes']} shapes)")
    rewrite_records(site)
    normalize_modes(site)

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".cnivpc.tmp"
    env = clean_env()
    env["SOURCE_DATE_EPOCH"] = source_epoch()
    shiv_args = ["--site-packages", str(site), "-e", ENTRY_POINT,
                 "-p", f"{python} {INTERPRETER_FLAGS}", "--root", root, "--compile-pyc",
                 "--reproducible", "-o", str(tmp)]
    log(f"SOURCE_DATE_EPOCH={env['SOURCE_DATE_EPOCH']} shiv {' '.join(shiv_args)}")
    subprocess.run([sys.executable, "-c", SHIV_SORTED_BOOTSTRAP, *shiv_args], check=True,
                   env=env)
    install_fast_main(tmp)
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
    parser.add_argument("--python", default=os.environ.get("CNIVPC_PYTHON", DEFAULT_PYTHON),
                        help="interpreter in the shebang (env CNIVPC_PYTHON; default %(default)s)")
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
    build(out, work, args.python, args.root, args.src.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
