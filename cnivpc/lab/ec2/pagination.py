"""EC2-style pagination (``MaxResults`` / ``NextToken``) on top of moto's unpaginated Describe*.

Owns :class:`Page`, :func:`parse` and :func:`slice_response`. moto ignores both parameters and
always answers everything; the lab asks moto for everything, then cuts the page out of the XML and
adds ``<nextToken>``. Tokens are opaque (base64url JSON of offset + a hash of the query), bound to
the query they came from, as EC2's are. Only the stdlib and ``errors``/``wire``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from . import errors
from .wire import XML_PROLOGUE, QueryForm


@dataclass(frozen=True)
class Page:
    offset: int
    size: int
    query: str


def _query_hash(form: QueryForm) -> str:
    stable = sorted((k, v) for k, v in form.params.items() if k not in ("MaxResults", "NextToken"))
    return hashlib.sha256(json.dumps(stable).encode()).hexdigest()[:16]


def encode_token(offset: int, query: str) -> str:
    raw = json.dumps({"o": offset, "q": query}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse(form: QueryForm, *, id_param: str | None, bounds: tuple[int, int]) -> Page | None:
    """The page a request asks for, or ``None`` when it does not paginate."""
    max_results = form.get_int("MaxResults")
    token = form.get("NextToken")
    if max_results is None and not token:
        return None
    low, high = bounds
    if max_results is not None:
        if id_param is not None and form.indexed(id_param):
            # DescribeNetworkInterfaces: "You cannot specify this parameter and the network
            # interface IDs parameter in the same request." (service-2.json)
            raise errors.parameter_combination(
                f"The parameter {id_param}s cannot be used with the parameter maxResults"
            )
        if max_results < low:
            raise errors.max_results_too_small(max_results, low)
        if max_results > high:
            raise errors.max_results_too_large(max_results, high)
    query = _query_hash(form)
    offset = 0
    if token:
        try:
            padded = token + "=" * (-len(token) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded.encode()))
            offset = int(data["o"])
            if data["q"] != query or offset < 0:
                raise ValueError("token from another query")
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise errors.invalid_next_token(token) from None
    # A NextToken without MaxResults keeps EC2's behaviour of "the rest, up to the maximum".
    return Page(offset=offset, size=max_results if max_results is not None else high, query=query)


def next_token_after(page: Page, total: int) -> str | None:
    end = page.offset + page.size
    return encode_token(end, page.query) if end < total else None


def add_next_token(body: bytes, token: str | None, request_id: str) -> bytes:
    """Append ``<nextToken>`` to an answer moto produced for an already-cut page."""
    root = ET.fromstring(body)
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    if token is not None:
        token_el = ET.SubElement(root, f"{{{namespace}}}nextToken" if namespace else "nextToken")
        token_el.text = token
    return _serialise(root, namespace, request_id)


def _serialise(root: ET.Element, namespace: str, request_id: str) -> bytes:
    for child in root:
        if _local(child.tag) == "requestId":
            child.text = request_id
    if namespace:
        ET.register_namespace("", namespace)  # serialise as a default xmlns, not "ns0:"
    return (XML_PROLOGUE + ET.tostring(root, encoding="unicode")).encode()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def slice_response(body: bytes, list_tag: str, page: Page, request_id: str) -> bytes:
    root = ET.fromstring(body)
    # Match on local names: moto's namespace lacks AWS's trailing slash.
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    container = next((c for c in root if _local(c.tag) == list_tag), None)
    if container is None:
        return body
    items = list(container)
    for item in items:
        container.remove(item)
    chosen = items[page.offset : page.offset + page.size]
    for item in chosen:
        container.append(item)
    for old in [c for c in root if _local(c.tag) == "nextToken"]:
        root.remove(old)
    token = next_token_after(page, len(items))
    if token is not None:
        token_el = ET.SubElement(root, f"{{{namespace}}}nextToken" if namespace else "nextToken")
        token_el.text = token
    return _serialise(root, namespace, request_id)
