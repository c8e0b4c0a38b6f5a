"""Typed errors of the host-networking layer, each a CNI error so a plugin can let it reach
the dispatcher unchanged, and each narrow enough for callers to treat some as success (a DEL
ignores ``LinkNotFound`` and ``NetnsNotFound``).

    CniError (cnivpc.cni.errors)
    ├── UnknownContainer (3)
    │   └── NetnsNotFound         the netns path does not exist (the sandbox is gone)
    ├── InvalidEnvironment (4)
    │   └── NotANetns             the path exists but is not a network namespace
    └── InternalError (999)
        └── NetError              any other kernel/tool failure; ``errno`` when known
            ├── NetlinkFailure    a netlink request failed
            │   ├── LinkNotFound  no link of that name/index
            │   ├── LinkExists    a link of that name is already there
            │   └── RouteExists   the route (or rule) is already there
            ├── SysctlError       a /proc/sys read or write failed
            ├── ArpError          a gratuitous ARP could not be sent
            └── IptablesError     iptables failed (its stderr is in ``details``)
                └── IptablesNotFound  the binary is missing

Imports only ``cnivpc.cni.errors``.
"""

from __future__ import annotations

from ..cni.errors import InternalError, InvalidEnvironment, UnknownContainer


class NetnsNotFound(UnknownContainer):
    """The network namespace path does not exist: the sandbox is gone."""


class NotANetns(InvalidEnvironment):
    """The path exists but is not a network namespace (not nsfs/procfs, or another ns type)."""


class NetError(InternalError):
    """A host-networking operation failed; ``errno`` is set when the kernel gave one."""

    def __init__(self, msg: str, details: str = "", *, errno: int | None = None) -> None:
        super().__init__(msg, details)
        self.errno = errno


class NetnsStranded(NetError):
    """The calling thread could not return to its own network namespace (``netns.run_in``):
    nothing more may run in this process as if it were in the host's."""


class NetlinkFailure(NetError):
    """A netlink request failed."""


class LinkNotFound(NetlinkFailure):
    """No link with that name or index."""


class LinkExists(NetlinkFailure):
    """A link with that name already exists."""


class RouteExists(NetlinkFailure):
    """The route or rule already exists."""


class SysctlError(NetError):
    """Reading or writing a /proc/sys key failed."""


class ArpError(NetError):
    """A gratuitous ARP could not be sent."""


class IptablesError(NetError):
    """An iptables command failed; ``details`` holds the command and its stderr."""

    def __init__(self, msg: str, details: str = "", *, returncode: int | None = None) -> None:
        super().__init__(msg, details)
        self.returncode = returncode


class IptablesNotFound(IptablesError):
    """The iptables (or ip6tables) binary is not installed."""
