"""The zipapp's own __main__.py (build/zipapp.py FAST_MAIN): once this build is extracted, a run
goes straight to the extracted site-packages and never imports shiv's bootstrap; a first run
(or any SHIV_* override) still goes through shiv's bootstrap, which extracts."""

from __future__ import annotations

import subprocess
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
