"""The dispatcher: the one entry point every plugin runs through (a port of the reference
library's skel, with injected I/O so tests run it in-process).

It owns env parsing, version negotiation, config/prevResult decoding, logging set-up and the
error boundary: a ``CniError`` goes out as it is, anything else becomes code 999 with the cause
in ``details`` and the traceback in the log. Stdout carries exactly one JSON document (result or
error) or nothing; everything else goes to stderr or the log file.

Work a handler registered with ``Request.after_answer`` (only the IPAM's ADD does) runs after
the answer has been emitted and flushed, in a detached child (``cni.afterwards``): the runtime
gets its answer and the exit code as if there were none, whatever that work does or how long it
takes. With injected stdio (tests in-process) it runs inline, after the answer.

DEL is best effort (spec: it must succeed when the netns, the interface, prevResult or other
state is gone): an unusable prevResult, or an unusable optional config key, is set aside with a
warning instead of failing the request (a failed DEL is retried by the kubelet forever, and the
IPAM's DEL needs neither). Only a required key that is missing or invalid still fails a DEL.

Untrusted input is checked here, before any plugin code runs: the CNI_* variables by
``cni.env`` (container ID, ifname, netns, CNI_ARGS; a DEL of an attachment no ADD could have
made succeeds doing nothing), the network ``name`` by libcni's rule, config paths and the
rest by the plugin's config model (``cni.types.ConfigPath``; run compiled, ``cni.compiled``).
Stdin is read up to ``MAX_STDIN`` bytes and must be a JSON object (too deep a nesting is a
decoding error, not a crash). The config is logged at DEBUG redacted (``logs.redacted``),
never as raw stdin.

GC gets its valid attachments as a ``cni.attachments.ValidAttachments``, which keeps "no list
in the request" apart from "an empty list".

VERSION is answered without importing the plugin module, pydantic_core or anything else heavy;
no command imports pydantic itself (the models run compiled: ``cni.models``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

from . import versions
from .errors import (
    CniError,
    DecodingFailure,
    InternalError,
    InvalidConfig,
    InvalidEnvironment,
    IOFailure,
)

# Not imported from typing: typing (with re and its friends) costs ~8 ms per exec and the
# VERSION path needs none of it; type checkers treat any TYPE_CHECKING name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, TextIO

    from .env import CmdArgs
    from .plugin import Plugin, Request

# Seconds the work after the answer may take (its child is killed then) when the config names
# no ``timeout``; otherwise that timeout (the IPAM's deadline) plus 10 s.
AFTERWARDS_TIMEOUT = 70.0
# Stdin larger than this is refused (code 6): a conflist entry with its prevResult is a few
# KiB; a runtime never sends megabytes, a hostile or broken caller might.
MAX_STDIN = 4 * 1024 * 1024


class Dispatcher:
    """Runs one CNI command for plugin ``name``; ``load`` imports the plugin on demand.

    A plain class, not a dataclass, and the modules only ADD/DEL/... need (env, logs,
    traceback) are imported after VERSION is answered. No plugin path imports ``dataclasses``
    (it pulls in ``inspect`` and ``ast``: ~6 ms per exec): the request's types are
    NamedTuples and plain classes.
    """

    def __init__(self, name: str, load: Callable[[], Plugin[Any]], version: str = "0.0.0",
                 getenv: Callable[[str], str | None] | None = None,
                 stdin: IO[bytes] | None = None, stdout: TextIO | None = None,
                 stderr: TextIO | None = None, detach: bool | None = None) -> None:
        self.name = name
        # Work after the answer goes to a detached child only when this process's own stdout
        # carries the answer (a runtime's pipe); injected stdio runs it inline.
        self.detach = stdout is None if detach is None else detach
        self.timeout = AFTERWARDS_TIMEOUT
        self.load = load
        self.version = version
        self.getenv = getenv or os.environ.get
        self.stdin = stdin if stdin is not None else sys.stdin.buffer
        self.stdout = stdout if stdout is not None else sys.stdout
        self.stderr = stderr if stderr is not None else sys.stderr

    def about(self) -> str:
        return (f"CNI {self.name} plugin v{self.version}\n"
                f"CNI protocol versions supported: {', '.join(versions.SUPPORTED_VERSIONS)}")

    def run(self) -> int:
        command = self.getenv("CNI_COMMAND") or ""
        if not command:
            print(self.about(), file=self.stderr)
            return 0
        if command == "VERSION":
            self._emit({"cniVersion": versions.CURRENT_VERSION,
                        "supportedVersions": list(versions.SUPPORTED_VERSIONS)})
            return 0
        from . import afterwards, logs

        log = logs.setup(self.stderr, self.getenv).getChild(self.name)
        with afterwards.collect() as tasks:
            code = self._dispatch(command, log)
        how = afterwards.mode(self.getenv)
        if tasks and how != "off":
            afterwards.run(tasks, detach=self.detach and how == "detach",
                           deadline=self.timeout)
        return code

    def _dispatch(self, command: str, log: Any) -> int:
        from .env import COMMANDS, read_env

        started = time.monotonic()
        reply_version = versions.CURRENT_VERSION
        cmd: CmdArgs | None = None
        try:
            if command not in COMMANDS:
                raise InvalidEnvironment(f"unknown CNI_COMMAND {command!r}",
                                         f"expected one of {list(COMMANDS)}")
            cmd = read_env(command, self.getenv)
            raw = self._read_stdin()
            cmd = cmd._replace(stdin=raw)
            if cmd.never_added:
                # Nothing to undo, and nothing to validate: a DEL must not fail for it.
                log.warning("DEL: no ADD can have made this attachment (%s): nothing to do",
                            cmd.never_added)
                return 0
            for problem in cmd.set_aside:
                log.warning("DEL: setting aside an invalid optional variable: %s", problem)
            config = _decode(raw)
            version = _config_version(config)
            if _well_formed(version):
                reply_version = version
            versions.require_supported(version, command)
            output = self._call(cmd, config, reply_version, log)
        except CniError as err:
            self._log_error(log, cmd, command, err, started)
            self._emit(err.to_json(reply_version))
            return 1
        except Exception as exc:  # the error boundary: anything unexpected is a 999
            log.error("%s failed unexpectedly", command, exc_info=True)
            internal = InternalError(f"internal error in {self.name} {command}", repr(exc))
            self._emit(internal.to_json(reply_version))
            return 1
        log.info("%s %s ok in %.0f ms", command, _who(cmd), (time.monotonic() - started) * 1000)
        if output is not None:
            self._emit(output)
        return 0

    def _call(self, cmd: CmdArgs, config: dict[str, Any], version: str,
              log: Any) -> dict[str, Any] | None:
        from . import logs
        from .attachments import ValidAttachments
        from .models import Result
        from .plugin import Request

        plugin = self.load()
        best_effort = cmd.command == "DEL"
        conf, config = _load_conf(plugin, config, best_effort, log)
        timeout = getattr(conf, "timeout", None)
        if isinstance(timeout, (int, float)) and timeout > 0:
            self.timeout = float(timeout) + 10.0
        logs.add_file(conf.log_file, conf.log_level)
        log.info("%s %s netns=%r args=%r", cmd.command, _who(cmd), cmd.netns, cmd.args)
        if log.isEnabledFor(logs.DEBUG):
            known = _known_keys(plugin.conf_model)
            log.debug("config: %s", json.dumps(logs.redacted(config, known), sort_keys=True))
        prev = None
        if conf.prev_result is not None and versions.has_chaining(version):
            try:
                prev = Result.from_version(conf.prev_result, version)
            except ValueError as exc:  # pydantic_core's ValidationError is a ValueError
                if not best_effort:
                    raise InvalidConfig("invalid prevResult", validation_details(exc)) from exc
                # DEL tears down by names and keys, never by what prevResult says alone.
                log.warning("DEL: prevResult is unusable, going on without it: %s",
                            validation_details(exc))
                config = {k: v for k, v in config.items() if k != "prevResult"}
        attachments = ValidAttachments.missing()
        if cmd.command == "GC":
            attachments = ValidAttachments.from_config(config)
        request: Request[Any] = Request(cmd=cmd, conf=conf, prev_result=prev,
                                        valid_attachments=attachments, raw_config=config)
        if cmd.command == "ADD":
            result = plugin.add(request)
            return result.to_version(version)
        handler = {"DEL": plugin.delete, "CHECK": plugin.check,
                   "STATUS": plugin.status, "GC": plugin.gc}[cmd.command]
        handler(request)
        return None

    def _read_stdin(self) -> bytes:
        try:
            raw: bytes = self.stdin.read(MAX_STDIN + 1)
        except (OSError, ValueError) as exc:
            raise IOFailure("error reading from stdin", repr(exc)) from exc
        if len(raw) > MAX_STDIN:
            raise DecodingFailure("error parsing network configuration",
                                  f"more than {MAX_STDIN} bytes on stdin")
        return raw

    def _emit(self, doc: dict[str, Any]) -> None:
        try:
            self.stdout.write(json.dumps(doc, indent=4) + "\n")
            self.stdout.flush()
        except (OSError, ValueError):
            pass  # the runtime went away; there is nobody left to tell

    def _log_error(self, log: Any, cmd: CmdArgs | None, command: str, err: CniError,
                   started: float) -> None:
        log.error("%s %s failed in %.0f ms: code %d: %s", command, _who(cmd),
                  (time.monotonic() - started) * 1000, err.code, err)


def _who(cmd: CmdArgs | None) -> str:
    if cmd is None or not cmd.container_id:
        return ""
    return f"container={cmd.container_id[:12]} ifname={cmd.ifname}"


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        config = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodingFailure("error parsing network configuration", str(exc)[:300]) from exc
    except RecursionError as exc:
        raise DecodingFailure("error parsing network configuration",
                              "JSON nested too deeply") from exc
    if not isinstance(config, dict):
        raise DecodingFailure("error parsing network configuration",
                              "expected a JSON object on stdin")
    return config


def _config_version(config: dict[str, Any]) -> str:
    version = config.get("cniVersion") or versions.DEFAULT_CONFIG_VERSION
    if not isinstance(version, str):
        raise DecodingFailure("cniVersion must be a string", repr(version))
    return version


def _well_formed(version: str) -> bool:
    """A version string fit to echo back in the error's cniVersion (x.y.z, short)."""
    try:
        versions.parse(version)
    except ValueError:
        return False
    return len(version) <= 32


