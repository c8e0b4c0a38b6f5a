"""IMDSv2 emulator on the host (no root, no EC2): wire protocol, tree shape, propagation lag.

Every test serves a hand-made instance (``StaticSource``) on 127.0.0.1 and talks raw HTTP, so
each status, header and byte of the body is checked as a client sees it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from cnivpc.aws.metadata import Metadata
from cnivpc.lab.imds import ImdsConfig, ImdsServer

from .imdsutil import StaticSource, eni, get, request, token

IID = "i-0a1b2c3d4e5f60718"
MAC0 = "02:4f:1a:2b:3c:4d"
MAC1 = "02:7e:5d:6c:7b:8a"
MACS = "/latest/meta-data/network/interfaces/macs/"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def source() -> StaticSource:
    return StaticSource()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def served(source: StaticSource, clock: FakeClock) -> Iterator[tuple[ImdsServer, str]]:
    """Name: served. Scope: function. An ImdsServer on a fake clock, one instance on 127.0.0.1."""
    server = ImdsServer(source, clock=clock)
    url = server.listen_tcp(IID)
    yield server, url
    server.close()


def test_get_without_token_is_401_and_imdsv1_only_when_switched_on(
    served: tuple[ImdsServer, str],
) -> None:
    server, url = served
    r = get(url, "/latest/meta-data/instance-id", None)
    assert r.status == 401
    assert "<title>401 - Unauthorized</title>" in r.body
    assert r.headers["content-type"] == "text/html"
    assert get(url, "/latest/meta-data/instance-id", "AQAAAbogus").status == 401

    server.config.http_tokens = "optional"
    assert get(url, "/latest/meta-data/instance-id", None).body == IID
    # a bad token is still refused when v1 is allowed
    assert get(url, "/latest/meta-data/instance-id", "AQAAAbogus").status == 401


def test_token_put_protocol(served: tuple[ImdsServer, str]) -> None:
    _, url = served
    r = request(url, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    assert r.status == 200
    assert r.headers["x-aws-ec2-metadata-token-ttl-seconds"] == "300"  # Go SDK v2 needs it
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["server"] == "EC2ws"
    assert r.headers["connection"] == "close"
    assert r.body.startswith("AQAAA") and "\n" not in r.body and len(r.body) >= 50
    for bad in ("0", "21601", "-1", "abc", ""):
        r = request(url, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": bad})
        assert r.status == 400, bad
        assert "<title>400 - Bad Request</title>" in r.body
    assert request(url, "PUT", "/latest/api/token").status == 400
    proxied = {"X-aws-ec2-metadata-token-ttl-seconds": "21600", "X-Forwarded-For": "10.0.0.9"}
    assert request(url, "PUT", "/latest/api/token", proxied).status == 403
    assert request(url, "PUT", "/2021-03-23/api/token", {
        "X-aws-ec2-metadata-token-ttl-seconds": "60"}).status == 403
    r = request(url, "GET", "/latest/api/token")
    assert (r.status, r.headers["allow"], r.body) == (405, "OPTIONS, PUT", "")
    assert request(url, "POST", "/latest/meta-data/").status == 405


def test_token_ttl_expiry(served: tuple[ImdsServer, str], clock: FakeClock) -> None:
    _, url = served
    tok = token(url, ttl=60)
    r = get(url, "/latest/meta-data/instance-id", tok)
    assert r.status == 200
    assert r.headers["x-aws-ec2-metadata-token-ttl-seconds"] == "60"
    clock.now += 59.5
    assert get(url, "/latest/meta-data/instance-id", tok).status == 200
    clock.now += 0.5  # now == issued + ttl: expired (AEMM's rule)
    assert get(url, "/latest/meta-data/instance-id", tok).status == 401
    assert get(url, "/latest/meta-data/instance-id", token(url, ttl=1)).status == 200


def test_token_is_valid_only_on_its_instance(source: StaticSource) -> None:
    with ImdsServer(source) as server:
        a = server.listen_tcp(IID)
        b = server.listen_tcp("i-0ffffffffffffffff")
        tok = token(b)
        assert get(a, "/latest/meta-data/instance-id", tok).status == 401
        assert get(a, "/latest/meta-data/instance-id", token(a)).status == 200


def test_bodies_listings_and_trailing_slashes(served: tuple[ImdsServer, str]) -> None:
    _, url = served
    tok = token(url)
    r = get(url, "/latest/meta-data/mac", tok)
    assert (r.status, r.body, r.headers["content-type"]) == (200, MAC0, "text/plain")
    assert get(url, "/latest/meta-data/local-ipv4", tok).body == "10.0.1.23"
    assert get(url, "/latest/meta-data/instance-type", tok).body == "m5.large"
    assert get(url, "/latest/meta-data/placement/availability-zone", tok).body == "us-west-2a"
    assert get(url, "/latest/meta-data/placement/region", tok).body == "us-west-2"
    assert get(url, "/latest/meta-data/local-hostname", tok).body == (
        "ip-10-0-1-23.us-west-2.compute.internal")
    listing = get(url, "/latest/meta-data/", tok).body.split("\n")
    assert listing == sorted(listing)
    assert {"instance-id", "mac", "network/", "placement/", "iam/"} <= set(listing)
    assert get(url, "/latest/meta-data", tok).body == "\n".join(listing)  # no slash, no redirect
    assert get(url, "/", tok).body.split("\n")[-1] == "latest"
    assert get(url, "/2021-03-23/meta-data/instance-id", tok).body == IID

    assert get(url, MACS, tok).body == MAC0 + "/"
    assert get(url, MACS.rstrip("/"), tok).body == MAC0 + "/"
    keys = get(url, f"{MACS}{MAC0}", tok).body.split("\n")
    assert keys == sorted(keys)
    assert {"device-number", "interface-id", "local-ipv4s", "subnet-id", "vpc-id", "owner-id",
            "subnet-ipv4-cidr-block", "vpc-ipv4-cidr-block", "vpc-ipv4-cidr-blocks",
            "security-group-ids", "mac"} <= set(keys)
    # absent, not empty: no IPv6, no prefixes, single network card
    assert not {"ipv6s", "ipv4-prefix", "network-card"} & set(keys)
    assert get(url, f"{MACS}{MAC0}/ipv6s", tok).status == 404
    assert get(url, f"{MACS}{MAC0}/device-number", tok).body == "0"
    assert get(url, f"{MACS}{MAC0}/device-number/", tok).body == "0"  # leaf + slash = leaf
    assert get(url, f"{MACS}{MAC0}/vpc-ipv4-cidr-blocks", tok).body == (
        "10.0.0.0/16\n100.64.0.0/16")
    r = get(url, "/latest/meta-data/nope", tok)
    assert r.status == 404 and "<title>404 - Not Found</title>" in r.body
    assert r.body.startswith('<?xml version="1.0" encoding="iso-8859-1"?>')
    head = request(url, "HEAD", "/latest/meta-data/instance-id", {"X-aws-ec2-metadata-token": tok})
    assert (head.status, head.body, head.headers["content-length"]) == (200, "", str(len(IID)))
    assert get(url, "/latest/user-data", tok).status == 404


def test_identity_document_and_iam_credentials(served: tuple[ImdsServer, str]) -> None:
    _, url = served
    tok = token(url)
    r = get(url, "/latest/dynamic/instance-identity/document", tok)
    assert r.headers["content-type"] == "text/plain"
    assert '  "instanceId" : "i-0a1b2c3d4e5f60718",' in r.body.split("\n")
    doc = json.loads(r.body)
    assert doc["region"] == "us-west-2" and doc["instanceType"] == "m5.large"
    assert doc["accountId"] == "111122223333" and doc["privateIp"] == "10.0.1.23"
    assert doc["pendingTime"] == "2026-01-19T16:32:11Z" and doc["kernelId"] is None
    role = get(url, "/latest/meta-data/iam/security-credentials/", tok).body
    creds = json.loads(get(url, f"/latest/meta-data/iam/security-credentials/{role}", tok).body)
    assert creds["Code"] == "Success" and creds["Type"] == "AWS-HMAC" and creds["AccessKeyId"]


def test_new_eni_and_new_ip_404_until_the_lag_passes(
    served: tuple[ImdsServer, str], source: StaticSource, clock: FakeClock
) -> None:
    server, url = served
    server.propagation.lag = 5.0
    tok = token(url)
    source.add_eni(eni(1, MAC1, ("10.0.1.40", "10.0.1.41")))
    assert get(url, MACS, tok).body == MAC0 + "/"
    assert get(url, f"{MACS}{MAC1}/local-ipv4s", tok).status == 404
    clock.now += 4.9
    assert get(url, f"{MACS}{MAC1}/interface-id", tok).status == 404
    clock.now += 0.1
    assert get(url, MACS, tok).body == f"{MAC0}/\n{MAC1}/"  # device order
    assert get(url, f"{MACS}{MAC1}/local-ipv4s", tok).body == "10.0.1.40\n10.0.1.41"
    assert get(url, f"{MACS}{MAC1}/device-number", tok).body == "1"

    # a secondary IP assigned later lags on its own; the primary stays first
    source.set_ips(MAC1, ("10.0.1.40", "10.0.1.41", "10.0.1.77"))
    clock.now += 1
    assert get(url, f"{MACS}{MAC1}/local-ipv4s", tok).body == "10.0.1.40\n10.0.1.41"
    clock.now += 5
    assert get(url, f"{MACS}{MAC1}/local-ipv4s", tok).body == "10.0.1.40\n10.0.1.41\n10.0.1.77"

    # the primary ENI's own secondaries lag too
    source.set_ips(MAC0, ("10.0.1.23", "10.0.1.24"))
    assert get(url, "/latest/meta-data/local-ipv4", tok).body == "10.0.1.23"
    assert get(url, f"{MACS}{MAC0}/local-ipv4s", tok).body == "10.0.1.23"
    clock.now += 5
    assert get(url, f"{MACS}{MAC0}/local-ipv4s", tok).body == "10.0.1.23\n10.0.1.24"


def test_detached_eni_and_freed_ip_linger(
    served: tuple[ImdsServer, str], source: StaticSource, clock: FakeClock
) -> None:
    server, url = served
    server.propagation.remove_lag = 30.0
    tok = token(url)
    source.add_eni(eni(1, MAC1, ("10.0.1.40", "10.0.1.41")))
    assert get(url, f"{MACS}{MAC1}/local-ipv4s", tok).body == "10.0.1.40\n10.0.1.41"
    source.set_ips(MAC1, ("10.0.1.40",))
    assert get(url, f"{MACS}{MAC1}/local-ipv4s", tok).body == "10.0.1.40\n10.0.1.41"
    source.remove_eni(MAC1)
    assert get(url, MACS, tok).body == f"{MAC0}/\n{MAC1}/"  # still listed ...
    assert get(url, f"{MACS}{MAC1}/interface-id", tok).status == 404  # ... with 404 sub-keys
    clock.now += 30
    assert get(url, MACS, tok).body == f"{MAC0}/"


def test_cnivpc_metadata_client_reads_the_emulator(
    served: tuple[ImdsServer, str], source: StaticSource
) -> None:
    """The plugins' own IMDS client (cnivpc.aws.metadata) against the emulator."""
    _, url = served
    source.add_eni(eni(1, MAC1, ("10.0.1.40", "10.0.1.41")))
    md = Metadata(url)
    ident = md.identity()
    assert (ident.instance_id, ident.region, ident.availability_zone) == (
        IID, "us-west-2", "us-west-2a")
    enis = md.interfaces()
    assert [(e.mac, e.device_number, e.ipv4s) for e in enis] == [
        (MAC0, 0, ("10.0.1.23",)), (MAC1, 1, ("10.0.1.40", "10.0.1.41"))]
    assert enis[1].vpc_cidrs == ("10.0.0.0/16", "100.64.0.0/16")


