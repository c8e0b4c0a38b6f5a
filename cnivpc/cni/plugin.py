"""The shape of a plugin: what the dispatcher needs from one (``Plugin``) and what a handler
receives (``Request``). Every plugin module exposes ``PLUGIN = Plugin(...)`` with the same five
handlers: add, delete, check, status, gc.

Imports no pydantic at run time (only for type checking), so the registry stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import afterwards
from .attachments import ValidAttachments
from .env import CmdArgs

if TYPE_CHECKING:
    from .types import NetConf, Result

ConfT = TypeVar("ConfT", bound="NetConf")


class Request(Generic[ConfT]):
    """One invocation: environment, parsed config, parsed prevResult (current shape), and for
    GC the valid attachments (``ValidAttachments``: a GC handler calls ``require()`` before it
    changes anything, which refuses a request without the list). ``raw_config`` is stdin as
    parsed JSON (on DEL without the parts the dispatcher set aside as unusable). ``after_answer``
    registers work to run once the answer is out (``cni.afterwards``: in a detached child, so
    the runtime does not wait for it); it can never change the answer or the exit code.

    Immutable (``replace`` makes a changed copy, sharing the task list). A plain class, as
    ``Plugin``: the plugin path never imports dataclasses (with inspect and ast ~6 ms per
    exec, ~0.4 ms per class created)."""

    __slots__ = ("cmd", "conf", "deferred", "prev_result", "raw_config", "valid_attachments")
    cmd: CmdArgs
    conf: ConfT
    prev_result: Result | None
    valid_attachments: ValidAttachments
    raw_config: dict[str, Any]
    deferred: list[afterwards.Task]

    def __init__(self, cmd: CmdArgs, conf: ConfT, prev_result: Result | None = None,
                 valid_attachments: ValidAttachments | None = None,
                 raw_config: dict[str, Any] | None = None,
                 deferred: list[afterwards.Task] | None = None) -> None:
        values = {"cmd": cmd, "conf": conf, "prev_result": prev_result,
                  "valid_attachments": (ValidAttachments.missing() if valid_attachments is None
                                        else valid_attachments),
                  "raw_config": {} if raw_config is None else raw_config,
                  "deferred": afterwards.pending() if deferred is None else deferred}
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Request is immutable: use replace({name}=...)")

    def replace(self, **changes: Any) -> Request[ConfT]:
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return Request(**values)

    def __repr__(self) -> str:
        return (f"Request(cmd={self.cmd!r}, conf={self.conf!r}, "
                f"prev_result={self.prev_result!r})")

    def after_answer(self, task: afterwards.Task) -> None:
        """Run ``task`` after the answer has been written (only ADD uses it: the IPAM's
        refill of its pool)."""
        self.deferred.append(task)


class Plugin(Generic[ConfT]):
    """A plugin's handlers. ``add`` returns the result to print; the others return nothing
    and report failure by raising a CniError."""

    __slots__ = ("add", "check", "conf_model", "delete", "gc", "name", "status")

    def __init__(self, name: str, conf_model: type[ConfT],
                 add: Callable[[Request[ConfT]], Result],
                 delete: Callable[[Request[ConfT]], None],
                 check: Callable[[Request[ConfT]], None],
                 status: Callable[[Request[ConfT]], None],
                 gc: Callable[[Request[ConfT]], None]) -> None:
        self.name = name
        self.conf_model = conf_model
        self.add = add
        self.delete = delete
        self.check = check
        self.status = status
        self.gc = gc

    def __repr__(self) -> str:
        return f"Plugin({self.name!r})"
