"""Logging for plugins: stderr and an optional log file, never stdout (stdout carries only the
result or error JSON).

Sources, later ones adding to earlier ones: the environment (``CNIVPC_LOG_FILE``,
``CNIVPC_LOG_LEVEL``) before the config is read, then the config's ``logFile``/``logLevel``.
stderr gets WARNING and above unless a level is set; a log file gets INFO unless a level is
set, so a failed or slow ADD can be read after the fact.

Log lines carry untrusted text (pod names, config values, error details): the formatter passes
every message through ``cni.printable`` (a newline or an ESC in a value cannot forge a line or
drive the reader's terminal); only a traceback (``exc_info``) keeps its lines. The log file is
opened through ``cni.paths`` (never through a symlink, made 0600, missing directories 0700).
The config is logged at DEBUG as ``redacted`` makes it: raw stdin never is.

Stdlib only; imports nothing of cnivpc but ``cni.printable``/``cni.paths``/``cni.errors``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from .errors import InvalidConfig
from .paths import config_path_problem, open_file
from .printable import printable

LOGGER_NAME = "cnivpc"
_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
REDACTED = "<redacted>"
# Keys whose values are never logged, at any depth of the config: whatever looks like a
# credential (matched anywhere in the key, case-insensitively).
SECRET_KEY_RE = re.compile(
    r"pass(word|wd|phrase)?|secret|token|credential|auth|api[-_]?key|private[-_]?key|"
    r"access[-_]?key|session|cookie|bearer|signature|cert|\bkey$", re.IGNORECASE)


class Formatter(logging.Formatter):
    """The standard format, with the message made printable (tracebacks keep their lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


class LogFileHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on a log file opened by ``cni.paths.open_file`` (O_APPEND, no symlink)."""

    def __init__(self, path: str) -> None:
        fd = open_file(path, os.O_WRONLY | os.O_APPEND)
        super().__init__(os.fdopen(fd, "a", encoding="utf-8", errors="backslashreplace"))
        self.path = path

    def close(self) -> None:
        try:
            self.acquire()
            try:
                if not self.stream.closed:
                    self.stream.close()
            finally:
                self.release()
        finally:
            super().close()


def redacted(config: Any, known: Iterable[str]) -> dict[str, Any]:
    """``config`` fit for a log line: the values of ``known`` top-level keys (the plugin's
    config model's), every other key's value as ``<redacted>`` (an unknown key is passed
    through for someone else: we cannot tell what it carries), and at every depth the value of
    a key that looks like a credential as ``<redacted>``."""
    if not isinstance(config, dict):
        return {}
    keep = set(known)
    return {str(k): _mask(v) if k in keep and not _secret(k) else REDACTED
            for k, v in config.items()}


def _secret(key: object) -> bool:
    return isinstance(key, str) and SECRET_KEY_RE.search(key) is not None


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if _secret(k) else _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def _level(name: str | None, default: int) -> int:
    if not name:
        return default
    value = logging.getLevelName(name.upper())
    return value if isinstance(value, int) else default


def setup(stderr: TextIO, getenv: Callable[[str], str | None]) -> logging.Logger:
    """Reset the cnivpc logger to stderr (+ the env's log file). Safe to call repeatedly."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = False
    level = getenv("CNIVPC_LOG_LEVEL")
    console = logging.StreamHandler(stderr)
    console.setLevel(_level(level, logging.WARNING))
    console.setFormatter(Formatter(_FORMAT))
    logger.addHandler(console)
    logger.setLevel(logging.DEBUG)
    add_file(getenv("CNIVPC_LOG_FILE"), level)
    return logger


def add_file(path: str | None, level: str | None) -> None:
    """Also log to ``path`` (opened with ``cni.paths.open_file``: never through a symlink,
    0600, missing directories 0700). A log file that cannot be opened is reported on stderr
    and otherwise ignored: logging must never fail a plugin."""
    if not path:
        return
    logger = logging.getLogger(LOGGER_NAME)
    if any(isinstance(h, LogFileHandler) and h.path == path for h in logger.handlers):
        return
    # The config's logFile was checked by its model; CNIVPC_LOG_FILE comes from the
    # environment and is held to the same rules here.
    problem = config_path_problem(path)
    if problem:
        logger.warning("cannot open log file %r: %s", path, problem)
        return
    try:
        handler = LogFileHandler(path)
    except (OSError, InvalidConfig) as exc:
        logger.warning("cannot open log file %s: %s", path, exc)
        return
    handler.setLevel(_level(level, logging.INFO))
    handler.setFormatter(Formatter(_FORMAT))
    logger.addHandler(handler)


def get(name: str) -> logging.Logger:
    """A child of the cnivpc logger, e.g. ``get("ptp")``."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}")