def _known_keys(model: Any) -> set[str]:
    """The wire names (alias and field name) of every field of a config model."""
    keys: set[str] = set()
    for field_name, info in model.model_fields.items():
        keys.add(field_name)
        if info.alias:
            keys.add(info.alias)
    return keys


def validation_details(exc: Exception) -> str:
    """pydantic's messages, one line per problem, without its documentation URLs."""
    errors = _errors(exc)
    if errors or callable(getattr(exc, "errors", None)):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors
        )
    return str(exc)


def _load_conf(plugin: Plugin[Any], config: dict[str, Any], best_effort: bool,
               log: Any) -> tuple[Any, dict[str, Any]]:
    """The plugin's config model, and the config it was built from. With ``best_effort`` (DEL)
    optional keys that fail validation are dropped (and logged) and the rest is validated
    again; a missing or invalid required key fails every command."""
    from .wire import NAME_MAX, NAME_RE

    name = config.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or len(name) > NAME_MAX:
        raise InvalidConfig("invalid network name",
                            f"name {str(name)[:300]!r} must match {NAME_RE.pattern} "
                            f"and be at most {NAME_MAX} characters")
    model = plugin.conf_model
    try:
        return model.model_validate(config), config
    except ValueError as exc:
        error = exc
    if best_effort:
        optional = _optional_keys(model)
        bad = {str(e["loc"][0]) for e in _errors(error) if e.get("loc")}
        if bad and bad <= optional:
            log.warning("DEL: setting aside unusable optional keys %s: %s", sorted(bad),
                        validation_details(error))
            kept = {k: v for k, v in config.items() if k not in bad}
            try:
                return model.model_validate(kept), kept
            except ValueError as exc:
                error = exc
    raise InvalidConfig(f"invalid {plugin.name} configuration",
                        validation_details(error)) from error


def _errors(exc: Exception) -> list[dict[str, Any]]:
    """The problems of a validation error, without their documentation URLs: pydantic_core
    imports pydantic itself to write those."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return []
    try:
        return list(errors(include_url=False))
    except TypeError:  # not pydantic_core's
        return list(errors())


def _optional_keys(model: Any) -> set[str]:
    """The wire names (alias and field name) of the model's fields that have a default."""
    keys: set[str] = set()
    for field_name, info in model.model_fields.items():
        if not info.is_required():
            keys.add(field_name)
            if info.alias:
                keys.add(info.alias)
    return keys
