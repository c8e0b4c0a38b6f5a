"""The single import site of pyroute2, and the netlink error translation.

Why not ``import pyroute2``: the package ``__init__`` eagerly imports every pyroute2 API
(IPDB, NDB, conntrack, nftables, wireguard...), ~70 ms more per plugin exec than the
submodules we use, and *any* ``import pyroute2.x`` runs that ``__init__`` first. So we register
the package module without executing its ``__init__`` and import only ``pyroute2.iproute.linux``
and ``pyroute2.netlink.exceptions``. The placeholder package keeps a PEP 562 ``__getattr__``
that runs the real ``__init__`` on first attribute access, so code in the same process that
later does ``from pyroute2 import IPRoute`` (tests, the lab) still gets the full package.

Imports nothing of cnivpc but ``net.errors``.
"""

from __future__ import annotations

import errno as errno_mod
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from functools import cache
from types import ModuleType
from typing import Any, TypeVar

from .errors import LinkNotFound, NetlinkFailure, RouteExists

T = TypeVar("T")
# pyroute2 ("Linux netlink") dumps restarted because the table changed under them.
DUMP_ATTEMPTS = 5


def _register_bare_package() -> None:
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None:  # pragma: no cover - a broken install
        raise ImportError("pyroute2 is not installed")
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def complete(name: str) -> Any:
        if name.startswith("__") or importlib.util.find_spec(f"pyroute2.{name}") is not None:
            # A submodule (``from pyroute2 import config`` inside pyroute2): AttributeError
            # makes the import system load just that submodule.
            raise AttributeError(name)
        # Any other attribute (``from pyroute2 import IPRoute`` elsewhere in the process):
        # run the real __init__ now, once.
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return getattr(package, name)

    package.__dict__["__getattr__"] = complete
    sys.modules["pyroute2"] = package


@cache
def modules() -> tuple[ModuleType, ModuleType]:
    """(pyroute2.iproute.linux, pyroute2.netlink.exceptions), imported on first use."""
    _register_bare_package()
    linux = importlib.import_module("pyroute2.iproute.linux")
    exceptions = importlib.import_module("pyroute2.netlink.exceptions")
    return linux, exceptions


def iproute(fileno: int | None = None) -> Any:
    """An ``IPRoute`` on the current netns, or on an already-open netlink socket ``fileno``.
    ``groups=0``: we never read multicast events, so do not subscribe to them."""
    linux, _ = modules()
    if fileno is None:
        return linux.IPRoute(groups=0)
    return linux.IPRoute(fileno=fileno, groups=0)


def netlink_error_type() -> type[Exception]:
    cls: type[Exception] = modules()[1].NetlinkError
    return cls


def call(what: str, fn: Callable[..., T], *args: Any,
         exists: type[NetlinkFailure] = RouteExists, **kwargs: Any) -> T:
    """Run one netlink request; a NetlinkError becomes the matching typed error (EEXIST
    becomes ``exists``, ENODEV ``LinkNotFound``)."""
    try:
        return fn(*args, **kwargs)
    except netlink_error_type() as exc:
        raise translate(what, exc, exists) from exc


def dump(what: str, fn: Callable[..., Iterable[Any]], *args: Any, **kwargs: Any) -> list[Any]:
    """Run a netlink dump to completion, restarting it when the kernel reports that the
    table changed during the dump (NLM_F_DUMP_INTR): only ``IPRoute.poll`` retries that."""
    interrupted: type[Exception] = modules()[1].NetlinkDumpInterrupted
    for _ in range(DUMP_ATTEMPTS):
        try:
            return list(call(what, fn, *args, **kwargs))
        except interrupted:
            continue
    raise NetlinkFailure(f"{what}: dump interrupted {DUMP_ATTEMPTS} times in a row",
                         errno=errno_mod.EINTR)


def translate(what: str, exc: Exception,
              exists: type[NetlinkFailure] = RouteExists) -> NetlinkFailure:
    code = getattr(exc, "code", None)
    reason = os.strerror(code) if isinstance(code, int) and code > 0 else str(exc)
    if code == errno_mod.ENODEV:
        return LinkNotFound(f"{what}: no such device", reason, errno=code)
    if code == errno_mod.EEXIST:
        return exists(f"{what}: already exists", reason, errno=code)
    return NetlinkFailure(f"{what} failed", reason, errno=code)
