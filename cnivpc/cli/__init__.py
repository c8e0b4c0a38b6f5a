"""The operator CLI (``cnivpc <command>``): a lazy registry of subcommands (a command's module is
imported only when it runs, so ``cnivpc help`` stays instant), one error boundary that turns
errors into ``error: …`` plus a hint and a named exit code, and nothing else.

Every command module exposes ``main(args: list[str], out: TextIO) -> int``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TextIO

from .. import __version__
from ..cni.printable import printable
from .exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, as_cli_error

# name -> (module, one-line summary), in help order
COMMANDS: dict[str, tuple[str, str]] = {
    "status": ("cnivpc.cli.status", "one screen: instance, IP capacity, ENIs, pods, last errors"),
    "ipam": ("cnivpc.cli.ipam", "inspect and operate the IPAM: ENIs, IPs, subnets, limits"),
    "max-pods": ("cnivpc.cli.maxpods", "the kubelet --max-pods value for this node"),
    "doctor": ("cnivpc.cli.doctor", "check everything cnivpc needs on this node, with hints"),
    "gc": ("cnivpc.cli.gc", "release IPs of gone pods and delete leaked ENIs (--dry-run)"),
    "install": ("cnivpc.cli.install", "install the zipapp, symlinks and conflist on this node"),
    "version": ("", "print the version"),
    "help": ("", "this text"),
}

USAGE_HEAD = """\
usage: cnivpc <command> [options]      (cnivpc <command> --help for details)

CNI plugins (normally run by the container runtime through the cnivpc-* symlinks):
  cnivpc ipam|ipvlan|ptp        run that plugin by hand (CNI_* environment, config on stdin)

Commands:
"""
USAGE_TAIL = """
Install: symlink cnivpc-ipam, cnivpc-ipvlan and cnivpc-ptp to this file in /opt/cni/bin.
"""


def usage() -> str:
    width = max(len(n) for n in COMMANDS) + 2
    lines = [f"  {name:<{width}}{summary}" for name, (_, summary) in COMMANDS.items()]
    return USAGE_HEAD + "\n".join(lines) + "\n" + USAGE_TAIL


def main(args: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if not args or args[0] in ("help", "-h", "--help"):
        out.write(usage())
        return EXIT_OK
    name, rest = args[0], args[1:]
    if name in ("version", "--version"):
        out.write(f"cnivpc {__version__}\n")
        if name == "version":
            # Which interpreter the launcher picked (the zipapp runs on any CPython 3.10+).
            v = sys.version_info
            out.write(f"python {v.major}.{v.minor}.{v.micro} {sys.executable} "
                      f"({os.uname().machine})\n")
        return EXIT_OK
    if name not in COMMANDS:
        err.write(f"error: unknown command {name!r}\nhint: run 'cnivpc help' for the commands\n")
        return EXIT_USAGE
    try:
        module = importlib.import_module(COMMANDS[name][0])
        code: int = module.main(rest, out)
        return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # the one boundary: every failure becomes error/hint/exit code
        failure = as_cli_error(exc)
        if os.environ.get("CNIVPC_DEBUG"):
            import traceback

            traceback.print_exc(file=err)
        # Messages quote pod names, paths and EC2's words: nothing of them may drive the
        # terminal (cni.printable).
        err.write(f"error: {printable(failure.message)}\n")
        if failure.hint:
            err.write(f"hint: {printable(failure.hint)}\n")
        return failure.exit_code
