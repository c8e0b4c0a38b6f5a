"""The way into a warm run. The sh launcher (build/launcher.sh) starts from the extraction once
there is one (build/zipapp.py ENTRY), never reading the archive; the archive's own __main__.py
(FAST_MAIN), when it runs, goes straight to the extracted site-packages and never imports
shiv's bootstrap; a first run (or any SHIV_* override) still goes through shiv's bootstrap,
which extracts."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.support.zipapp import PYTHON, Zipapp

pytestmark = pytest.mark.artifact


def imports(zipapp: Zipapp, shiv_root: Path, **env: str) -> tuple[str, str]:
    """Run `python3 -X importtime <cnivpc-ptp symlink>` VERSION; (stdout, the import log)."""
    full = {"PATH": "/usr/bin:/bin", "SHIV_ROOT": str(shiv_root), "CNI_COMMAND": "VERSION",
            **env}
    proc = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in full.items()), PYTHON, "-sSE",
                           "-X", "importtime", str(zipapp.bin / "cnivpc-ptp")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def test_warm_runs_skip_shivs_bootstrap(zipapp: Zipapp, tmp_path: Path) -> None:
    root = tmp_path / "shiv"
    out, first = imports(zipapp, root)
    assert "supportedVersions" in out
    assert "_bootstrap" in first  # nothing extracted yet: shiv's bootstrap extracts
    assert list(root.glob("cnivpc_*/site-packages/cnivpc"))
    out, warm = imports(zipapp, root)
    assert "supportedVersions" in out
    assert "_bootstrap" not in warm and "compileall" not in warm
    _, overridden = imports(zipapp, root, SHIV_FORCE_EXTRACT="1")
    assert "_bootstrap" in overridden  # a SHIV_* setting is honoured by shiv's own code


# Every setting shiv's bootstrap reads besides SHIV_ROOT (shiv.bootstrap.environment).
SHIV_SETTINGS = ("SHIV_INTERPRETER", "SHIV_ENTRY_POINT", "SHIV_CONSOLE_SCRIPT", "SHIV_MODULE",
                 "SHIV_FORCE_EXTRACT", "SHIV_COMPILE_PYC", "SHIV_COMPILE_WORKERS",
                 "SHIV_EXTEND_PYTHONPATH", "SHIV_PREPEND_PYTHONPATH")


@pytest.fixture
def headless(zipapp: Zipapp, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the zipapp, extracted once under its own SHIV_ROOT, then cut down to its sh
    launcher: Python can no longer read it as an archive, so whatever still runs went
    through the launcher's way into the extraction. (its bin dir, its SHIV_ROOT)"""
    bindir, root = tmp_path / "bin", tmp_path / "shiv"
    bindir.mkdir()
    copy = bindir / "cnivpc"
    shutil.copy2(zipapp.path, copy)
    for name in ("cnivpc-ptp", "cnivpc-ipam"):
        (bindir / name).symlink_to("cnivpc")
    env = ["env", "-i", "PATH=/usr/bin:/bin", f"SHIV_ROOT={root}"]
    subprocess.run([*env, str(copy), "--version"], check=True, capture_output=True, timeout=120)
    with zipfile.ZipFile(copy) as zf:
        head = zf.infolist()[0].header_offset  # the launcher's length: entries follow it
    copy.write_bytes(copy.read_bytes()[:head])
    return bindir, root


def run_headless(bindir: Path, root: Path, program: str, *args: str,
                 **env: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": "/usr/bin:/bin", "SHIV_ROOT": str(root), **env}
    return subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in full.items()),
                           str(bindir / program), *args],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_extracted_runs_start_from_the_extraction(headless: tuple[Path, Path]) -> None:
    bindir, root = headless
    ptp = run_headless(bindir, root, "cnivpc-ptp", CNI_COMMAND="VERSION")
    assert ptp.returncode == 0 and "supportedVersions" in ptp.stdout, ptp.stderr[-2000:]
    # argv[0] survives the entry: the dispatch by name still picks the plugin or the CLI
    cli = run_headless(bindir, root, "cnivpc", "version")
    assert cli.returncode == 0 and cli.stdout.startswith("cnivpc "), cli.stderr[-2000:]
    # and the plugin still sees the path it was exec'd by: the fallback name in a CNI error
    bad = run_headless(bindir, root, "cnivpc-ipam", CNI_COMMAND="ADD")
    assert bad.returncode != 0 and '"code"' in bad.stdout, (bad.stdout, bad.stderr[-2000:])


@pytest.mark.parametrize("setting", SHIV_SETTINGS)
def test_a_shiv_setting_takes_the_archives_way(headless: tuple[Path, Path],
                                               setting: str) -> None:
    """With any shiv setting, shiv's own code must see it: the launcher goes through the
    archive (here cut off, so the run fails where it would otherwise have succeeded)."""
    bindir, root = headless
    ok = run_headless(bindir, root, "cnivpc", "version")
    assert ok.returncode == 0, ok.stderr[-2000:]
    gone = run_headless(bindir, root, "cnivpc", "version", **{setting: ""})
    assert gone.returncode != 0, gone.stdout


def test_not_yet_extracted_takes_the_archives_way(headless: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    bindir, _ = headless
    fresh = run_headless(bindir, tmp_path / "elsewhere", "cnivpc", "version")
    assert fresh.returncode != 0 and not (tmp_path / "elsewhere").exists(), fresh.stdout


def test_the_launcher_knows_every_shiv_setting() -> None:
    """SHIV_SETTINGS (and build/launcher.sh, which checks each) against the shiv that builds."""
    from shiv.bootstrap.environment import Environment

    shivs = {v for k, v in vars(Environment).items()
             if k.isupper() and isinstance(v, str) and v.startswith("SHIV_")}
    assert shivs - {"SHIV_ROOT"} == set(SHIV_SETTINGS)
    launcher = (Path(__file__).resolve().parents[2] / "build" / "launcher.sh").read_text()
    for setting in SHIV_SETTINGS:
        assert "${" + setting + "+1}" in launcher, setting
