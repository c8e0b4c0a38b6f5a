"""plugins.digest: the same SHA-256/512 as hashlib, from the interpreter's built-in modules
(a fresh process deriving names does not load OpenSSL's _hashlib)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from cnivpc.plugins import digest

REPO = Path(__file__).resolve().parents[2]


def test_same_digests_as_hashlib() -> None:
    for data in (b"", b"ctr1/eth0", bytes(range(256)) * 9):
        assert digest.sha256_hex(data) == hashlib.sha256(data).hexdigest()
        assert digest.sha512_hex(data) == hashlib.sha512(data).hexdigest()


def test_naming_does_not_load_openssl() -> None:
    code = ("import sys\nfrom cnivpc.plugins.ptp import naming\n"
            "naming.masq_chain('n', 'c'); naming.host_veth_name('c', 'eth0')\n"
            "print('_hashlib' in sys.modules, 'hashlib' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-sE", "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.split() == ["False", "False"]
