"""A stand-in for a plugin that is registered but not implemented in this build: every
command answers code 50 (plugin not available) naming the plugin, instead of crashing."""

from __future__ import annotations

from typing import Any, NoReturn

from ..cni.errors import PluginNotAvailable
from ..cni.plugin import Plugin, Request
from ..cni.types import NetConf


def unbuilt_plugin(program: str) -> Plugin[NetConf]:
    def refuse(_req: Request[NetConf]) -> NoReturn:
        raise PluginNotAvailable(f"{program} is not implemented in this build of cnivpc",
                                 "see the README for the plugins this release provides")

    handlers: dict[str, Any] = dict.fromkeys(("add", "delete", "check", "status", "gc"), refuse)
    return Plugin(name=program, conf_model=NetConf, **handlers)
