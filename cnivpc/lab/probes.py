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
           "fam = socket.AF_INET6 if sys.argv[3] == '6' else socket.AF_INET\n"
           "s=socket.socket(fam); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
           "s.bind(('::' if fam == socket.AF_INET6 else '0.0.0.0', int(sys.argv[1])))\n"
           "s.listen(8); tag = (sys.argv[2] + ' ') if sys.argv[2] else ''\n"
           "while True:\n"
           "    c, a = s.accept(); c.sendall((tag + a[0]).encode())\n"
           "    c.close()\n")
_CLIENT = ("import socket,sys\n"
           "c=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n"
           "print(c.recv(128).decode())\n")


def serve_whoami(netns: str, port: int, *, tag: str = "",
                 ipv6: bool = False) -> subprocess.Popen[bytes]:
    """Start the server in ``netns`` on ``port``; the caller kills it. ``tag`` (one word) goes
    before the address in every answer (``"vpce 10.0.16.5"``), so a test can tell *who*
    answered (the gateway endpoint or the internet host) as well as the source it saw.
    ``ipv6``: listen on ``::`` (IPv6 only) instead of ``0.0.0.0``."""
    return subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", _SERVER,
                             str(port), tag, "6" if ipv6 else "4"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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
