"""cnivpc._fastimport, in a fresh interpreter per case: the extraction's submodules are found
by listing, every module is read with fewer system calls, and what is imported is what the
standard machinery would import: the same files, .pyc validated and written as usual."""

from __future__ import annotations

import compileall
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
sys.path.append(sys.argv[1])
sys.path.insert(0, sys.argv[2])
from cnivpc import _fastimport
sys.path.pop(0)
_fastimport.install(sys.argv[1])
import pkg.mod, pkg.sub.deep, pkg.fresh, pkg.ext_ns.inner, email.mime.text
out = {}
for name in ("pkg", "pkg.mod", "pkg.sub", "pkg.sub.deep", "pkg.fresh", "pkg.ext_ns.inner",
             "email.mime.text"):
    m = sys.modules[name]
    out[name] = {"loader": type(m.__spec__.loader).__name__, "file": m.__file__,
                 "value": getattr(m, "VALUE", None),
                 "co": m.where.__code__.co_filename if hasattr(m, "where") else None}
finder = next(f for f in sys.meta_path if type(f).__name__ == "ExtractedFinder")
out["_listed"] = {"file": sorted(finder.listings)}
print(json.dumps(out))
"""


def tree(root: Path) -> Path:
    """A site-packages with a package, a subpackage, a namespace subpackage and a module with
    no .pyc yet, compiled elsewhere and moved in (as shiv does)."""
    staging = root / "staging"
    files = {"pkg/__init__.py": "VALUE = 'pkg'\ndef where(): pass\n",
             "pkg/mod.py": "VALUE = 'mod'\ndef where(): pass\n",
             "pkg/sub/__init__.py": "VALUE = 'sub'\n",
             "pkg/sub/deep.py": "VALUE = 'deep'\ndef where(): pass\n",
             "pkg/ext_ns/inner.py": "VALUE = 'inner'\n"}
    for name, text in files.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_text(text)
    assert compileall.compile_dir(staging, quiet=2)
    site = root / "site-packages"
    shutil.move(staging, site)
    (site / "pkg" / "fresh.py").write_text("VALUE = 'fresh'\n")  # no .pyc: written on import
    return site


def probe(site: Path) -> dict[str, dict[str, str | None]]:
    proc = subprocess.run([sys.executable, "-sSE", "-c", PROBE, str(site), str(REPO)],
                          capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    result: dict[str, dict[str, str | None]] = json.loads(proc.stdout)
    return result


def test_the_extraction_imports_as_the_standard_machinery_would(tmp_path: Path) -> None:
    site = tree(tmp_path)
    out = probe(site)
    # a top-level name keeps sys.path's order: the standard finder, with the cheaper reads
    assert out["pkg"]["loader"] == "SourceLoader" and out["pkg"]["value"] == "pkg"
    for name in ("pkg.mod", "pkg.sub", "pkg.sub.deep", "pkg.fresh"):
        assert out[name]["loader"] == "SourceLoader", (name, out[name])
    assert out["pkg.sub.deep"]["file"] == str(site / "pkg" / "sub" / "deep.py")
    # the submodules were found by the listings (each directory listed once), not by stats
    assert out["_listed"]["file"] == sorted(str(site / d) for d in (
        "pkg", "pkg/ext_ns", "pkg/sub"))
    # compiled in the staging directory, the code names where it is now
    assert out["pkg.mod"]["co"] == str(site / "pkg" / "mod.py")
    assert out["pkg.sub.deep"]["value"] == "deep"
    # no .pyc for this interpreter yet: the standard way compiles it and writes one
    assert out["pkg.fresh"]["value"] == "fresh"
    assert list((site / "pkg" / "__pycache__").glob("fresh.*.pyc"))
    # a namespace package (no __init__.py) is the standard machinery's
    assert out["pkg.ext_ns.inner"]["value"] == "inner"
    assert out["pkg.ext_ns.inner"]["loader"] == "SourceLoader"
    # the standard library: found the standard way, read the cheaper way
    assert out["email.mime.text"]["loader"] == "SourceLoader"


def test_an_edited_source_of_the_extraction_is_seen(tmp_path: Path) -> None:
    """An operator debugging a node may edit a file of the extraction: the .pyc beside it is
    validated as usual, so the edit is what runs."""
    site = tree(tmp_path)
    (site / "pkg" / "mod.py").write_text("VALUE = 'edited, and longer'\ndef where(): pass\n")
    assert probe(site)["pkg.mod"]["value"] == "edited, and longer"


def test_read_file_reads_it_all(tmp_path: Path) -> None:
    from cnivpc._fastimport import read_file

    for size in (0, 1, 4096, 1 << 20):
        path = tmp_path / f"f{size}"
        path.write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
        assert read_file(str(path)) == path.read_bytes()
