"""IMDSv2 client on the stdlib (``http.client``): token first, short timeouts (a request that
times out is sent once more), retries otherwise only where metadata is known to lag, and
IMDSv1 only when explicitly allowed.

What cnivpc reads: the identity document (region, AZ, instance id and type, account), the
``network/interfaces/macs/<mac>/`` tree per ENI, and the instance role's credentials (for the EC2
client: botocore's own fetcher would fall back to IMDSv1 and honour an inherited proxy; this
client never does either: http.client connects directly).

Metadata lags EC2 by seconds (a new ENI's MAC can be listed while its sub-keys still 404; new
IPs reach ``local-ipv4s`` late), so callers that just changed something in EC2 use
``wait_for_interface`` with a deadline; everything else treats IMDS as a discovery hint and
EC2 (or the local store) as the truth.

Endpoint: ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` (as the AWS SDKs honour it), else
``http://169.254.169.254``. Must not import botocore or pyroute2.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Callable

from ..cni.records import Record
from .errors import AwsError, MetadataNotFound, MetadataUnavailable

DEFAULT_ENDPOINT = "http://169.254.169.254"
ENDPOINT_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
TOKEN_TTL = 21600
TOKEN_PATH = "/latest/api/token"
TIMEOUT_ATTEMPTS = 2  # a request that timed out is sent once more (see _request)
META = "/latest/meta-data/"


class Identity(Record):
    """The instance identity document's fields cnivpc uses."""

    instance_id: str
    instance_type: str
    region: str
    availability_zone: str
    account_id: str
    private_ip: str


class EniMetadata(Record):
    """One ENI as the metadata sees it. ``ipv4s[0]`` is the ENI's primary IP."""

    mac: str
    eni_id: str
    device_number: int
    ipv4s: tuple[str, ...]
    subnet_id: str
    subnet_cidr: str
    vpc_id: str
    vpc_cidrs: tuple[str, ...]
    security_group_ids: tuple[str, ...] = ()
    # /28 prefixes delegated to the ENI (``ipv4-prefix``): their addresses are not repeated in
    # ``local-ipv4s``.
    ipv4_prefixes: tuple[str, ...] = ()
    # IPv6 (read only when asked: ``interface(mac, ipv6=True)``): the /80 prefixes delegated
    # to the ENI and its subnet's IPv6 CIDR.
    ipv6_prefixes: tuple[str, ...] = ()
    subnet_ipv6_cidr: str = ""

    @property
    def primary_ip(self) -> str:
        return self.ipv4s[0] if self.ipv4s else ""


