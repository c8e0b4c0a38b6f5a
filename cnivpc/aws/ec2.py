"""The EC2 client: botocore, created lazily (only on paths that call EC2), with explicit
timeouts, our own retry loop bounded by the plugin's deadline, and a client-side token bucket
per EC2 bucket that all plugin processes on the node share (so a burst of pods cannot stampede
the account's buckets).

botocore's own retries are off (``total_max_attempts=1``): its retry sleeps know nothing of our
deadline, and a CNI ADD must answer before kubelet's 2-minute runtime timeout. On
``RequestLimitExceeded``/5xx/connection errors we back off with full jitter, capped, and give up
with ``Ec2Throttled`` (code 11) when the deadline would pass.

Endpoint, region and credentials come from the standard AWS configuration (botocore honours
``AWS_ENDPOINT_URL_EC2`` and profiles); the region is passed from the identity document.

The instance role's credentials are fetched by our own IMDSv2 client (``metadata.py``), not by
botocore's: botocore's fetcher falls back to IMDSv1 when the token PUT fails, and sends its
requests through ``HTTP(S)_PROXY`` unless ``NO_PROXY`` names the metadata address (a proxy
inherited from the container runtime's environment then sees, or breaks, the credential fetch).
Ours speaks IMDSv2 only, over a direct connection. For the same reason an EC2 endpoint on the
metadata address (the lab's) is never reached through a proxy.

The only module besides ``aws/`` siblings that may import botocore.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from .errors import AwsError, Ec2Throttled

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .metadata import Metadata

# EC2's token buckets (per account and region) for the calls we make: (capacity, refill/s).
# Our client-side buckets mirror them so that one node never spends more than its share.
BUCKETS: dict[str, tuple[float, float]] = {
    "AssignPrivateIpAddresses": (100, 5),
    "UnassignPrivateIpAddresses": (100, 5),
    "AssignIpv6Addresses": (100, 5),
    "UnassignIpv6Addresses": (100, 5),
    "CreateNetworkInterface": (100, 5),
    "DeleteNetworkInterface": (100, 5),
    "ModifyNetworkInterfaceAttribute": (100, 5),
    "CreateTags": (100, 10),
    "DeleteTags": (100, 10),
    "mutating": (50, 5),        # Attach/Detach share the generic mutating bucket
    "non-mutating": (100, 20),  # filtered or paginated Describe calls
}
_OWN_BUCKET = {k for k in BUCKETS if k not in ("mutating", "non-mutating")}
RETRYABLE_CODES = frozenset({
    "RequestLimitExceeded", "Throttling", "ThrottlingException", "EC2ThrottledException",
    "InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable",
})
MUTATING_PREFIXES = ("Assign", "Unassign", "Attach", "Detach", "Create", "Delete", "Modify")

# (bucket name, capacity, refill/s) -> seconds to wait before a token is available (0 = taken)
RateLimiter = Callable[[str, float, float], float]


def bucket_for(operation: str) -> str:
    if operation in _OWN_BUCKET:
        return operation
    return "mutating" if operation.startswith(MUTATING_PREFIXES) else "non-mutating"


def is_mutating(operation: str) -> bool:
    return operation.startswith(MUTATING_PREFIXES)


class Ec2Error(AwsError):
    """EC2 answered with an error code we do not retry (e.g. PrivateIpAddressLimitExceeded).
    A CNI error (code 999) like every AWS failure; ``aws_code`` is EC2's own code (``code``
    is the CNI code, as on every CniError)."""

    def __init__(self, aws_code: str, message: str, operation: str) -> None:
        super().__init__(f"EC2 {operation} failed: {aws_code}", message)
        self.aws_code = aws_code
        self.message = message
        self.operation = operation

    def as_cni(self) -> AwsError:
        """A fresh copy to raise (``from`` this one): still an Ec2Error, so the CLI's boundary
        can name EC2's code and its remedy."""
        return Ec2Error(self.aws_code, self.message, self.operation)


