"""The EC2 Query wire format as the lab reads and writes it (aws-reference.md §3.1).

Owns :class:`QueryForm` (the decoded ``Action=...&Name.N=...`` request), the error body
(``<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>``, exactly the
shape botocore's EC2 parser reads) and the success envelope for the responses the lab writes itself.
Imports only the stdlib and ``errors``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode
from xml.sax.saxutils import escape

from .errors import Ec2Error, invalid_parameter_value

EC2_XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/"
XML_PROLOGUE = '<?xml version="1.0" encoding="UTF-8"?>\n'
# AWS sends these on every EC2 answer [wire]; ``Server`` is set by the lab's request handler.
CONTENT_TYPE = "text/xml;charset=UTF-8"
SERVER = "AmazonEC2"

_INDEXED = re.compile(r"^(?P<prefix>.+)\.(?P<n>\d+)$")


def new_request_id() -> str:
    return str(uuid.uuid4())


@dataclass
class QueryForm:
    """A decoded EC2 Query request. Keys are unique on this protocol, so a dict is faithful."""

    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: str) -> QueryForm:
        return cls(dict(parse_qsl(body, keep_blank_values=True)))

    def encode(self) -> str:
        return urlencode(self.params)

    @property
    def action(self) -> str:
        return self.params.get("Action", "")

    def get(self, name: str) -> str | None:
        return self.params.get(name)

    def has(self, name: str) -> bool:
        return name in self.params

    def get_int(self, name: str) -> int | None:
        raw = self.params.get(name)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise invalid_parameter_value(f"Invalid value '{raw}' for {name}") from None

    def get_bool(self, name: str) -> bool:
        return self.params.get(name, "").lower() == "true"

    def indexed(self, prefix: str, suffix: str = "") -> list[str]:
        """Values of ``prefix.N`` (or ``prefix.N.suffix``), ordered by N."""
        found: list[tuple[int, str]] = []
        for key, value in self.params.items():
            if suffix:
                if not key.endswith("." + suffix):
                    continue
                key = key[: -(len(suffix) + 1)]
            m = _INDEXED.match(key)
            if m and m.group("prefix") == prefix:
                found.append((int(m.group("n")), value))
        return [value for _, value in sorted(found)]

    def drop_indexed(self, prefix: str) -> None:
        """Remove every ``prefix.N...`` key."""
        for key in [k for k in self.params if k.startswith(prefix + ".")]:
            del self.params[key]

    def set_indexed(self, prefix: str, values: Iterable[str], suffix: str = "") -> None:
        self.drop_indexed(prefix)
        tail = "." + suffix if suffix else ""
        for n, value in enumerate(values, start=1):
            self.params[f"{prefix}.{n}{tail}"] = value

    def filters(self) -> list[tuple[str, list[str]]]:
        """``Filter.N.Name`` / ``Filter.N.Value.M`` pairs, ordered by N."""
        names: dict[int, str] = {}
        values: dict[int, list[tuple[int, str]]] = {}
        for key, value in self.params.items():
            parts = key.split(".")
            if parts[0] != "Filter" or len(parts) < 3 or not parts[1].isdigit():
                continue
            n = int(parts[1])
            if parts[2] == "Name" and len(parts) == 3:
                names[n] = value
            elif parts[2] == "Value" and len(parts) == 4 and parts[3].isdigit():
                values.setdefault(n, []).append((int(parts[3]), value))
        return [(names[n], [v for _, v in sorted(values.get(n, []))]) for n in sorted(names)]


def error_body(code: str, message: str, request_id: str) -> bytes:
    """EC2's compact error document. ``RequestID`` (capital ``ID``) is a sibling of ``Errors``."""
    return (
        XML_PROLOGUE
        + "<Response><Errors><Error><Code>"
        + escape(code)
        + "</Code><Message>"
        + escape(message)
        + "</Message></Error></Errors><RequestID>"
        + escape(request_id)
        + "</RequestID></Response>"
    ).encode()


def error_response(error: Ec2Error, request_id: str) -> tuple[int, list[tuple[str, str]], bytes]:
    body = error_body(error.code, error.message, request_id)
    return error.status, response_headers(request_id, len(body)), body


def response_headers(request_id: str, length: int) -> list[tuple[str, str]]:
    return [
        ("Content-Type", CONTENT_TYPE),
        ("Content-Length", str(length)),
        ("x-amzn-requestid", request_id),
    ]


def success_body(action: str, request_id: str, inner_xml: str) -> bytes:
    """``<{Action}Response xmlns=...><requestId/>...`` with ``inner_xml`` already escaped."""
    return (
        XML_PROLOGUE
        + f'<{action}Response xmlns="{EC2_XMLNS}">'
        + f"<requestId>{escape(request_id)}</requestId>"
        + inner_xml
        + f"</{action}Response>"
    ).encode()


def xml_element(name: str, value: str) -> str:
    return f"<{name}>{escape(value)}</{name}>"


def xml_item_set(name: str, items: Iterable[Mapping[str, str]]) -> str:
    inner = "".join(
        "<item>" + "".join(xml_element(k, v) for k, v in item.items()) + "</item>" for item in items
    )
    return f"<{name}>{inner}</{name}>"