class Metadata:
    """A metadata session: one token per process, fetched on first use and refreshed on 401."""

    def __init__(self, endpoint: str | None = None, *, timeout: float = 1.0,
                 allow_v1: bool = False, getenv: Callable[[str], str | None] = os.environ.get,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from urllib.parse import urlsplit  # not every exec asks IMDS

        url = urlsplit(endpoint or getenv(ENDPOINT_ENV) or DEFAULT_ENDPOINT)
        self.host = url.hostname or "169.254.169.254"
        self.port = url.port or 80
        self.timeout = timeout
        self.allow_v1 = allow_v1
        self._token: str | None = None
        self._sleep = sleep
        self._clock = clock

    # -- wire --------------------------------------------------------------------------------

    def _request(self, method: str, path: str,
                 headers: dict[str, str]) -> tuple[int, str]:
        # Imported here, not at the top: http.client brings ssl and email (~20 ms, ~0.3 s
        # under user-mode-linux) and a warm IPAM ADD, served from the store, never asks IMDS.
        import http.client

        attempt = 1
        while True:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                conn.request(method, path, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read().decode("utf-8", errors="replace")
            except (OSError, http.client.HTTPException) as exc:
                # A node so loaded that IMDS (or this process) missed the short timeout once
                # is likely to make it the next time: one more try before code 11. A refused
                # or reset connection is not retried: nothing answers there.
                if isinstance(exc, TimeoutError) and attempt < TIMEOUT_ATTEMPTS:
                    attempt += 1
                    continue
                raise MetadataUnavailable(f"instance metadata at {self.host}:{self.port} is "
                                          f"unreachable", repr(exc)) from exc
            finally:
                conn.close()

    def _fetch_token(self) -> str | None:
        status, body = self._request(
            "PUT", TOKEN_PATH, {"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL)})
        if status == 200 and body:
            return body
        if self.allow_v1 and status in (403, 404, 405):
            return None
        raise MetadataUnavailable("instance metadata refused an IMDSv2 token",
                                  f"PUT {TOKEN_PATH} answered {status}")

    def get(self, path: str) -> str:
        """GET a metadata path (relative to /latest/). 404 → MetadataNotFound."""
        full = "/latest/" + path.lstrip("/")
        for attempt in (1, 2):
            if self._token is None:
                self._token = self._fetch_token()
            headers = {"X-aws-ec2-metadata-token": self._token} if self._token else {}
            status, body = self._request("GET", full, headers)
            if status == 200:
                return body
            if status == 404:
                raise MetadataNotFound(path)
            if status == 401 and attempt == 1:
                self._token = None  # expired or revoked: one fresh token, then give up
                continue
            break
        raise MetadataUnavailable(f"instance metadata answered {status} for {path}")

    def get_optional(self, path: str) -> str | None:
        try:
            return self.get(path)
        except MetadataNotFound:
            return None

    # -- what cnivpc reads -------------------------------------------------------------------

    def role_credentials(self) -> dict[str, str] | None:
        """The instance role's temporary credentials, in the shape botocore's
        ``RefreshableCredentials.create_from_metadata`` takes; None when the instance has no
        role (no ``iam/`` subtree, or an empty listing)."""
        base = "meta-data/iam/security-credentials/"
        listing = self.get_optional(base)
        roles = listing.split() if listing else []
        if not roles:
            return None
        try:
            doc = json.loads(self.get(base + roles[0]))
            if doc.get("Code", "Success") != "Success":
                raise AwsError(f"the instance role {roles[0]} has no credentials",
                               f"{doc.get('Code')}: {doc.get('Message', '')}")
            return {"role_name": roles[0], "access_key": doc["AccessKeyId"],
                    "secret_key": doc["SecretAccessKey"], "token": doc["Token"],
                    "expiry_time": doc["Expiration"]}
        except (ValueError, KeyError) as exc:
            raise AwsError(f"the instance role {roles[0]}'s credentials are unreadable",
                           repr(exc)) from exc

    def identity(self) -> Identity:
        doc = json.loads(self.get("dynamic/instance-identity/document"))
        return Identity(instance_id=doc["instanceId"], instance_type=doc["instanceType"],
                        region=doc["region"], availability_zone=doc["availabilityZone"],
                        account_id=str(doc.get("accountId") or ""),
                        private_ip=str(doc.get("privateIp") or ""))

    def macs(self) -> list[str]:
        listing = self.get("meta-data/network/interfaces/macs/")
        return [line.strip().rstrip("/") for line in listing.splitlines() if line.strip()]

    def interface(self, mac: str, *, ipv6: bool = False) -> EniMetadata:
        """One ENI's metadata; MetadataNotFound while its sub-keys are still propagating.
        ``ipv6`` also reads its IPv6 prefixes and its subnet's IPv6 CIDR (two more reads)."""
        base = f"meta-data/network/interfaces/macs/{mac}/"

        def lines(key: str, required: bool = True) -> tuple[str, ...]:
            body = self.get(base + key) if required else (self.get_optional(base + key) or "")
            return tuple(x for x in body.split() if x)

        ipv4s = tuple(ip for ip in lines("local-ipv4s") if _is_ipv4(ip))
        vpc_cidrs = lines("vpc-ipv4-cidr-blocks", required=False) or lines("vpc-ipv4-cidr-block")
        return EniMetadata(
            mac=mac, eni_id=self.get(base + "interface-id").strip(),
            device_number=int(self.get(base + "device-number").strip()),
            ipv4s=ipv4s, subnet_id=self.get(base + "subnet-id").strip(),
            subnet_cidr=self.get(base + "subnet-ipv4-cidr-block").strip(),
            vpc_id=self.get(base + "vpc-id").strip(), vpc_cidrs=vpc_cidrs,
            security_group_ids=lines("security-group-ids", required=False),
            ipv4_prefixes=tuple(p for p in lines("ipv4-prefix", required=False)
                                if _is_ipv4(p.partition("/")[0])),
            ipv6_prefixes=tuple(p for p in lines("ipv6-prefix", required=False) if ":" in p)
            if ipv6 else (),
            subnet_ipv6_cidr=next((c for c in lines("subnet-ipv6-cidr-blocks", required=False)
                                   if ":" in c), "") if ipv6 else "")

    def interfaces(self, *, skip_incomplete: bool = True,
                   ipv6: bool = False) -> list[EniMetadata]:
        """Every ENI, by device number. ENIs whose keys still 404 are skipped (metadata lag; the
        ENI is either brand new, or detached and lingering) unless ``skip_incomplete`` is off."""
        out: list[EniMetadata] = []
        for mac in self.macs():
            try:
                out.append(self.interface(mac, ipv6=ipv6))
            except MetadataNotFound:
                if not skip_incomplete:
                    raise
        return sorted(out, key=lambda e: e.device_number)

    def wait_for_interface(self, mac: str, deadline: float,
                           ready: Callable[[EniMetadata], bool] = lambda e: True,
                           interval: float = 0.2) -> EniMetadata:
        """Poll until ``mac`` is listed with all its keys and ``ready`` holds, or the monotonic
        ``deadline`` passes (then MetadataUnavailable: the caller maps it to code 11)."""
        while True:
            try:
                if mac in self.macs():
                    eni = self.interface(mac)
                    if ready(eni):
                        return eni
            except MetadataNotFound:
                pass
            if self._clock() >= deadline:
                raise MetadataUnavailable(f"ENI {mac} did not appear complete in the instance "
                                          "metadata in time", "metadata lags EC2; retry")
            self._sleep(interval)


def _is_ipv4(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False
