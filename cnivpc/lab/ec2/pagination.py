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
from .wire import EC2_XMLNS, XML_PROLOGUE, QueryForm

ET.register_namespace("", EC2_XMLNS)


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


def slice_response(body: bytes, list_tag: str, page: Page, request_id: str) -> bytes:
    root = ET.fromstring(body)
    ns = {"e": EC2_XMLNS}
    container = root.find(f"e:{list_tag}", ns)
    if container is None:
        container = root.find(list_tag)
    if container is None:
        return body
    items = list(container)
    for item in items:
        container.remove(item)
    chosen = items[page.offset : page.offset + page.size]
    for item in chosen:
        container.append(item)
    for old in [c for c in root if c.tag.endswith("nextToken")]:
        root.remove(old)
    if page.offset + page.size < len(items):
        token_el = ET.SubElement(root, f"{{{EC2_XMLNS}}}nextToken")
        token_el.text = encode_token(page.offset + page.size, page.query)
    request_el = root.find("e:requestId", ns)
    if request_el is not None:
        request_el.text = request_id
    return (XML_PROLOGUE + ET.tostring(root, encoding="unicode")).encode()
