"""The single import site of pyroute2, and the netlink error translation.

We use pyroute2 for its message codecs only (``ifinfmsg``, ``ifaddrmsg``, ``rtmsg``,
``fibmsg``) and its ``NetlinkError``; the requests themselves go through our own small client
(``net.rtnl``). Its ``IPRoute`` is not used: ``pyroute2.iproute.linux`` pulls in asyncio and
~240 modules, about three times the cost of the codecs, on every plugin exec.

Why not ``import pyroute2``: the package ``__init__`` eagerly imports every pyroute2 API
(IPDB, NDB, conntrack, nftables, wireguard...), ~70 ms more per plugin exec than the
submodules we use, and *any* ``import pyroute2.x`` runs that ``__init__`` first. So we register
the package module without executing its ``__init__`` and import only the submodules below,
each on first use. The placeholder package keeps a PEP 562 ``__getattr__`` that runs the real
``__init__`` on first attribute access, so code in the same process that later does
``from pyroute2 import IPRoute`` (tests, the lab) still gets the full package.

Imports nothing of cnivpc but ``net.errors``.
"""

from __future__ import annotations

import errno as errno_mod
import importlib
import importlib.util
import os
import socket
import sys
from collections.abc import Callable, Iterable
from functools import cache
from types import ModuleType
from typing import Any, TypeVar

from .errors import LinkNotFound, NetlinkFailure, RouteExists

T = TypeVar("T")
# Attempts at a dump that the kernel keeps marking inconsistent (the table changed under it).
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
    _register_light_config()


# What the message modules we load read of ``pyroute2.config`` (ifinfmsg: AF_BRIDGE and its
# data-plugin lists), with the real module's values.
_CONFIG_USED = {"AF_BRIDGE": 7, "data_plugins_pkgs": [], "data_plugins_path": []}


def _register_light_config() -> None:
    """``pyroute2.config`` without running it until something asks for more than
    ``_CONFIG_USED``: the real module imports multiprocessing (pickle and its friends) and
    platform, and calls ``platform.architecture`` at import: ~5 ms of CPU per exec for
    settings of pyroute2's own sockets and IPRoute, which we never use. Any other attribute
    runs the real module in place (``IPRoute`` in the tests and the lab gets it all)."""
    if "pyroute2.config" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2.config")
    if spec is None or spec.loader is None:  # pragma: no cover - a broken install
        return
    config = importlib.util.module_from_spec(spec)
    loader = spec.loader
    config.__dict__.update(_CONFIG_USED, AF_BRIDGE=getattr(socket, "AF_BRIDGE", 7))
    config.data_plugins_pkgs = []  # type: ignore[attr-defined]  # fresh lists
    config.data_plugins_path = []  # type: ignore[attr-defined]

    def complete(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        del config.__dict__["__getattr__"]
        loader.exec_module(config)
        return getattr(config, name)

    config.__dict__["__getattr__"] = complete
    sys.modules["pyroute2.config"] = config


# The message classes ``rtnl`` encodes and decodes with, by name -> their module.
_MESSAGE_MODULES = {
    "ifinfmsg": "pyroute2.netlink.rtnl.ifinfmsg",  # links
    "ifaddrmsg": "pyroute2.netlink.rtnl.ifaddrmsg",  # addresses
    "rtmsg": "pyroute2.netlink.rtnl.rtmsg",  # routes
    "fibmsg": "pyroute2.netlink.rtnl.fibmsg",  # policy-routing rules
}


@cache
def exceptions() -> ModuleType:
    """pyroute2.netlink.exceptions (NetlinkError, NetlinkDumpInterrupted), on first use."""
    _register_bare_package()
    return importlib.import_module("pyroute2.netlink.exceptions")


@cache
def message_class(name: str) -> Any:
    """The pyroute2 message class ``name`` (a key of ``_MESSAGE_MODULES``), on first use."""
    _register_bare_package()
    return getattr(importlib.import_module(_MESSAGE_MODULES[name]), name)


def netlink_error_type() -> type[Exception]:
    cls: type[Exception] = exceptions().NetlinkError
    return cls


def call(what: str, fn: Callable[..., T], *args: Any,
         exists: type[NetlinkFailure] = RouteExists, **kwargs: Any) -> T:
    """Run one netlink request; a NetlinkError becomes the matching typed error (EEXIST
    becomes ``exists``, ENODEV ``LinkNotFound``). An interrupted dump is let through
    untranslated for ``dump`` to retry."""
    errors = exceptions()
    try:
        return fn(*args, **kwargs)
    except errors.NetlinkDumpInterrupted:
        raise
    except errors.NetlinkError as exc:
        raise translate(what, exc, exists) from exc


def dump(what: str, fn: Callable[..., Iterable[Any]], *args: Any, **kwargs: Any) -> list[Any]:
    """Run a netlink dump to completion, restarting it when the kernel reports that the
    table changed during the dump (NLM_F_DUMP_INTR, raised by ``rtnl`` as
    NetlinkDumpInterrupted once the dump was read to its end)."""
    interrupted: type[Exception] = exceptions().NetlinkDumpInterrupted
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
    # rtnl passes the kernel's extended-ACK text (when there is one) as the second argument.
    extack = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else ""
    if extack and extack != reason:
        reason = f"{reason} ({extack})"
    if code == errno_mod.ENODEV:
        return LinkNotFound(f"{what}: no such device", reason, errno=code)
    if code == errno_mod.EEXIST:
        return exists(f"{what}: already exists", reason, errno=code)
    return NetlinkFailure(f"{what} failed", reason, errno=code)
