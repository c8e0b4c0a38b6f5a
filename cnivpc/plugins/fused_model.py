"""The fused plugin's configuration model (``FusedConf``), declared in pydantic: the source of
truth of its keys, for the tests and the type checker. The plugin process runs the class
compiled from it (``plugins.fused``, through the generated ``plugins.schemas``:
``./build/dev schemas`` after any change here).

Imports pydantic; never imported by a plugin process.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..cni.types import NetConf


class FusedConf(NetConf):
    # ``ipam`` is NetConf's (a dict); the two other sections are ours (each validated by its
    # plugin's own model).
    ipvlan: dict[str, Any] = Field(default_factory=dict)
    ptp: dict[str, Any] = Field(default_factory=dict)
