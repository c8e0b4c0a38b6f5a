"""CNI error codes and the typed exceptions every plugin raises.

A leaf module: it imports nothing of ours (and nothing heavy), so any layer may raise these.
The dispatcher (``skel``) is the one place that turns them into CNI error JSON.

    CniError                      (code carried by the instance)
    ├── IncompatibleVersion       1
    ├── UnsupportedField          2
    ├── UnknownContainer          3
    ├── InvalidEnvironment        4
    ├── IOFailure                 5
    ├── DecodingFailure           6
    ├── InvalidConfig             7
    ├── TryAgainLater             11
    ├── PluginNotAvailable        50  (STATUS)
    ├── LimitedConnectivity       51  (STATUS)
    └── InternalError             999 (anything unexpected; the cause goes in details)
"""

from __future__ import annotations

from enum import IntEnum

# Not imported from typing: typing (with re and its friends) costs ~8 ms per exec and the
# VERSION path needs none of it; type checkers treat any TYPE_CHECKING name as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class ErrorCode(IntEnum):
    """Well-known CNI error codes (spec 1.1 plus the reference library's 999)."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENVIRONMENT = 4
    IO_FAILURE = 5
    DECODING_FAILURE = 6
    INVALID_NETWORK_CONFIG = 7
    TRY_AGAIN_LATER = 11
    PLUGIN_NOT_AVAILABLE = 50
    LIMITED_CONNECTIVITY = 51
    INTERNAL = 999


class CniError(Exception):
    """An error the plugin reports to the runtime as ``{code, msg, details}``."""

    code: int = ErrorCode.INTERNAL

    def __init__(self, msg: str, details: str = "", *, code: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details
        if code is not None:
            self.code = code

    def to_json(self, cni_version: str) -> dict[str, Any]:
        """The error object; ``details`` is left out when empty, as the reference library does."""
        out: dict[str, Any] = {"cniVersion": cni_version, "code": int(self.code), "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg


class IncompatibleVersion(CniError):
    """The config's cniVersion is not one this plugin (or this command) supports."""

    code = ErrorCode.INCOMPATIBLE_VERSION


class UnsupportedField(CniError):
    """A config field is understood but its value is not supported."""

    code = ErrorCode.UNSUPPORTED_FIELD


class UnknownContainer(CniError):
    """The container is unknown or gone."""

    code = ErrorCode.UNKNOWN_CONTAINER


class InvalidEnvironment(CniError):
    """Required CNI_* environment variables are missing or malformed."""

    code = ErrorCode.INVALID_ENVIRONMENT


class IOFailure(CniError):
    """Reading stdin (or another required input) failed."""

    code = ErrorCode.IO_FAILURE


class DecodingFailure(CniError):
    """The input is not valid JSON (or not the expected JSON shape)."""

    code = ErrorCode.DECODING_FAILURE


class InvalidConfig(CniError):
    """The network configuration is invalid; the message names the key."""

    code = ErrorCode.INVALID_NETWORK_CONFIG


class TryAgainLater(CniError):
    """A transient condition (lock busy, API throttled): the runtime should retry."""

    code = ErrorCode.TRY_AGAIN_LATER


class PluginNotAvailable(CniError):
    """STATUS: the plugin cannot serve ADD requests now."""

    code = ErrorCode.PLUGIN_NOT_AVAILABLE


class LimitedConnectivity(CniError):
    """STATUS: cannot serve ADD, and existing containers may have limited connectivity."""

    code = ErrorCode.LIMITED_CONNECTIVITY


class InternalError(CniError):
    """Something unexpected: a bug or an unmapped failure. The cause goes in ``details``."""

    code = ErrorCode.INTERNAL
