"""Named exit codes of the CLI, its one error type, the one mapping of every other failure onto
it (``as_cli_error``, used only by the CLI's main), and the argument parser every command uses
(its usage errors are CliErrors too). Imports only argparse at module level.

Every failure reaches the operator as ``error: <message>`` and ``hint: <what to do>`` on stderr
with one of these codes; stdout then carries nothing but what was complete before it.

    BaseException
    ├── CliError                       its own message, hint and code
    ├── CniError (cni.errors)          what the plugins' layers raise
    │   ├── TryAgainLater              EC2 throttled, IMDS unreachable, state busy → 1, "retry"
    │   └── AwsError (aws.errors)      → 1
    │       └── Ec2Error (aws.ec2)     EC2 refused: the hint names the IAM policy, limits…
    ├── OSError                        permissions (run as root), missing files → 1
    ├── SystemExit / KeyboardInterrupt argparse's --help (0), ^C (130)
    └── anything else                  a bug → 70, the traceback only with CNIVPC_DEBUG=1
"""

from __future__ import annotations

import argparse
from typing import NoReturn

EXIT_OK = 0
EXIT_ERROR = 1          # the command failed (AWS, kernel, store)
EXIT_USAGE = 2          # bad arguments, or an operation refused as unsafe without --force
EXIT_CHECK_FAILED = 3   # doctor/status found a problem
EXIT_NOT_FOUND = 4      # the thing named does not exist (an IP, an ENI, the IPAM state)
EXIT_INTERRUPTED = 130  # ^C
EXIT_BUG = 70           # an unexpected exception: a bug in cnivpc (sysexits' EX_SOFTWARE)

# EC2 error codes whose remedy we know, and that remedy.
_EC2_HINTS = {
    "UnauthorizedOperation": "the node's instance role lacks this action: attach "
                             "examples/iam-policy.json (cnivpc doctor lists what is missing)",
    "AuthFailure": "the AWS credentials were refused: check the node's instance role",
    "InvalidNetworkInterfaceID.NotFound": "that ENI no longer exists",
    "InvalidParameterValue": "EC2 rejected a parameter: see the message above",
}


class CliError(Exception):
    """A failure to show as ``error: <message>`` and ``hint: <hint>``."""

    def __init__(self, message: str, hint: str = "", exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


def as_cli_error(exc: Exception) -> CliError:
    """Any failure of a command as the CliError to print (the tree in the module docstring)."""
    import sqlite3

    from ..aws.ec2 import Ec2Error
    from ..cni.errors import CniError, TryAgainLater

    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, Ec2Error):
        hint = _EC2_HINTS.get(exc.aws_code, "")
        detail = f"{exc.aws_code}: {exc.message}" if exc.message else exc.aws_code
        return CliError(f"EC2 refused {exc.operation}: {detail}", hint)
    if isinstance(exc, TryAgainLater):
        return CliError(str(exc), "temporary: retry in a minute (cnivpc doctor checks the "
                        "metadata and EC2)")
    if isinstance(exc, CniError):
        from ..plugins.ipam.session import StoreMissing

        if isinstance(exc, StoreMissing):
            return CliError(exc.msg, f"{exc.details}; or --conf/--data-dir name another "
                            "state directory", EXIT_NOT_FOUND)
        return CliError(str(exc), "cnivpc doctor checks what this node needs")
    if isinstance(exc, PermissionError):
        return CliError(str(exc), "run as root (the IPAM state, lock and netlink need it)")
    if isinstance(exc, OSError):
        return CliError(str(exc))
    if isinstance(exc, sqlite3.Error):
        return CliError(f"IPAM state: {exc}", "cnivpc doctor checks the state file")
    return CliError(f"unexpected {type(exc).__name__}: {exc}",
                    "this is a bug in cnivpc: CNIVPC_DEBUG=1 shows the traceback; please "
                    "report it with that output", EXIT_BUG)


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as ``error:``/``hint:`` and exit 2 like every other
    failure (argparse's own format is a usage line and ``<prog>: error:``)."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        raise CliError(message, f"see '{self.prog} --help'", EXIT_USAGE)
