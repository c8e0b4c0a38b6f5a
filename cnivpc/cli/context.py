"""What a CLI command acts on: the IPAM configuration of this node, found the way the runtime
finds it (the first conflist in ``/etc/cni/net.d`` with a ``cnivpc-ipam`` plugin, in lexical
order), or given with ``--conf``; ``--data-dir`` overrides the state directory.

Every command opens the IPAM's store and node through ``open_node`` (the plugin's own opener,
``plugins.ipam.session.open_ipam``): the same state, token bucket and lock as the plugins.
Read-only commands open it read-only and create nothing.

Imports the IPAM plugin's config, store and node view; no botocore at import time.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import Any

from ..aws.metadata import Metadata
from ..plugins import FUSED
from ..plugins.ipam.config import IpamConf, family_problem
from ..plugins.ipam.node import Node
from ..plugins.ipam.session import ReadOnlyStore, ScratchStore, open_ipam
from ..plugins.ipam.store import Allocation, Store
from .exits import EXIT_USAGE, CliError

CONF_DIR = "/etc/cni/net.d"
IPAM_TYPE = "cnivpc-ipam"


def netns_gone(allocation: Allocation) -> bool:
    """The allocation's netns no longer exists (the runtime lost a DEL). lexists, not exists:
    /proc/<pid>/ns/net is a magic link that stat() may refuse to follow (EACCES without ptrace
    rights over that pid); the link itself is there for exactly as long as the process lives.
    An allocation without a recorded netns is never judged gone."""
    return bool(allocation.netns) and not os.path.lexists(allocation.netns)


def open_node(conf: IpamConf, *, read_only: bool, need_state: bool = True,
              timeout: float | None = None,
              metadata: Metadata | None = None) -> tuple[Store, Node]:
    """The IPAM's store and node for a command (see the module docstring). A read-only reader
    says on stderr what it cannot see: a state from an earlier boot, or no state at all."""
    store, node = open_ipam(conf, timeout=timeout, read_only=read_only, need_state=need_state,
                            metadata=metadata)
    if isinstance(store, ReadOnlyStore) and store.stale_boot:
        sys.stderr.write("note: the IPAM state is from an earlier boot: its allocations are "
                         "void (the next pod's setup frees them)\n")
    if isinstance(store, ScratchStore):
        sys.stderr.write(f"note: no IPAM state in {conf.data_dir} yet (no pod set up on this "
                         "node): nothing recorded is shown\n")
    return store, node


def add_conf_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conf", help="conflist (or plugin config) to read the IPAM settings "
                        f"from; default: the first conflist in {CONF_DIR} using {IPAM_TYPE}")
    parser.add_argument("--data-dir", help="IPAM state directory (overrides the config's "
                        "dataDir)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _ipam_entry(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The IPAM's settings: a cnivpc-ipam entry, or the ``ipam`` section of a fused one."""
    entries = [doc] if doc.get("type") else [p for p in doc.get("plugins") or []
                                             if isinstance(p, dict)]
    for plugin in entries:
        if plugin.get("type") == IPAM_TYPE:
            return {"cniVersion": doc.get("cniVersion"), "name": doc.get("name"), **plugin}
        if plugin.get("type") == FUSED and isinstance(plugin.get("ipam"), dict):
            inherited = {k: plugin[k] for k in ("logFile", "logLevel") if k in plugin}
            return {"cniVersion": doc.get("cniVersion"), "name": doc.get("name"),
                    **inherited, **plugin["ipam"], "type": IPAM_TYPE}
    return None


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {exc}", "check the file's JSON") from exc
    if not isinstance(doc, dict):
        raise CliError(f"{path} is not a JSON object", "pass a conflist or a plugin config")
    return doc


def load_ipam_conf(args: argparse.Namespace, conf_dir: str = CONF_DIR) -> IpamConf:
    raw: dict[str, Any] | None = None
    if args.conf:
        raw = _ipam_entry(_read(args.conf))
        if raw is None:
            raise CliError(f"{args.conf} has no {IPAM_TYPE} plugin",
                           "pass the cnivpc conflist", EXIT_USAGE)
    else:
        for path in sorted(glob.glob(os.path.join(conf_dir, "*.conflist"))):
            try:
                raw = _ipam_entry(_read(path))
            except CliError:
                continue
            if raw is not None:
                break
    raw = dict(raw or {"name": "cnivpc", "type": IPAM_TYPE})
    if args.data_dir:
        # An operator may give a relative path; a config path must be absolute.
        raw["dataDir"] = os.path.abspath(args.data_dir)
    try:
        conf = IpamConf.model_validate(raw)
    except ValueError as exc:
        raise CliError(f"invalid {IPAM_TYPE} configuration: {exc}",
                       "fix that key in the conflist, or name another with --conf/--data-dir",
                       EXIT_USAGE) from exc
    problem = family_problem(conf)
    if problem is not None:
        raise CliError(f"invalid {IPAM_TYPE} configuration: {problem[0]}", problem[1],
                       EXIT_USAGE)
    return conf
