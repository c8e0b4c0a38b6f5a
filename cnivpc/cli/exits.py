"""Named exit codes of the CLI and its one error type. Imports nothing."""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1          # the command failed (AWS, kernel, store)
EXIT_USAGE = 2          # bad arguments
EXIT_CHECK_FAILED = 3   # doctor/status found a problem
EXIT_NOT_FOUND = 4      # the thing named does not exist


class CliError(Exception):
    """A failure to show as ``error: <message>`` and ``hint: <hint>``."""

    def __init__(self, message: str, hint: str = "", exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code
