"""The operator CLI (``cnivpc <command>``): a lazy registry of subcommands, one error boundary
and named exit codes. Subcommand modules are imported only when they run.
"""

from __future__ import annotations

import sys
from typing import TextIO

from .. import __version__

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

USAGE = """\
usage: cnivpc <command> [options]

CNI plugins (normally run by the container runtime through the cnivpc-* symlinks):
  cnivpc ipam|ipvlan|ptp        run that plugin by hand (CNI_* environment, config on stdin)

Commands:
  help                          this text
  version, --version            print the version

Install: symlink cnivpc-ipam, cnivpc-ipvlan and cnivpc-ptp to this file in /opt/cni/bin.
"""


def main(args: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if not args or args[0] in ("help", "-h", "--help"):
        out.write(USAGE)
        return EXIT_OK
    if args[0] in ("version", "--version"):
        out.write(f"cnivpc {__version__}\n")
        return EXIT_OK
    err.write(f"error: unknown command {args[0]!r}\nhint: run 'cnivpc help' for the commands\n")
    return EXIT_USAGE
