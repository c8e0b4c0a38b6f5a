"""CNI spec versions: which we speak, how they compare, and which command needs which.

Pure stdlib and cheap to import: the VERSION command is answered from here alone.
"""

from __future__ import annotations

from .errors import IncompatibleVersion

# 0.1.0/0.2.0 are advertised because ``convert`` implements their ``ip4``/``ip6`` result shape.
SUPPORTED_VERSIONS: tuple[str, ...] = (
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
)
CURRENT_VERSION = "1.1.0"
# A config without cniVersion is a 0.1.0 config (spec and reference library agree).
DEFAULT_CONFIG_VERSION = "0.1.0"

# The first version that has each command.
COMMAND_SINCE: dict[str, str] = {
    "ADD": "0.1.0",
    "DEL": "0.1.0",
    "VERSION": "0.1.0",
    "CHECK": "0.4.0",
    "STATUS": "1.1.0",
    "GC": "1.1.0",
}


def parse(version: str) -> tuple[int, int, int]:
    """'1.0.0' -> (1, 0, 0). Raises ValueError on anything that is not three dotted integers."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"invalid version {version!r}")
    major, minor, patch = (int(p) for p in parts)
    return major, minor, patch


def at_least(version: str, floor: str) -> bool:
    """True when ``version`` >= ``floor``."""
    return parse(version) >= parse(floor)


def require_supported(version: str, command: str) -> None:
    """Raise IncompatibleVersion unless ``version`` is supported and has ``command``."""
    if version not in SUPPORTED_VERSIONS:
        raise IncompatibleVersion(
            "incompatible CNI versions",
            f'config is "{version[:40]}", plugin supports {list(SUPPORTED_VERSIONS)}',
        )
    since = COMMAND_SINCE.get(command, "0.1.0")
    if not at_least(version, since):
        raise IncompatibleVersion(
            f"config version does not allow {command}",
            f'config is "{version}", {command} needs "{since}" or later',
        )


def has_check(version: str) -> bool:
    return at_least(version, COMMAND_SINCE["CHECK"])


def has_status_and_gc(version: str) -> bool:
    return at_least(version, COMMAND_SINCE["GC"])


def has_chaining(version: str) -> bool:
    """prevResult (chaining) exists from 0.3.0 on."""
    return at_least(version, "0.3.0")
