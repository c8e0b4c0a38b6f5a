"""The fused mode (``type: cnivpc``): one conflist entry whose config holds an ``ipam``, an
``ipvlan`` and a ``ptp`` section, run by one process through the same three handlers the
chained mode uses. One interpreter start per pod instead of three; the same results.

Semantics mirror the chain exactly: ADD runs ipam → ipvlan → ptp, each getting the previous
result as its prevResult (in the current shape, as the chain would after conversion); DEL runs
ptp → ipvlan → ipam, every step attempted (DEL is best effort), the first error reported; CHECK
runs the three in order against the final result; STATUS and GC go to all three. A failed ADD
undoes the steps that succeeded, in reverse, as a runtime's DEL of the chain would.

Each section is validated by its plugin's own config model, with ``cniVersion``, ``name`` (and
the section's ``type``) filled in; keys the sections do not set (``logFile``, ``logLevel``)
are inherited from the top level.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from pydantic import Field

from ..cni.errors import CniError, InvalidConfig
from ..cni.plugin import Plugin, Request
from ..cni.skel import validation_details
from ..cni.types import NetConf, Result
from . import load

log = logging.getLogger("cnivpc.fused")

STEPS = (("ipam", "cnivpc-ipam"), ("ipvlan", "cnivpc-ipvlan"), ("ptp", "cnivpc-ptp"))
INHERITED = ("logFile", "logLevel")


class FusedConf(NetConf):
    # ``ipam`` is NetConf's (a dict); the two other sections are ours.
    ipvlan: dict[str, Any] = Field(default_factory=dict)
    ptp: dict[str, Any] = Field(default_factory=dict)


def _sub_request(req: Request[FusedConf], key: str, program: str,
                 prev: Result | None) -> tuple[Plugin[Any], Request[Any]]:
    section = dict(req.raw_config.get(key) or {})
    if key == "ptp" and not section:
        raise InvalidConfig("the fused cnivpc plugin needs a 'ptp' section",
                            "at least hostInterface and containerInterface")
    raw: dict[str, Any] = {k: req.raw_config[k] for k in INHERITED if k in req.raw_config}
    raw.update(section)
    raw.update(cniVersion=req.conf.cni_version, name=req.conf.name, type=program)
    if "runtimeConfig" in req.raw_config:
        raw["runtimeConfig"] = req.raw_config["runtimeConfig"]
    plugin = load(program)
    try:
        conf = plugin.conf_model.model_validate(raw)
    except ValueError as exc:
        raise InvalidConfig(f"invalid '{key}' section of the fused cnivpc plugin",
                            validation_details(exc)) from exc
    return plugin, Request(cmd=req.cmd, conf=conf, prev_result=prev,
                           valid_attachments=req.valid_attachments, raw_config=raw)


def add(req: Request[FusedConf]) -> Result:
    done: list[tuple[Plugin[Any], Request[Any]]] = []
    result: Result | None = req.prev_result
    try:
        for key, program in STEPS:
            plugin, sub = _sub_request(req, key, program, result)
            result = plugin.add(sub)
            done.append((plugin, replace(sub, prev_result=result)))
    except BaseException:
        for plugin, sub in reversed(done):
            try:
                plugin.delete(sub)
            except CniError as exc:
                log.warning("rollback: %s DEL failed: %s", plugin.name, exc)
        raise
    assert result is not None
    return result


def delete(req: Request[FusedConf]) -> None:
    first: CniError | None = None
    for key, program in reversed(STEPS):
        try:
            plugin, sub = _sub_request(req, key, program, req.prev_result)
            plugin.delete(sub)
        except CniError as exc:
            log.error("DEL: %s failed: %s", program, exc)
            first = first or exc
    if first is not None:
        raise first


def _each(req: Request[FusedConf], handler: str) -> None:
    for key, program in STEPS:
        plugin, sub = _sub_request(req, key, program, req.prev_result)
        getattr(plugin, handler)(sub)


def check(req: Request[FusedConf]) -> None:
    if req.prev_result is None:
        raise InvalidConfig("CHECK needs prevResult")
    _each(req, "check")


def status(req: Request[FusedConf]) -> None:
    _each(req, "status")


def gc(req: Request[FusedConf]) -> None:
    _each(req, "gc")


PLUGIN = Plugin(name="cnivpc", conf_model=FusedConf, add=add, delete=delete, check=check,
                status=status, gc=gc)
