"""The running simulated EC2: :class:`Ec2Lab`.

Owns the lab's lifecycle: builds moto's WSGI app (``DomainDispatcherApplication``), wraps it in
:class:`~.middleware.StrictEc2App`, serves it on ``127.0.0.1:<free port>`` from a werkzeug thread,
warms moto's lazy EC2 backend (its first call otherwise costs ~1.5 s) and installs the backend
patches. The fabric serves the same ``.app`` on extra sockets inside node namespaces; all sockets
share one backend, one lock and one control surface.

Imports moto's server pieces and werkzeug; must not be imported by plugin code.
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections.abc import Callable
from types import TracebackType
from typing import Any

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from ..profiles import LatencyProfile
from . import patches
from .control import LabControl
from .events import AttachmentEvent, EventHub
from .middleware import StrictEc2App
from .state import LabState
from .wire import SERVER

ACCOUNT_ID = DEFAULT_ACCOUNT_ID  # moto's account for any dummy access key


class LabRequestHandler(MotoRequestHandler):
    """Serve ``Ec2Lab.app`` with this: EC2's ``Server`` header, no per-request log lines."""

    # EC2 answers ``Server: AmazonEC2``; werkzeug would announce itself instead (a WSGI app cannot
    # override it: http.server writes the header itself).
    def version_string(self) -> str:
        return SERVER

    def log_message(self, format: str, *args: Any) -> None:
        return None


class Ec2Lab:
    """A strict simulated EC2 endpoint for one account/region.

    ``Ec2Lab(profile="zero", region="us-east-1")``; ``start()``/``stop()``, or use it as a
    context manager.
    """

    def __init__(
        self,
        profile: LatencyProfile | str = "zero",
        region: str = "us-east-1",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        throttling: bool | None = None,
    ) -> None:
        self.region = region
        self.account_id = ACCOUNT_ID
        self.control = LabControl(profile, throttling=throttling)
        self.events = EventHub()
        self._host = host
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._state: LabState | None = None
        self._app: StrictEc2App | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Ec2Lab:
        if self._server is not None:
            return self
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        backend = ec2_backends[self.account_id][self.region]  # the slow lazy init, done once here
        self._state = LabState(backend, self.control, self.events)
        patches.install_class_patches()
        patches.install(self._state)
        self._app = StrictEc2App(DomainDispatcherApplication(create_backend_app), self._state)
        self._server = make_server(
            self._host, self._port, self._app, threaded=True, request_handler=LabRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="cnivpc-lab-ec2", daemon=True
        )
        self._thread.start()
        self._warm_up()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Ec2Lab:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Clean state between tests (~50 ms): moto's EC2 backend rebuilt, knobs back to defaults.

        moto re-creates its default VPC and default subnets; the lab's own topology is made on
        demand with :func:`cnivpc.lab.ec2.topology.create`. Call counts start from zero. Callbacks
        stay registered; the latency profile and the throttling switch stay as set.
        """
        state = self.state
        with state.lock:
            state.backend.reset()
            state.clear_transitions()
            patches.install(state)
            self.control.reset()
            state.calls.reset()

    # -- accessors ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("Ec2Lab not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def app(self) -> StrictEc2App:
        """The WSGI app (moto + strictness); serve it on more sockets as needed."""
        if self._app is None:
            raise RuntimeError("Ec2Lab not started")
        return self._app

    @property
    def state(self) -> LabState:
        if self._state is None:
            raise RuntimeError("Ec2Lab not started")
        return self._state

    @property
    def backend(self) -> Any:
        """moto's ``EC2Backend`` for this account/region (read it under ``lab.lock``)."""
        return self.state.backend

    @property
    def lock(self) -> threading.RLock:
        """Hold while reading ``backend`` from another thread for a consistent view."""
        return self.state.lock

    @property
    def faults(self) -> Any:
        return self.control.faults

    def on_attach(self, fn: Callable[[AttachmentEvent], None]) -> Callable[[AttachmentEvent], None]:
        """``fn(event)`` after each successful attach (usable as a decorator)."""
        return self.events.on_attach(fn)

    def on_detach(self, fn: Callable[[AttachmentEvent], None]) -> Callable[[AttachmentEvent], None]:
        """``fn(event)`` after each detach, incl. terminate and DeleteOnTermination cleanups."""
        return self.events.on_detach(fn)

    def remove_callback(self, fn: Callable[[AttachmentEvent], None]) -> None:
        self.events.remove(fn)

    # -- internals ------------------------------------------------------------------------------
    def _warm_up(self) -> None:
        # Let moto build its Flask app for EC2 once, through the real socket (first call ~1 s).
        request = urllib.request.Request(
            self.url + "/",
            data=b"Action=DescribeRegions&Version=2016-11-15",
            headers={
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                "Authorization": (
                    f"AWS4-HMAC-SHA256 Credential=AKIDLABWARMUP/20260101/{self.region}/ec2/"
                    "aws4_request, SignedHeaders=host, Signature=0"
                ),
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
