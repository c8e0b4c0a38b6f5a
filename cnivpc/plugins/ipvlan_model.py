"""The ipvlan plugin's configuration model (``IpvlanConf``), declared in pydantic: the source
of truth of its keys, for the tests and the type checker. The plugin process runs the class
compiled from it (``plugins.ipvlan``, through the generated ``plugins.schemas``:
``./build/dev schemas`` after any change here); the checks its fields run are functions of
``plugins.ipvlan`` (pydantic-free).

Imports pydantic; never imported by a plugin process.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from ..cni.types import NetConf
from .ipvlan import check_master, check_mode


class IpvlanConf(NetConf):
    master: Annotated[str | None, AfterValidator(check_master)] = None
    mode: Annotated[str, AfterValidator(check_mode)] = "l2"
    mtu: int = Field(default=0, ge=0, le=65535)
