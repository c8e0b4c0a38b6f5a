"""Small helpers for the IMDS tests: a raw HTTP client (every header and status visible) and a
static, mutable metadata source (no EC2 needed). Imports only the stdlib and cnivpc.lab.imds."""

from __future__ import annotations

import http.client
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

from cnivpc.lab.imds import EniView, InstanceView


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: str


def request(url: str, method: str, path: str, headers: dict[str, str] | None = None) -> Response:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read().decode()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
    finally:
        conn.close()


def token(url: str, ttl: int = 21600) -> str:
    r = request(url, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)})
    assert r.status == 200, r
    return r.body


def get(url: str, path: str, tok: str | None) -> Response:
    return request(url, "GET", path, {"X-aws-ec2-metadata-token": tok} if tok else {})


def meta(url: str, path: str) -> tuple[int, str]:
    """GET ``/latest/meta-data/<path>`` with a fresh token: (status, body; "" unless 200)."""
    r = get(url, "/latest/meta-data/" + path, token(url, 60))
    return r.status, r.body if r.status == 200 else ""


def eni(device: int, mac: str, ips: tuple[str, ...], eni_id: str | None = None) -> EniView:
    return EniView(
        eni_id=eni_id or f"eni-{device:017x}",
        mac=mac,
        device_index=device,
        subnet_id="subnet-0123456789abcdef0",
        subnet_cidr="10.0.1.0/24",
        vpc_id="vpc-0a1b2c3d4e5f67890",
        vpc_cidrs=("10.0.0.0/16", "100.64.0.0/16"),
        owner_id="111122223333",
        ipv4s=ips,
        security_group_ids=("sg-0123456789abcdef0",),
        security_group_names=("node-sg",),
    )


class StaticSource:
    """A hand-made instance; tests change ``view`` to mimic EC2 changes."""

    def __init__(self) -> None:
        self.view = InstanceView(
            instance_id="i-0a1b2c3d4e5f60718",
            instance_type="m5.large",
            image_id="ami-0abcdef1234567890",
            region="us-west-2",
            availability_zone="us-west-2a",
            availability_zone_id="usw2-az1",
            account_id="111122223333",
            launch_time=datetime(2026, 1, 19, 16, 32, 11, tzinfo=UTC),
            enis=(eni(0, "02:4f:1a:2b:3c:4d", ("10.0.1.23",)),),
        )

    def __call__(self, instance_id: str) -> InstanceView | None:
        return self.view if instance_id == self.view.instance_id else None

    def add_eni(self, e: EniView) -> None:
        self.view = replace(self.view, enis=(*self.view.enis, e))

    def remove_eni(self, mac: str) -> None:
        self.view = replace(self.view, enis=tuple(e for e in self.view.enis if e.mac != mac))

    def set_ips(self, mac: str, ips: tuple[str, ...]) -> None:
        self.view = replace(
            self.view,
            enis=tuple(replace(e, ipv4s=ips) if e.mac == mac else e for e in self.view.enis),
        )
