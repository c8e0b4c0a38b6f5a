"""The strict EC2 front door: a WSGI middleware around moto's server app.

Owns :class:`StrictEc2App`. Per EC2 Query request, in this order:

1. decode the form (``Action=...``); anything that is not an EC2 action (``/moto-api``, other
   services) goes straight to moto;
2. attribute the call to a node (:func:`.calls.attribute`) and take the fault armed for it;
   a lost request is held and answered 503 here, never applied;
3. the profile's latency, *outside* the lock;
4. throttling: an armed RequestLimitExceeded burst or an empty token bucket -> 503;
5. injected 5xx fault;
6. IAM deny list -> ``UnauthorizedOperation`` 403 (DryRun or not);
7. under the state lock: the action's strictness rule (``rules``) validates against moto's live
   state and may rewrite the form; ``DryRun=true`` stops here with ``DryRunOperation`` 412;
8. forward to moto, then the rule's after-hook (e.g. Assign's answer listing only new addresses);
9. moto's own errors are re-emitted in EC2's exact error shape; attachment events are delivered
   after the lock is released; the call is counted (``state.calls``);
10. a lost response withholds the answer only now, after the work and its events: held past the
    client's read timeout (or until the faults are cleared), or the connection is dropped.

Imports werkzeug-free WSGI plumbing only; moto is reached through the wrapped app and the backend.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import Any

from ..faults import Fault, HttpFault, LostRequest, LostResponse
from . import (
    calls,
    errors,
    rules,
    rules6,  # noqa: F401  (registers the IPv6 and prefix-list rules in RULES)
)
from .errors import Ec2Error
from .rules import RULES, Plan, RuleContext
from .state import LabState
from .wire import QueryForm, error_response, new_request_id, response_headers

log = logging.getLogger(__name__)

_FILTERING = (
    "Filter.",
    "MaxResults",
    "NextToken",
    "NetworkInterfaceId.",
    "InstanceId.",
    "GroupId.",
    "GroupName.",
)
_REQUEST_ID = re.compile(rb"<requestId>[^<]*</requestId>")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
Reply = tuple[int, list[tuple[str, str]], bytes]

# Actions that carry no DryRun member in the EC2 model (aws-reference.md §3.6): a DryRun key sent
# anyway is ignored, as an unknown parameter would be.
NO_DRY_RUN = frozenset(
    {
        "AssignPrivateIpAddresses",
        "UnassignPrivateIpAddresses",
        "AssignIpv6Addresses",
        "UnassignIpv6Addresses",
    }
)

_STATUS_TEXT = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    412: "Precondition Failed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _status_line(status: int) -> str:
    return f"{status} {_STATUS_TEXT.get(status, 'Unknown')}"


class StrictEc2App:
    def __init__(self, moto_app: WsgiApp, state: LabState) -> None:
        self.moto_app = moto_app
        self.state = state

    # -- WSGI entry -----------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = self._read_body(environ)
        form = QueryForm.parse(body.decode("utf-8", "replace")) if self._is_query(environ) else None
        if form is None or not form.action or self._not_ec2(environ):
            environ["wsgi.input"] = io.BytesIO(body)
            return self.moto_app(environ, start_response)
        request_id = new_request_id()
        action = form.action
        with self.state.lock:
            node = calls.attribute(
                self.state.backend, str(environ.get("REMOTE_ADDR") or ""), form.params
            )
        faults = self.state.control.faults
        fault = faults.take(action)
        if isinstance(fault, LostRequest):
            # Lost on the way in: never applied; the caller, long gone, gets a 503.
            self.state.calls.record(node, action, "Unavailable", lost=True)
            faults.hold(fault.hold)
            exc = Ec2Error("Unavailable", "The request timed out before it was processed.", 503)
            status, headers, payload = error_response(exc, request_id)
            start_response(_status_line(status), headers)
            return [payload]
        error: str | None = None
        try:
            status, headers, payload = self._handle(environ, form, request_id, fault)
        except Ec2Error as exc:
            error = exc.code
            status, headers, payload = error_response(exc, request_id)
        finally:
            self.state.flush_events()
        lost = isinstance(fault, LostResponse)
        self.state.calls.record(node, action, error, lost=lost)
        if isinstance(fault, LostResponse):
            # EC2 has done the work (and the hot-plug it triggers has started): only the answer
            # gets lost on its way back, so a client's retry meets the changed state.
            if fault.drop:
                self._drop(environ)
            else:
                faults.hold(fault.hold)
        start_response(_status_line(status), headers)
        return [payload]

    # -- the pipeline ---------------------------------------------------------------------------
    def _handle(
        self, environ: dict[str, Any], form: QueryForm, request_id: str, fault: Fault | None
    ) -> Reply:
        control = self.state.control
        action = form.action
        delay = control.latency_for(action)
        if delay > 0:
            time.sleep(delay)
        if not control.throttler.allow(action, unfiltered=self._unfiltered(form)):
            raise errors.request_limit_exceeded()
        if isinstance(fault, HttpFault):
            raise Ec2Error(fault.code, fault.message, fault.status)
        if control.is_denied(action):
            encoded = None if action.startswith("Describe") else control.encoded_denial()
            raise errors.unauthorized(encoded)
        dry_run = form.get_bool("DryRun") and action not in NO_DRY_RUN
        with self.state.lock:
            try:
                return self._run(environ, form, request_id, dry_run)
            except Ec2Error:
                self.state.discard_events()
                raise
            except NotImplementedError as exc:
                # moto's FilterNotImplementedError & co. (moto's Flask app runs in debug mode, so
                # they reach us as exceptions instead of an HTML 500 page).
                self.state.discard_events()
                raise errors.lab_not_implemented(f"this request in moto: {exc}") from None
            except Exception as exc:
                self.state.discard_events()
                log.exception("lab EC2 %s failed", action)
                raise Ec2Error("InternalError", f"Lab internal error: {exc!r}", 500) from None

    @staticmethod
    def _drop(environ: dict[str, Any]) -> None:
        # The werkzeug server hands us its connection; shutting it down makes the client see the
        # connection close without an answer, and werkzeug's own write then fails quietly
        # (it treats a broken pipe as a dropped client).
        conn = environ.get("werkzeug.socket")
        if isinstance(conn, socket.socket):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _run(
        self, environ: dict[str, Any], form: QueryForm, request_id: str, dry_run: bool
    ) -> Reply:
        self.state.settle()
        rules.check_visibility(self.state, form)
        rule = RULES.get(form.action)
        ctx = RuleContext(self.state, form, request_id, dry_run)
        plan = rule(ctx) if rule is not None else Plan()
        if dry_run:
            raise errors.dry_run_ok()
        if plan.reply is not None:
            body = plan.reply
            return 200, response_headers(request_id, len(body)), body
        status, _headers, body = self._forward(environ, plan.form or form)
        if status >= 400:
            raise self._normalise_error(status, body)
        if plan.after is not None:
            rewritten = plan.after(body)
            if rewritten is not None:
                body = rewritten
        # moto answers ``<requestId>request-id</requestId>``; keep it equal to x-amzn-requestid.
        body = _REQUEST_ID.sub(f"<requestId>{request_id}</requestId>".encode(), body, count=1)
        return 200, response_headers(request_id, len(body)), body

    # -- moto -----------------------------------------------------------------------------------
    def _forward(self, environ: dict[str, Any], form: QueryForm) -> Reply:
        encoded = form.encode().encode()
        env = dict(environ)
        if "/ec2/aws4_request" not in str(env.get("HTTP_AUTHORIZATION", "")):
            # moto routes by the SigV4 credential scope and sends unsigned requests to S3.
            region = self.state.backend.region_name
            env["HTTP_AUTHORIZATION"] = (
                f"AWS4-HMAC-SHA256 Credential=AKIDLAB/20260101/{region}/ec2/aws4_request, "
                "SignedHeaders=host, Signature=0"
            )
        env["wsgi.input"] = io.BytesIO(encoded)
        env["CONTENT_LENGTH"] = str(len(encoded))
        env["CONTENT_TYPE"] = "application/x-www-form-urlencoded; charset=utf-8"
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"] = int(status.split(" ", 1)[0])
            captured["headers"] = headers
            return lambda _data: None

        chunks = self.moto_app(env, capture)
        try:
            payload = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return int(captured.get("status", 500)), list(captured.get("headers", [])), payload

    @staticmethod
    def _normalise_error(status: int, body: bytes) -> Ec2Error:
        """moto's error (whatever its XML) -> EC2's shape; moto's "not implemented" 500s -> 400."""
        code, message = "InternalError", "An internal error has occurred."
        try:
            root = ET.fromstring(body)
            # moto puts an xmlns on <Response> (AWS does not): match on the local name.
            for element in root.iter():
                local = element.tag.rsplit("}", 1)[-1]
                if local == "Code" and element.text:
                    code = element.text
                elif local == "Message" and element.text is not None:
                    message = element.text
        except ET.ParseError:
            text = body.decode("utf-8", "replace").strip()
            if "not implemented" in text.lower() or "NotImplemented" in text:
                return errors.lab_not_implemented(f"this request in moto ({text[:200]})")
            return Ec2Error(code, message, status)
        if status >= 500 and ("NotImplemented" in code or "not implemented" in message.lower()):
            return errors.lab_not_implemented(f"this request in moto ({message})")
        return Ec2Error(code, message, status)

    # -- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _read_body(environ: dict[str, Any]) -> bytes:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        stream = environ.get("wsgi.input")
        if stream is None or length <= 0:
            return b""
        data: bytes = stream.read(length)
        return data

    @staticmethod
    def _is_query(environ: dict[str, Any]) -> bool:
        return environ.get("REQUEST_METHOD") == "POST" and str(
            environ.get("CONTENT_TYPE", "")
        ).startswith("application/x-www-form-urlencoded")

    @staticmethod
    def _not_ec2(environ: dict[str, Any]) -> bool:
        if str(environ.get("PATH_INFO", "")).startswith("/moto-api"):
            return True
        auth = str(environ.get("HTTP_AUTHORIZATION", ""))
        # SigV4 credential scope: .../<region>/<service>/aws4_request. No scope -> assume EC2.
        return "/aws4_request" in auth and "/ec2/aws4_request" not in auth

    @staticmethod
    def _unfiltered(form: QueryForm) -> bool:
        # "Without a filter and without pagination" (anchors.md §6.3). An explicit ID list names
        # the resources, so it counts as filtered (VPC CNI's ENI-by-ID calls are cheap on AWS).
        return not any(k.startswith(_FILTERING) for k in form.params)
