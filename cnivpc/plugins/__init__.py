"""The plugin registry: program names to plugin modules, as strings, so that dispatch imports
only the plugin that runs (and VERSION imports none).

Every plugin module exposes ``PLUGIN`` (a ``cni.plugin.Plugin``) with add/delete/check/status/gc.
"""

from __future__ import annotations

import importlib

# Not imported from typing: typing (with re and its friends) costs ~8 ms per exec and the
# VERSION path needs none of it; type checkers treat any TYPE_CHECKING name as true.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

    from ..cni.plugin import Plugin

# program name (the argv[0] basename, the conflist "type") -> module
PLUGINS: dict[str, str] = {
    "cnivpc-ipam": "cnivpc.plugins.ipam.plugin",
    "cnivpc-ipvlan": "cnivpc.plugins.ipvlan",
    "cnivpc-ptp": "cnivpc.plugins.ptp",
}

# The fused mode: one conflist entry of type "cnivpc" runs the three plugins in one process.
# Not in PLUGINS: "cnivpc" is also the CLI's name; __main__ picks the plugin only when it is
# exec'd bare with CNI_COMMAND set, as a runtime does.
FUSED = "cnivpc"
FUSED_MODULE = "cnivpc.plugins.fused"

# Each plugin's config model, for validating a conflist without running the plugin.
CONFIG_MODELS: dict[str, str] = {
    "cnivpc-ipam": "cnivpc.plugins.ipam.config:IpamConf",
    "cnivpc-ipvlan": "cnivpc.plugins.ipvlan:IpvlanConf",
    "cnivpc-ptp": "cnivpc.plugins.ptp.config:PtpConf",
    FUSED: "cnivpc.plugins.fused:FusedConf",
}


def config_model(program: str) -> Any:
    module, _, name = CONFIG_MODELS[program].partition(":")
    return getattr(importlib.import_module(module), name)


def load(program: str) -> Plugin[Any]:
    module = importlib.import_module(FUSED_MODULE if program == FUSED else PLUGINS[program])
    plugin: Plugin[Any] = module.PLUGIN
    return plugin
