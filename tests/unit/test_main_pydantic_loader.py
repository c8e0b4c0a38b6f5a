"""The plugin process's stand-in for pydantic's plugin loader (cnivpc.__main__): pydantic
must ask it for nothing but ``get_plugins``, the answer must be the real loader's (no
plugins), and a plugin process must then not import importlib.metadata."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pydantic

REPO = Path(__file__).resolve().parents[2]


def test_pydantic_imports_only_get_plugins_from_its_loader() -> None:
    names = set()
    for path in Path(pydantic.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("_loader"):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "_loader":
                names.add(node.attr)
    assert names == {"get_plugins"}


def test_the_real_loader_finds_no_plugins_either() -> None:
    from pydantic.plugin._loader import get_plugins

    assert list(get_plugins()) == []


def test_a_plugin_process_validates_without_importlib_metadata() -> None:
    code = (
        "import sys\n"
        "from cnivpc.__main__ import _without_pydantic_plugins\n"
        "_without_pydantic_plugins()\n"
        "from cnivpc.cni.types import Result\n"
        "r = Result.model_validate({'cniVersion': '1.0.0', 'ips': [{'address': '10.0.0.1/24'}]})\n"
        "assert str(r.ips[0].address) == '10.0.0.1/24', r\n"
        "print('importlib.metadata' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-sE", "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip() == "False"
