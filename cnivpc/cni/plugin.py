"""The shape of a plugin: what the dispatcher needs from one (``Plugin``) and what a handler
receives (``Request``). Every plugin module exposes ``PLUGIN = Plugin(...)`` with the same five
handlers: add, delete, check, status, gc.

Imports no pydantic at run time (only for type checking), so the registry stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import afterwards
from .attachments import ValidAttachments
from .env import CmdArgs

if TYPE_CHECKING:
    from .types import NetConf, Result

ConfT = TypeVar("ConfT", bound="NetConf")


@dataclass(frozen=True)
class Request(Generic[ConfT]):
    """One invocation: environment, parsed config, parsed prevResult (current shape), and for
    GC the valid attachments (``ValidAttachments``: a GC handler calls ``require()`` before it
    changes anything, which refuses a request without the list). ``raw_config`` is stdin as
    parsed JSON (on DEL without the parts the dispatcher set aside as unusable). ``after_answer``
    registers work to run once the answer is out (``cni.afterwards``: in a detached child, so
    the runtime does not wait for it); it can never change the answer or the exit code."""

    cmd: CmdArgs
    conf: ConfT
    prev_result: Result | None = None
    valid_attachments: ValidAttachments = field(default_factory=ValidAttachments.missing)
    raw_config: dict[str, Any] = field(default_factory=dict)
    deferred: list[afterwards.Task] = field(default_factory=afterwards.pending, repr=False,
                                            compare=False)

    def after_answer(self, task: afterwards.Task) -> None:
        """Run ``task`` after the answer has been written (only ADD uses it: the IPAM's
        refill of its pool)."""
        self.deferred.append(task)


@dataclass(frozen=True)
class Plugin(Generic[ConfT]):
    """A plugin's handlers. ``add`` returns the result to print; the others return nothing
    and report failure by raising a CniError."""

    name: str
    conf_model: type[ConfT]
    add: Callable[[Request[ConfT]], Result]
    delete: Callable[[Request[ConfT]], None]
    check: Callable[[Request[ConfT]], None]
    status: Callable[[Request[ConfT]], None]
    gc: Callable[[Request[ConfT]], None]
