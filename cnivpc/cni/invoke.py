"""Delegation: run another CNI plugin (an ``ipam`` section's ``type``) the way a runtime
would: found on ``CNI_PATH``, the whole environment passed through with ``CNI_COMMAND``
changed, the config on stdin, its result or error JSON read from stdout.

Stdlib only; imports nothing of cnivpc but ``cni.errors``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

from .errors import CniError, InvalidConfig

# A plugin binary being replaced (in-place upgrade) fails exec with ETXTBSY: retry a little,
# as libcni does.
TEXT_BUSY_RETRIES = 5


def find_in_path(plugin: str, cni_path: str) -> str:
    if "/" in plugin or plugin in ("", ".", "..") or "\x00" in plugin:
        raise InvalidConfig(f"invalid delegated plugin type {plugin!r}")
    for directory in cni_path.split(":"):
        candidate = os.path.join(directory, plugin)
        if directory and os.access(candidate, os.X_OK):
            return candidate
    raise InvalidConfig(f"delegated plugin {plugin!r} not found",
                        f"searched CNI_PATH {cni_path!r}")


def delegate(command: str, plugin: str, config: Mapping[str, Any],
             env: Mapping[str, str] | None = None, timeout: float = 110.0) -> dict[str, Any] | None:
    """Run ``plugin`` for ``command``; its parsed result (ADD) or None. Its error is raised
    as a CniError with the same code."""
    # Here, not at module level: a chained ipvlan (prevResult given) never delegates, and
    # subprocess with selectors and locale is ~10 ms of its exec under user-mode-linux.
    import subprocess

    base = dict(os.environ if env is None else env)
    path = find_in_path(plugin, base.get("CNI_PATH", ""))
    base["CNI_COMMAND"] = command
    stdin = json.dumps(config).encode()
    for attempt in range(TEXT_BUSY_RETRIES + 1):
        try:
            proc = subprocess.run([path], input=stdin, capture_output=True, env=base,
                                  timeout=timeout, check=False)
            break
        except OSError as exc:
            if exc.errno != 26 or attempt == TEXT_BUSY_RETRIES:  # ETXTBSY
                raise CniError(f"cannot run delegated plugin {plugin}", str(exc)) from exc
            time.sleep(1)
        except subprocess.TimeoutExpired as exc:
            raise CniError(f"delegated plugin {plugin} timed out after {timeout:.0f}s",
                           code=11) from exc
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        try:
            err = json.loads(out)
            raise CniError(str(err.get("msg", "")), str(err.get("details", "")),
                           code=int(err.get("code", 999)))
        except (ValueError, AttributeError):
            stderr = proc.stderr.decode(errors="replace").strip()
            raise CniError(f"delegated plugin {plugin} failed",
                           out or stderr or "no error message") from None
    if not out:
        return None
    try:
        parsed: dict[str, Any] = json.loads(out)
    except ValueError as exc:
        raise CniError(f"delegated plugin {plugin} printed invalid JSON", out[:200]) from exc
    return parsed