class Ec2:
    """One EC2 session for one plugin process. ``calls`` counts API calls by operation."""

    def __init__(self, region: str, *, deadline: float,
                 limiter: RateLimiter | None = None,
                 connect_timeout: float = 2.0, read_timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 backoff_base: float = 0.2, backoff_cap: float = 5.0,
                 metadata: Metadata | None = None) -> None:
        self.region = region
        self._metadata = metadata
        self.deadline = deadline
        self.calls: dict[str, int] = {}
        self._limiter = limiter
        self._timeouts = (connect_timeout, read_timeout)
        self._clock = clock
        self._sleep = sleep
        self._backoff = (backoff_base, backoff_cap)
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            # Imported here, never at module level: ipvlan/ptp and the warm IPAM path must not
            # pay botocore's import (hundreds of ms).
            import botocore.config
            import botocore.session

            from .metadata import Metadata

            metadata = self._metadata or Metadata()
            session = botocore.session.get_session()
            use_imdsv2_role_credentials(session, metadata)
            config = botocore.config.Config(
                connect_timeout=self._timeouts[0], read_timeout=self._timeouts[1],
                retries={"total_max_attempts": 1})
            client = session.create_client("ec2", region_name=self.region, config=config)
            if _host(client.meta.endpoint_url) in (metadata.host, *LINK_LOCAL_METADATA):
                # An endpoint on the metadata address: never through a proxy (see above).
                client = session.create_client("ec2", region_name=self.region,
                                               config=config.merge(
                                                   botocore.config.Config(proxies={})))
            self._client = client
        return self._client

    def _wait_for_token(self, operation: str) -> None:
        if self._limiter is None:
            return
        name = bucket_for(operation)
        capacity, refill = BUCKETS[name]
        while True:
            wait = self._limiter(name, capacity, refill)
            if wait <= 0:
                return
            if self._clock() + wait > self.deadline:
                raise Ec2Throttled(f"node-local EC2 rate limit for {name} exhausted",
                                   "too many EC2 calls from this node; retry later")
            self._sleep(wait)

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """Call an EC2 operation (CamelCase name) with retries bounded by the deadline."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
        )

        method = getattr(self.client, _snake(operation))
        attempt = 0
        while True:
            self._wait_for_token(operation)
            self.calls[operation] = self.calls.get(operation, 0) + 1
            try:
                response: dict[str, Any] = method(**params)
                return response
            except NoCredentialsError as exc:
                raise AwsError(f"EC2 {operation}: no AWS credentials",
                               "no instance role answered in the instance metadata and no "
                               "AWS_* credentials or profile are set") from exc
            except ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code", "Unknown"))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                if code not in RETRYABLE_CODES and status < 500:
                    raise Ec2Error(code, str(error.get("Message", "")), operation) from exc
                reason = f"{code} (HTTP {status})"
            except (ConnectionError, HTTPClientError) as exc:
                reason = repr(exc)
            except BotoCoreError as exc:  # configuration problems: retrying cannot help
                raise AwsError(f"EC2 {operation} could not be sent", str(exc)) from exc
            attempt += 1
            base, cap = self._backoff
            import random  # only when a call is retried: not on the warm IPAM path

            delay = random.uniform(0, min(cap, base * 2 ** attempt))  # full jitter
            if self._clock() + delay >= self.deadline:
                raise Ec2Throttled(f"EC2 {operation} did not succeed before the deadline",
                                   f"last error: {reason}; {attempt} attempts")
            self._sleep(delay)

    def paginate(self, operation: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Yield items of ``key`` across pages (NextToken), each page a bounded call."""
        token: str | None = None
        while True:
            page = self.call(operation, **params, **({"NextToken": token} if token else {}))
            yield from page.get(key, [])
            token = page.get("NextToken")
            if not token:
                return

    @property
    def mutating_calls(self) -> int:
        return sum(n for op, n in self.calls.items() if is_mutating(op))


# The instance metadata's addresses (IPv4 and IPv6) besides a configured endpoint's host.
LINK_LOCAL_METADATA = ("169.254.169.254", "fd00:ec2::254", "[fd00:ec2::254]")


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or ""


def use_imdsv2_role_credentials(session: Any, metadata: Metadata) -> None:
    """Put our IMDSv2-only role-credential provider in place of botocore's ``iam-role`` in
    ``session``'s credential chain (same position: after environment, profiles and container
    credentials). Refreshed by botocore before they expire, through ``metadata`` again."""
    from botocore.credentials import CredentialProvider, RefreshableCredentials

    def fetch() -> dict[str, str]:
        creds = metadata.role_credentials()
        if creds is None:
            raise AwsError("the instance role's credentials are gone from the instance metadata")
        return creds

    class ImdsV2RoleProvider(CredentialProvider):  # type: ignore[misc]
        METHOD = "cnivpc-imdsv2-role"
        CANONICAL_NAME = "Ec2InstanceMetadata"

        def load(self) -> Any:
            creds = metadata.role_credentials()
            if creds is None:
                return None  # no role: the chain goes on, and ends in NoCredentialsError
            return RefreshableCredentials.create_from_metadata(
                creds, refresh_using=fetch, method=self.METHOD)

    resolver = session.get_component("credential_provider")
    resolver.insert_before("iam-role", ImdsV2RoleProvider())
    resolver.remove("iam-role")


def _snake(operation: str) -> str:
    out = []
    for i, ch in enumerate(operation):
        if ch.isupper() and i and not operation[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
