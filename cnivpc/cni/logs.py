"""Logging for plugins: stderr and an optional log file, never stdout (stdout carries only the
result or error JSON).

Sources, later ones adding to earlier ones: the environment (``CNIVPC_LOG_FILE``,
``CNIVPC_LOG_LEVEL``) before the config is read, then the config's ``logFile``/``logLevel``.
stderr gets WARNING and above unless a level is set; a log file gets INFO unless a level is
set, so a failed or slow ADD can be read after the fact. Before ``setup`` (the operator CLI, a
library caller) WARNING and above go to ``sys.stderr`` as the bare message, as the stdlib's
last-resort handler would print them.

Not the stdlib's ``logging``: importing it (with the threading, traceback, tokenize, textwrap
and string modules it pulls in) costs every plugin exec ~300 page faults and ~13 module loads,
the dearest import left on the path in user-mode-linux (127 us a fault there, measured), for
a plugin that writes two or three lines. This is the small part of it the plugins use: named
loggers (``get``), ``debug``/``info``/``warning``/``error``/``exception`` with %-style
arguments, ``exc_info``, ``isEnabledFor``, ``getChild``; the line format is logging's
(``%(asctime)s %(process)d %(name)s %(levelname)s %(message)s``). Each line goes out in one
``write`` on an ``O_APPEND`` descriptor, so the lines of concurrent plugin processes never
interleave in the shared log file. botocore's own logging (the cold IPAM path) is untouched.

Log lines carry untrusted text (pod names, config values, error details): every message passes
through ``cni.printable`` (a newline or an ESC in a value cannot forge a line or drive the
reader's terminal); only a traceback (``exc_info``) keeps its lines. The log file is opened
through ``cni.paths`` (never through a symlink, made 0600, missing directories 0700). The
config is logged at DEBUG as ``redacted`` makes it: raw stdin never is. Logging never fails a
plugin: a line that cannot be formatted or written is dropped.

Stdlib only; imports nothing of cnivpc but ``cni.printable``/``cni.paths``/``cni.errors``.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any, TextIO

from .errors import InvalidConfig
from .paths import config_path_problem, open_file
from .printable import printable

LOGGER_NAME = "cnivpc"
DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50
LEVEL_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARNING: "WARNING", ERROR: "ERROR",
               CRITICAL: "CRITICAL"}
# The names logLevel / CNIVPC_LOG_LEVEL take (the stdlib's, its aliases included).
LEVELS = {"DEBUG": DEBUG, "INFO": INFO, "WARNING": WARNING, "WARN": WARNING, "ERROR": ERROR,
          "CRITICAL": CRITICAL, "FATAL": CRITICAL, "NOTSET": 0}
REDACTED = "<redacted>"
# Keys whose values are never logged, at any depth of the config: whatever looks like a
# credential (matched anywhere in the key, case-insensitively).
SECRET_KEY_RE = re.compile(
    r"pass(word|wd|phrase)?|secret|token|credential|auth|api[-_]?key|private[-_]?key|"
    r"access[-_]?key|session|cookie|bearer|signature|cert|\bkey$", re.IGNORECASE)


class _Sink:
    """Where lines go: a text stream (stderr) or a log file's descriptor, from ``level`` up.
    ``bare``: the message alone (the last-resort output before ``setup``)."""

    def __init__(self, level: int, *, stream: TextIO | None = None, fd: int = -1,
                 path: str = "", bare: bool = False) -> None:
        self.level, self.stream, self.fd, self.path, self.bare = level, stream, fd, path, bare

    def write(self, line: str) -> None:
        try:
            if self.fd >= 0:
                os.write(self.fd, line.encode("utf-8", "backslashreplace"))
            else:
                (self.stream or sys.stderr).write(line)
        except (OSError, ValueError):
            pass  # logging must never fail a plugin

    def close(self) -> None:
        if self.fd >= 0:
            with suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def _last_resort() -> _Sink:
    """Before ``setup`` (and after ``close``): WARNING and above to sys.stderr, bare."""
    return _Sink(WARNING, bare=True)


_sinks: list[_Sink] = [_last_resort()]
_floor = WARNING  # the lowest level any sink takes: below it a call returns at once


def _reset_floor() -> None:
    global _floor
    _floor = min((s.level for s in _sinks), default=CRITICAL + 1)


class Logger:
    """A named logger of the cnivpc tree: the few calls of ``logging.Logger`` cnivpc makes."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def getChild(self, suffix: str) -> Logger:
        return Logger(f"{self.name}.{suffix}")

    def isEnabledFor(self, level: int) -> bool:
        return level >= _floor

    def log(self, level: int, msg: str, *args: object, exc_info: object = None) -> None:
        if level >= _floor:
            _emit(self.name, level, msg, args, exc_info)

    def debug(self, msg: str, *args: object, exc_info: object = None) -> None:
        self.log(DEBUG, msg, *args, exc_info=exc_info)

    def info(self, msg: str, *args: object, exc_info: object = None) -> None:
        self.log(INFO, msg, *args, exc_info=exc_info)

    def warning(self, msg: str, *args: object, exc_info: object = None) -> None:
        self.log(WARNING, msg, *args, exc_info=exc_info)

    def error(self, msg: str, *args: object, exc_info: object = None) -> None:
        self.log(ERROR, msg, *args, exc_info=exc_info)

    def exception(self, msg: str, *args: object, exc_info: object = True) -> None:
        self.log(ERROR, msg, *args, exc_info=exc_info)


