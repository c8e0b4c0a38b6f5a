"""A running lab's control endpoint: faults and state changes from other processes.

Owns :class:`ControlEndpoint` (the server side, run by :class:`cnivpc.lab.lab.Lab`), the command
table it dispatches, :func:`control_socket` (where a lab listens) and :class:`LabCommandError`.
The client side is :mod:`cnivpc.lab.remote` (``python -m cnivpc.lab fault ...``).

Transport: a unix stream socket at ``/run/cnivpc-lab/<lab id>.sock``, next to the lab's
ownership file, so a lab is found by its id (and the only running lab without one), and only
root, who can run labs at all, can break one. Protocol: one JSON object per connection, one
line each way: ``{"command": "fault.fail", "args": {...}}`` -> ``{"ok": true, "result": {...}}``
or ``{"ok": false, "error": "...", "hint": "..."}``. One connection per command keeps the
client a few lines of stdlib and lets several commands run at once (each on its own thread).

Imports only the stdlib and the lab's leaf modules (``fabric`` for the registry path,
``profiles``); the lab is reached through the object it hands in, never imported at run time
(moto is slow to import and :mod:`.remote` shares this module).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .fabric import REGISTRY
from .profiles import PROFILES, Latency, get_profile

if TYPE_CHECKING:
    from .lab import Lab

log = logging.getLogger(__name__)

# One request or answer line; a lab's status stays far below it.
MAX_LINE = 1 << 20


class LabCommandError(Exception):
    """A command a running lab refuses: ``error`` says what, ``hint`` what to do."""

    def __init__(self, error: str, hint: str = "") -> None:
        super().__init__(error)
        self.error = error
        self.hint = hint


def control_socket(lab_id: str) -> Path:
    """Where the lab ``lab_id`` serves its control endpoint."""
    return REGISTRY / f"{lab_id}.sock"


Handler = Callable[["Lab", dict[str, Any]], dict[str, Any]]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn

    return register


def dispatch(lab: Lab, request: dict[str, Any]) -> dict[str, Any]:
    """Run one request against ``lab``; the answer line as a dict (never raises)."""
    name = str(request.get("command", ""))
    handler = COMMANDS.get(name)
    if handler is None:
        return {"ok": False, "error": f"unknown command {name!r}",
                "hint": f"known: {', '.join(sorted(COMMANDS))}"}
    args = request.get("args") or {}
    try:
        return {"ok": True, "result": handler(lab, args)}
    except LabCommandError as exc:
        return {"ok": False, "error": exc.error, "hint": exc.hint}
    except (KeyError, ValueError, TypeError) as exc:
        return {"ok": False, "error": f"{name}: {exc!r}", "hint": "check the arguments (-h)"}
    except Exception as exc:  # a lab bug: say so, keep serving
        log.exception("lab control command %s failed", name)
        return {"ok": False, "error": f"{name} failed in the lab: {exc!r}",
                "hint": "run `up` with -v to see the lab's log"}


def _node(lab: Lab, ref: Any) -> str:
    """Instance id of a node named by index, instance id or fabric name."""
    text = str(ref)
    try:
        return lab.node(int(text) if text.isdigit() else text).instance_id
    except (KeyError, IndexError):
        known = ", ".join(f"{i}={n.instance_id}" for i, n in enumerate(lab.nodes.values()))
        raise LabCommandError(f"no node {text!r} in lab {lab.lab_id}",
                              f"nodes: {known or 'none'}") from None


def _count(args: dict[str, Any]) -> int:
    count = int(args.get("count", 1))
    if count < 1:
        raise LabCommandError(f"count must be >= 1, not {count}")
    return count


# -- faults ------------------------------------------------------------------------------------
@command("fault.fail")
def _fail(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    status = int(args.get("status", 500))
    if status not in (500, 503):
        raise LabCommandError(f"status {status}: only 500 and 503 are EC2 server errors")
    lab.ec2.faults.fail_next(args["action"], _count(args), status=status)
    return {"armed": lab.ec2.faults.armed()}


@command("fault.throttle")
def _throttle(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    lab.ec2.faults.throttle_next(args.get("action") or "*", _count(args))
    return {"armed": lab.ec2.faults.armed()}


@command("fault.lost-response")
def _lost_response(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    lab.ec2.faults.lose_response_next(args["action"], _count(args), hold=float(args["hold"]),
                                      drop=bool(args.get("drop")))
    return {"armed": lab.ec2.faults.armed()}


@command("fault.lost-request")
def _lost_request(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    lab.ec2.faults.lose_request_next(args["action"], _count(args), hold=float(args["hold"]))
    return {"armed": lab.ec2.faults.armed()}


@command("fault.deny")
def _deny(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    lab.ec2.control.deny(*args["patterns"])
    return {"denied": lab.ec2.control.denied()}


@command("fault.allow")
def _allow(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    lab.ec2.control.allow(*args["patterns"])
    return {"denied": lab.ec2.control.denied()}


@command("fault.hide-attach")
def _hide_attach(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    instance = _node(lab, args["node"]) if args.get("node") is not None else None
    if args.get("eni") is None and instance is None:
        raise LabCommandError("hide-attach needs an ENI or a node")
    lab.ec2.faults.hide_attach(eni_id=args.get("eni"), instance_id=instance)
    return {"armed": lab.ec2.faults.armed()}


@command("fault.list")
def _list(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    return {"armed": lab.ec2.faults.armed(), "denied": lab.ec2.control.denied()}


@command("fault.clear")
def _clear(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    # faults, deny list and token buckets; held answers go out now
    lab.ec2.control.reset()
    return {"armed": [], "denied": []}


# -- run-time knobs ----------------------------------------------------------------------------
@command("latency")
def _latency(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    name = args.get("profile") or lab.ec2.control.profile.name
    if name not in PROFILES and name != lab.ec2.control.profile.name:
        raise LabCommandError(f"no latency profile {name!r}", f"known: {', '.join(PROFILES)}")
    profile = get_profile(PROFILES.get(name, lab.ec2.control.profile))
    changes: dict[str, Any] = {}
    if args.get("default") is not None:
        changes["default"] = Latency(float(args["default"]))
    if args.get("api"):
        changes["api"] = {**profile.api, **{k: Latency(float(v)) for k, v in args["api"].items()}}
    for key in ("attach_visible_delay", "detach_visible_delay"):
        if args.get(key) is not None:
            changes[key] = float(args[key])
    if changes:
        profile = profile.with_overrides(name=f"{profile.name}+", **changes)
    lab.ec2.control.set_profile(profile)
    return {"profile": _profile(lab)}


@command("imds-lag")
def _imds_lag(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    assert lab.imds is not None
    propagation = lab.imds.propagation
    if args.get("lag") is not None:
        propagation.lag = float(args["lag"])
    if args.get("remove_lag") is not None:
        propagation.remove_lag = float(args["remove_lag"])
    return {"lag": propagation.lag, "remove_lag": propagation.remove_lag}


# -- state behind the plugin's back ------------------------------------------------------------
@command("detach")
def _detach(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    return lab.detach_eni(args["eni"])


@command("unassign")
def _unassign(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    return lab.unassign_ips(args["eni"], list(args.get("ips") or []))


@command("fragment")
def _fragment(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    return lab.fragment(args["subnet"], int(args.get("leave") or 0))


@command("reboot")
def _reboot(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    return lab.reboot_node(_node(lab, args["node"]))


@command("terminate")
def _terminate(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    instance_id = _node(lab, args["node"])
    return {"instance_id": instance_id, **lab.terminate_node(instance_id)}


@command("endpoint-route")
def _endpoint_route(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    # the VPC route table with (true) or without (false) the S3/DynamoDB gateway endpoint
    routed = bool(args.get("routed"))
    lab.fabric.set_endpoint_route(routed)
    return {"routed": routed, "cidrs": {k: list(v) for k, v in lab.fabric.endpoint_cidrs.items()}}


# -- reading -----------------------------------------------------------------------------------
@command("counts")
def _counts(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    counts = lab.ec2.state.calls.snapshot(reset=bool(args.get("reset")))
    if args.get("node") is not None:
        instance_id = _node(lab, args["node"])
        counts = {instance_id: counts.get(instance_id, {})}
    return {"counts": counts}


@command("status")
def _status(lab: Lab, args: dict[str, Any]) -> dict[str, Any]:
    assert lab.imds is not None
    return {**lab.describe(), "latency": _profile(lab),
            "imds_lag": {"lag": lab.imds.propagation.lag,
                         "remove_lag": lab.imds.propagation.remove_lag},
            "armed": lab.ec2.faults.armed(), "denied": lab.ec2.control.denied()}


def _profile(lab: Lab) -> dict[str, Any]:
    p = lab.ec2.control.profile
    return {"name": p.name, "default": p.default.mean,
            "api": {k: v.mean for k, v in sorted(p.api.items())},
            "attach_visible_delay": p.attach_visible_delay,
            "detach_visible_delay": p.detach_visible_delay,
            "throttling": lab.ec2.control.throttling}


# -- the server --------------------------------------------------------------------------------
class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True  # a slow client must not hold the lab's teardown
    lab: Lab


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(MAX_LINE)
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            answer: dict[str, Any] = {"ok": False, "error": f"bad request: {exc}",
                                      "hint": "send one JSON object on one line"}
        else:
            answer = dispatch(self.server.lab, request)
        with contextlib.suppress(OSError):  # the client gave up
            self.wfile.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")


class ControlEndpoint:
    """Serve ``lab``'s commands on the unix socket ``path`` (owner-only) until :meth:`close`."""

    def __init__(self, lab: Lab, path: Path) -> None:
        self.lab = lab
        self.path = path
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ControlEndpoint:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # a SIGKILLed lab's leftover with our id
        server = _Server(str(self.path), _Handler, bind_and_activate=False)
        server.lab = self.lab
        try:
            server.server_bind()
            self.path.chmod(0o600)
            server.server_activate()
        except BaseException:
            server.server_close()
            raise
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="lab-control", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.path.unlink(missing_ok=True)


def request(path: Path, command_name: str, args: dict[str, Any], timeout: float = 60.0
            ) -> dict[str, Any]:
    """Send one command to the endpoint at ``path``; the answer as a dict (raises OSError)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps({"command": command_name, "args": args}).encode() + b"\n")
        with sock.makefile("rb") as stream:
            line = stream.readline(MAX_LINE)
    if not line:
        raise ConnectionError(f"{path}: the lab closed the connection without an answer")
    answer: dict[str, Any] = json.loads(line)
    return answer
