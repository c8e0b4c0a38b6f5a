"""SHA-256 and SHA-512 for the names the plugins derive (veth names, masq chains, table
probes), from CPython's own built-in hash modules: ``import hashlib`` loads OpenSSL's
libcrypto through ``_hashlib`` (~3 ms of CPU per exec, measured) for two digests of a few
bytes. The same digests either way; without the built-in modules (an interpreter built
without them) it falls back to hashlib.

Stdlib only; imports nothing of cnivpc.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Hash = Callable[[bytes], Any]


def _builtin() -> tuple[Hash, Hash]:
    try:  # CPython 3.12 and later
        from _sha2 import sha256, sha512  # type: ignore[import-not-found]
    except ImportError:
        try:  # CPython 3.11 and earlier
            from _sha256 import sha256  # type: ignore[import-not-found]
            from _sha512 import sha512  # type: ignore[import-not-found]
        except ImportError:
            from hashlib import sha256, sha512
    return sha256, sha512


sha256, sha512 = _builtin()


def sha256_hex(data: bytes) -> str:
    return str(sha256(data).hexdigest())


def sha512_hex(data: bytes) -> str:
    return str(sha512(data).hexdigest())
