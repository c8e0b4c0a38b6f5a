"""Untrusted text on a terminal or in a log line: ``printable`` escapes what a terminal or a
log reader would act on instead of showing.

Pod names (CNI_ARGS, from whoever wrote a Multus annotation), interface names (libcni allows an
ESC in one), config values and error details reach ``cnivpc ipam allocations``, ``cnivpc status``,
``error:`` lines and the plugins' log lines. An ESC there can recolour or rewrite the operator's
screen, a newline can forge a log line, a bidi override can make one name read as another. So
every C0/C1 control character, DEL and the Unicode bidi controls come out as ``\\xNN`` or
``\\uNNNN`` (Python's own escapes), and everything else as it is. The CLI's tables and error lines
and the log formatter call it; stored values stay as they came.

A leaf module: stdlib only, imports nothing of cnivpc.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls; the bidi embeddings/overrides/isolates and marks
# (U+200E/F, U+202A-U+202E, U+2066-U+2069); the line and paragraph separators.
UNSAFE = "[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
_unsafe: re.Pattern[str] | None = None  # compiled on first need: ~50 page faults per exec


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character escaped (``"\\x1b[31m"`` -> ``"\\\\x1b[31m"``);
    unchanged (the same object) when there is none, which is nearly always."""
    global _unsafe
    if text.isascii() and text.isprintable():  # printable ASCII: nothing to escape
        return text
    if _unsafe is None:
        _unsafe = re.compile(UNSAFE)
    if _unsafe.search(text) is None:
        return text
    return _unsafe.sub(_escape, text)
