"""The CNI wire models as plugin code uses them: the classes compiled from ``cni.types``'s
pydantic models (``cni.compiled``, from the generated ``cni.schemas``), so importing this
module costs pydantic_core and no pydantic. The type checker sees the pydantic models.

Imports ``cni.compiled`` and the generated ``cni.schemas``; never pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .types import DNS, Interface, IPConfig, NetConf, Result, Route
else:
    from .compiled import model
    from .schemas import MODELS

    DNS = model(MODELS, "cnivpc.cni.types:DNS")
    Interface = model(MODELS, "cnivpc.cni.types:Interface")
    IPConfig = model(MODELS, "cnivpc.cni.types:IPConfig")
    Route = model(MODELS, "cnivpc.cni.types:Route")
    Result = model(MODELS, "cnivpc.cni.types:Result")
    NetConf = model(MODELS, "cnivpc.cni.types:NetConf")

__all__ = ["DNS", "IPConfig", "Interface", "NetConf", "Result", "Route"]
