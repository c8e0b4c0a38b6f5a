"""How the CLI prints: aligned tables for people, JSON for scripts. Every table cell goes
through ``cni.printable``: pod names come from the runtime's CNI_ARGS (a Multus annotation
can put an ESC there), and a cell must not recolour or rewrite the operator's terminal. JSON
needs nothing: ``json.dumps`` escapes control characters itself. Imports nothing of ours but
``cni.printable``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

from ..cni.printable import printable


def table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Left-aligned columns, two spaces apart, no trailing blanks; lists joined by commas."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def emit_json(out: TextIO, value: Any) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def _cell(value: Any) -> str:
    return printable(_text(value))


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple | set):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
