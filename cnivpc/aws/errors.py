"""Errors of the AWS layer, as CNI errors so the dispatcher maps them without translation.

    CniError
    ├── TryAgainLater
    │   ├── MetadataUnavailable   IMDS unreachable, token refused, or data still propagating
    │   └── Ec2Throttled          RequestLimitExceeded / 5xx after our retries and deadline
    └── AwsError                  a definite EC2/IMDS failure (code 999-range meaning "internal")
        └── MetadataNotFound      a metadata key that does not exist (404 past the lag)

Imports nothing of cnivpc but ``cni.errors``.
"""

from __future__ import annotations

from ..cni.errors import CniError, TryAgainLater


class AwsError(CniError):
    """A definite failure talking to AWS; ``details`` carries the AWS code and message."""


class MetadataUnavailable(TryAgainLater):
    """The instance metadata service cannot answer now."""


class MetadataNotFound(AwsError):
    """A metadata path answered 404 (absent, or not yet propagated)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"instance metadata has no {path}", "404 from IMDS")
        self.path = path


class Ec2Throttled(TryAgainLater):
    """EC2 kept answering RequestLimitExceeded (or 5xx) until our deadline."""
