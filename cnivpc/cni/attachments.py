"""GC's list of valid attachments, read once for every plugin: ``ValidAttachments``.

Why a type of its own: "the request carried no list" and "the request carried an empty list"
mean opposite things. An empty ``cni.dev/valid-attachments`` says no attachment of this
network is valid (collect everything of this network); a GC without the key is malformed, and
reading it as empty would release every IP and tear down every pod of the node. A bare
``list | None`` leaves each plugin to remember that distinction (one of ours once did not), so
the only way to the attachments here is ``require()``, which refuses a missing list with a
code-7 error before the plugin has changed anything.

The dispatcher builds the value from the config (both the spec's key and libcni's older
``cni.dev/attachments`` are accepted: libcni sends both); the fused plugin and delegation put
it back into sub-configs with ``to_config()``.

Stdlib only; imports nothing of cnivpc but ``cni.errors``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .errors import InvalidConfig

KEY = "cni.dev/valid-attachments"
# The key of the spec's first 1.1 text (a typo libcni still sends alongside the right one).
LEGACY_KEY = "cni.dev/attachments"
KEYS = (KEY, LEGACY_KEY)

Pair = tuple[str, str]  # (container ID, ifname)


# A NamedTuple, not a dataclass: the plugin path never imports dataclasses (with inspect and
# ast it costs ~6 ms per exec, and each class ~0.4 ms to create; a NamedTuple 0.06 ms).
class ValidAttachments(NamedTuple):
    """The attachments a GC request says are still in use, or the fact that it named none.

    ``given`` False: no list in the request (``require()`` raises). Otherwise ``require()``
    is the set of (container ID, ifname) pairs, possibly empty."""

    pairs_given: frozenset[Pair] | None = None

    @classmethod
    def missing(cls) -> ValidAttachments:
        return cls(None)

    @classmethod
    def of(cls, pairs: Any) -> ValidAttachments:
        """A given list (an iterable of (container ID, ifname))."""
        return cls(frozenset((str(c), str(i)) for c, i in pairs))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ValidAttachments:
        """Read the list from a GC config; InvalidConfig (7) when it is malformed."""
        for key in KEYS:
            if key not in config:
                continue
            raw = config[key]
            if not isinstance(raw, list):
                raise InvalidConfig(f"{key} must be a list", f"got {type(raw).__name__}")
            pairs: set[Pair] = set()
            for n, item in enumerate(raw):
                cid = item.get("containerID") if isinstance(item, dict) else None
                ifname = item.get("ifname") if isinstance(item, dict) else None
                if not isinstance(cid, str) or not isinstance(ifname, str) or not cid \
                        or not ifname:
                    raise InvalidConfig(f"invalid {key}",
                                        f"entry {n} needs string containerID and ifname: "
                                        f"{item!r}")
                pairs.add((cid, ifname))
            return cls(frozenset(pairs))
        return cls.missing()

    @property
    def given(self) -> bool:
        return self.pairs_given is not None

    def require(self) -> frozenset[Pair]:
        """The valid (container ID, ifname) pairs; refuses (code 7) when the request named
        none, so a GC without the list removes nothing."""
        if self.pairs_given is None:
            raise InvalidConfig(f"GC needs {KEY}",
                                "the request has no list of valid attachments (neither "
                                f"{KEY} nor {LEGACY_KEY}): refusing to remove anything")
        return self.pairs_given

    def container_ids(self) -> frozenset[str]:
        return frozenset(cid for cid, _ in self.require())

    def to_config(self) -> dict[str, Any]:
        """The keys to put into a config handed on (a fused part, a delegated plugin): both,
        as libcni sends them; nothing when no list was given."""
        if self.pairs_given is None:
            return {}
        items = [{"containerID": c, "ifname": i} for c, i in sorted(self.pairs_given)]
        return {KEY: items, LEGACY_KEY: [dict(item) for item in items]}
