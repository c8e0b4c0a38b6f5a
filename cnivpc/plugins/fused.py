"""The fused mode (``type: cnivpc``): one conflist entry whose config holds an ``ipam``, an
``ipvlan`` and a ``ptp`` section, run by one process through the same three handlers the
chained mode uses. One interpreter start per pod instead of three; the same results.

Semantics mirror the chain exactly: ADD runs ipam → ipvlan → ptp, each getting the previous
result as its prevResult (in the current shape, as the chain would after conversion); DEL runs
ptp → ipvlan → ipam, every step attempted (DEL is best effort), the first error reported; CHECK
runs the three in order against the final result; STATUS and GC go to all three, every part
attempted, the first error reported. A failed ADD undoes the steps that succeeded, in reverse,
as a runtime's DEL of the chain would.

Each section is validated by its plugin's own config model, with ``cniVersion``, ``name`` (and
the section's ``type``) filled in; keys the sections do not set (``logFile``, ``logLevel``)
are inherited from the top level, and GC's valid attachments are handed to every part (the
``ValidAttachments`` value, and its keys in each part's config, as a runtime would send them).
``ipam`` and ``ptp`` sections are required, ``ipvlan`` may be left out (its defaults). ADD, CHECK,
STATUS and GC validate all three sections before any part runs, so a bad section changes
nothing; DEL builds each part on its own, so a bad section cannot keep the others (the IPAM's
release above all) from running.

Imports the plugins through the registry; never botocore itself (the IPAM part does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..cni import logs
from ..cni.errors import CniError, InvalidConfig
from ..cni.models import Result
from ..cni.plugin import Plugin, Request
from ..cni.skel import validation_details
from . import load

log = logs.get("fused")

STEPS = (("ipam", "cnivpc-ipam"), ("ipvlan", "cnivpc-ipvlan"), ("ptp", "cnivpc-ptp"))
REQUIRED = {"ipam": "its IPAM keys (at least {} for the defaults)",
            "ptp": "at least hostInterface and containerInterface"}
INHERITED = ("logFile", "logLevel")

Part = tuple[Plugin[Any], Request[Any]]


# The config, compiled from the pydantic model (``cni.compiled``): no pydantic in the process.
if TYPE_CHECKING:
    from .fused_model import FusedConf
else:
    from ..cni.compiled import model
    from .schemas import MODELS

    FusedConf = model(MODELS, "cnivpc.plugins.fused_model:FusedConf")


def _sub_request(req: Request[FusedConf], key: str, program: str,
                 prev: Result | None) -> Part:
    section = req.raw_config.get(key)
    if section is None and key in REQUIRED:
        raise InvalidConfig(f"the fused cnivpc plugin needs its '{key}' section", REQUIRED[key])
    if not isinstance(section, dict | None):
        raise InvalidConfig(f"the '{key}' section of the fused cnivpc plugin must be an object",
                            f"got {type(section).__name__}")
    raw: dict[str, Any] = {k: req.raw_config[k] for k in INHERITED if k in req.raw_config}
    raw.update(section or {})
    raw.update(cniVersion=req.conf.cni_version, name=req.conf.name, type=program)
    if "runtimeConfig" in req.raw_config:
        raw["runtimeConfig"] = req.raw_config["runtimeConfig"]
    raw.update(req.valid_attachments.to_config())
    plugin = load(program)
    try:
        conf = plugin.conf_model.model_validate(raw)
    except ValueError as exc:
        raise InvalidConfig(f"invalid '{key}' section of the fused cnivpc plugin",
                            validation_details(exc)) from exc
    return plugin, Request(cmd=req.cmd, conf=conf, prev_result=prev,
                           valid_attachments=req.valid_attachments, raw_config=raw)


def _parts(req: Request[FusedConf]) -> list[Part]:
    """All three parts, validated before any of them runs."""
    return [_sub_request(req, key, program, req.prev_result) for key, program in STEPS]


def add(req: Request[FusedConf]) -> Result:
    parts = _parts(req)
    # What the ptp part would refuse after the IPAM allocated and ipvlan built: refused first.
    from .ptp.config import PtpConf, refuse_ifname

    for _, sub in parts:
        if isinstance(sub.conf, PtpConf):
            refuse_ifname(sub.conf, req.cmd.ifname)
    done: list[Part] = []
    result: Result | None = req.prev_result
    try:
        for plugin, sub in parts:
            sub = sub.replace(prev_result=result)
            result = plugin.add(sub)
            done.append((plugin, sub.replace(prev_result=result)))
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


def _every(parts: list[Part], handler: str) -> None:
    """Run ``handler`` of every part, even after one failed; raise the first failure."""
    first: CniError | None = None
    for plugin, sub in parts:
        try:
            getattr(plugin, handler)(sub)
        except CniError as exc:
            log.error("%s: %s failed: %s", handler.upper(), plugin.name, exc)
            first = first or exc
    if first is not None:
        raise first


def check(req: Request[FusedConf]) -> None:
    if req.prev_result is None:
        raise InvalidConfig("CHECK needs prevResult")
    for plugin, sub in _parts(req):
        plugin.check(sub)


def status(req: Request[FusedConf]) -> None:
    _every(_parts(req), "status")


def gc(req: Request[FusedConf]) -> None:
    # Refused before any part runs: a GC without the list removes nothing anywhere.
    req.valid_attachments.require()
    _every(_parts(req), "gc")


PLUGIN = Plugin(name="cnivpc", conf_model=FusedConf, add=add, delete=delete, check=check,
                status=status, gc=gc)
