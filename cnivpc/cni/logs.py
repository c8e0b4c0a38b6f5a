"""Logging for plugins: stderr and an optional log file, never stdout (stdout carries only the
result or error JSON).

Sources, later ones adding to earlier ones: the environment (``CNIVPC_LOG_FILE``,
``CNIVPC_LOG_LEVEL``) before the config is read, then the config's ``logFile``/``logLevel``.
stderr gets WARNING and above unless a level is set; a log file gets INFO unless a level is
set, so a failed or slow ADD can be read after the fact. Stdlib only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TextIO

LOGGER_NAME = "cnivpc"
_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"


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
    console.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(console)
    logger.setLevel(logging.DEBUG)
    add_file(getenv("CNIVPC_LOG_FILE"), level)
    return logger


def add_file(path: str | None, level: str | None) -> None:
    """Also log to ``path`` (created 0600, its directory 0700). A log file that cannot be
    opened is reported on stderr and otherwise ignored: logging must never fail a plugin."""
    if not path:
        return
    logger = logging.getLogger(LOGGER_NAME)
    if any(isinstance(h, logging.FileHandler) and h.baseFilename == os.path.abspath(path)
           for h in logger.handlers):
        return
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.close(fd)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        logger.warning("cannot open log file %s: %s", path, exc)
        return
    handler.setLevel(_level(level, logging.INFO))
    handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(handler)


def get(name: str) -> logging.Logger:
    """A child of the cnivpc logger, e.g. ``get("ptp")``."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}")