def _message(msg: str, args: tuple[object, ...]) -> str:
    if not args:
        return str(msg)
    if len(args) == 1 and isinstance(args[0], dict) and args[0]:
        args = args[0]  # type: ignore[assignment]  # logging's rule: "%(key)s" % a mapping
    try:
        return str(msg) % args
    except Exception:  # a bad format string is the caller's bug, not a reason to fail
        return f"{msg} {args!r}"


def _traceback(exc_info: object) -> str:
    if not exc_info:
        return ""
    if isinstance(exc_info, BaseException):
        info: tuple[Any, ...] = (type(exc_info), exc_info, exc_info.__traceback__)
    elif isinstance(exc_info, tuple):
        info = exc_info
    else:
        info = sys.exc_info()
    if info[0] is None:
        return ""
    import traceback  # only when a traceback is logged

    return "\n" + "".join(traceback.format_exception(*info)).rstrip("\n")


def _emit(name: str, level: int, msg: str, args: tuple[object, ...], exc_info: object) -> None:
    try:
        text = printable(_message(msg, args)) + _traceback(exc_info)
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        line = (f"{stamp},{int(now * 1000) % 1000:03d} {os.getpid()} {name} "
                f"{LEVEL_NAMES.get(level, f'Level {level}')} {text}\n")
    except Exception:
        return
    for sink in _sinks:
        if level >= sink.level:
            sink.write(text + "\n" if sink.bare else line)


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
    return LEVELS.get(name.strip().upper(), default)


def setup(stderr: TextIO, getenv: Callable[[str], str | None]) -> Logger:
    """Reset the cnivpc logger to stderr (+ the env's log file). Safe to call repeatedly."""
    close()
    level = getenv("CNIVPC_LOG_LEVEL")
    _sinks[:] = [_Sink(_level(level, WARNING), stream=stderr)]
    _reset_floor()
    add_file(getenv("CNIVPC_LOG_FILE"), level)
    return Logger(LOGGER_NAME)


def add_file(path: str | None, level: str | None) -> None:
    """Also log to ``path`` (opened with ``cni.paths.open_file``: never through a symlink,
    0600, missing directories 0700). A log file that cannot be opened is reported on stderr
    and otherwise ignored: logging must never fail a plugin."""
    if not path:
        return
    if any(s.path == path for s in _sinks):
        return
    logger = Logger(LOGGER_NAME)
    # The config's logFile was checked by its model; CNIVPC_LOG_FILE comes from the
    # environment and is held to the same rules here.
    problem = config_path_problem(path)
    if problem:
        logger.warning("cannot open log file %r: %s", path, problem)
        return
    try:
        fd = open_file(path, os.O_WRONLY | os.O_APPEND)
    except (OSError, InvalidConfig) as exc:
        logger.warning("cannot open log file %s: %s", path, exc)
        return
    _sinks.append(_Sink(_level(level, INFO), fd=fd, path=path))
    _reset_floor()


def get(name: str) -> Logger:
    """A child of the cnivpc logger, e.g. ``get("ptp")``."""
    return Logger(f"{LOGGER_NAME}.{name}")


def file_fds() -> set[int]:
    """The descriptors of the open log files (the detached child keeps them)."""
    return {s.fd for s in _sinks if s.fd >= 0}


def flush() -> None:
    """Flush the stderr stream a sink writes to (log files are written unbuffered)."""
    for sink in _sinks:
        if sink.fd < 0:
            with suppress(OSError, ValueError):
                (sink.stream or sys.stderr).flush()


def close() -> None:
    """Close the log files; back to the state before ``setup``."""
    for sink in _sinks:
        sink.close()
    _sinks[:] = [_last_resort()]
    _reset_floor()