def test_disabled_endpoint_is_403(source: StaticSource) -> None:
    with ImdsServer(source, config=ImdsConfig(endpoint_enabled=False)) as server:
        url = server.listen_tcp(IID)
        assert request(url, "PUT", "/latest/api/token", {
            "X-aws-ec2-metadata-token-ttl-seconds": "60"}).status == 403
        assert get(url, "/latest/meta-data/", None).status == 403


def test_a_request_that_times_out_is_sent_once_more() -> None:
    """A loaded node's IMDS (or this process) can miss the 1 s timeout once: the client sends
    the request again before giving up; one that never answers fails after two timeouts."""
    import socket
    import threading
    import time

    from cnivpc.aws.errors import MetadataUnavailable

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    held: list[socket.socket] = []
    answer_from = {"n": 2}  # the first connection is accepted and never answered
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.05)  # to see ``stop``; accepted sockets block
        n = 0
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            n += 1
            if n < answer_from["n"]:
                held.append(conn)
                continue
            with conn:
                conn.recv(65536)
                body = b"tok" if n % 2 == 0 else b"i-0123"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        md = Metadata(f"http://127.0.0.1:{port}", timeout=0.3)
        started = time.monotonic()
        assert md.get("meta-data/instance-id") == "i-0123"  # token (2nd try), then the GET
        assert 0.3 <= time.monotonic() - started < 2
        answer_from["n"] = 10**6  # nothing answers any more
        md = Metadata(f"http://127.0.0.1:{port}", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(MetadataUnavailable, match="unreachable"):
            md.get("meta-data/instance-id")
        assert 0.6 <= time.monotonic() - started < 2  # two timeouts, not one, not more
    finally:
        stop.set()
        server.join(5)
        listener.close()
        for conn in held:
            conn.close()
