"""Traffic probes for the lab's tests and demo: a tiny TCP server in one network namespace that
answers each connection with the address it saw the client come from, and the client side.
That is how a test proves which source address a packet carried (the pod's own IP over the
ENI, or the node's after SNAT). Never imported by plugin code.
"""

from __future__ import annotations

import subprocess
import sys
import time

_SERVER = ("import socket,sys\n"
           "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
           "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(8)\n"
           "while True:\n"
           "    c, a = s.accept(); c.sendall(a[0].encode()); c.close()\n")
_CLIENT = ("import socket,sys\n"
           "c=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n"
           "print(c.recv(64).decode())\n")


def serve_whoami(netns: str, port: int) -> subprocess.Popen[bytes]:
    """Start the server in ``netns`` on ``port``; the caller kills it."""
    return subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", _SERVER,
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def whoami(netns: str, ip: str, port: int, timeout: float = 20.0) -> str:
    """Connect from ``netns`` to ip:port (retrying while the server starts); the address the
    server saw, or "" when it never answered."""
    deadline = time.monotonic() + timeout
    while True:
        res = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", _CLIENT, ip,
                              str(port)], capture_output=True, text=True, timeout=30)
        if res.returncode == 0:
            return res.stdout.strip()
        if time.monotonic() > deadline:
            return ""
        time.sleep(0.3)
