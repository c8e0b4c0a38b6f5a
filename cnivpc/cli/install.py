"""``cnivpc install``: put cnivpc on a node in one idempotent step.

1. the zipapp goes to ``<bin-dir>/cnivpc`` atomically (copy to a temporary name in the same
   directory, fsync, rename: a runtime exec'ing the old file keeps running it, and never sees a
   half-written one; "text file busy" cannot happen);
2. relative symlinks ``cnivpc-ipam``, ``cnivpc-ipvlan``, ``cnivpc-ptp`` → ``cnivpc``;
3. the conflist: written from the flags when absent, validated (every plugin's config model)
   when present and left alone;
4. the zipapp is run once so its shiv extraction exists before the first pod (a runtime's
   first ADD then pays no extraction), and older extractions are pruned (the current and the
   previous one are kept: a running process may still import from the previous one).

``--root`` installs under another root (image builds, tests); ``--dry-run`` says what it would
do and does nothing. Imports the plugins' config models only for validation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from typing import Any, TextIO

from .exits import EXIT_OK, EXIT_USAGE, CliError, Parser

PROGRAM = "cnivpc"
LINKS = ("cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp")
DEFAULT_CONF_NAME = "10-cnivpc.conflist"
DEFAULT_SHIV_ROOT = "/var/lib/cnivpc/shiv"


def conflist(host_interface: str = "eth0", container_interface: str = "eth1",
             ip_masq: bool = True, subnet_tags: dict[str, str] | None = None,
             sec_group_ids: list[str] | None = None, cni_version: str = "1.0.0",
             name: str = "cnivpc", ip_family: str = "ipv4",
             service_prefix_lists: list[str] | None = None) -> dict[str, Any]:
    """The chain cnivpc-ipam → cnivpc-ipvlan → cnivpc-ptp, with our defaults. ``ip_family``:
    "ipv4", "dual-stack" (``ipv6``) or "ipv6" (IPv6-only pods: ``ipv4: false``)."""
    ipam: dict[str, Any] = {"type": "cnivpc-ipam", "interfaceIndex": 1}
    if subnet_tags:
        ipam["subnetTags"] = subnet_tags
    if sec_group_ids:
        ipam["secGroupIds"] = sec_group_ids
    if ip_family in ("dual-stack", "ipv6"):
        ipam["ipv6"] = True
    if ip_family == "ipv6":
        ipam["ipv4"] = False
    if service_prefix_lists:
        ipam["routeServicePrefixLists"] = service_prefix_lists
    return {
        "cniVersion": cni_version,
        "name": name,
        "plugins": [
            ipam,
            {"type": "cnivpc-ipvlan", "mode": "l2"},
            {"type": "cnivpc-ptp", "hostInterface": host_interface,
             "containerInterface": container_interface, "ipMasq": ip_masq},
        ],
    }


def fused_conflist(chained: dict[str, Any]) -> dict[str, Any]:
    """The same configuration as one fused entry (type ``cnivpc``): each plugin's keys become
    its section (``ipam``, ``ipvlan``, ``ptp``). One Python start per pod instead of three."""
    sections = {p["type"].removeprefix("cnivpc-"): {k: v for k, v in p.items() if k != "type"}
                for p in chained["plugins"]}
    return {"cniVersion": chained["cniVersion"], "name": chained["name"],
            "plugins": [{"type": PROGRAM, **sections}]}


def validate_conflist(doc: Any) -> list[str]:
    """Problems with a conflist (empty when it is usable)."""
    from ..cni.skel import validation_details
    from ..plugins import CONFIG_MODELS, config_model
    from ..plugins.ipam.config import family_problem

    problems: list[str] = []
    if not isinstance(doc, dict) or not isinstance(doc.get("plugins"), list):
        return ["not a conflist: needs a 'plugins' list"]
    for key in ("cniVersion", "name"):
        if not isinstance(doc.get(key), str) or not doc.get(key):
            problems.append(f"missing '{key}'")
    types = [p.get("type") for p in doc["plugins"] if isinstance(p, dict)]
    if "cnivpc-ipam" not in types and "cnivpc" not in types:
        problems.append("no cnivpc-ipam plugin in the chain (nor the fused cnivpc)")
    for plugin in doc["plugins"]:
        kind = plugin.get("type") if isinstance(plugin, dict) else None
        if kind not in CONFIG_MODELS:
            continue  # another vendor's plugin (bandwidth, portmap...): not ours to judge
        entry = {"cniVersion": doc.get("cniVersion"), "name": doc.get("name"), **plugin}
        try:
            config_model(kind).model_validate(entry)
            ipam = entry if kind == "cnivpc-ipam" else entry.get("ipam")
            if isinstance(ipam, dict):  # the keys that must agree across fields
                ipam = {"cniVersion": entry["cniVersion"], "name": entry["name"], **ipam,
                        "type": "cnivpc-ipam"}
                problem = family_problem(config_model("cnivpc-ipam").model_validate(ipam))
                if problem is not None:
                    problems.append(f"{kind}: {problem[0]} ({problem[1]})")
        except ValueError as exc:
            problems.append(f"{kind}: {validation_details(exc)}")
    return problems


class Installer:
    def __init__(self, out: TextIO, dry_run: bool) -> None:
        self.out = out
        self.dry_run = dry_run
        self.changed = 0

    def say(self, what: str) -> None:
        self.out.write(("would " if self.dry_run else "") + what + "\n")

    def write_atomic(self, path: str, data: bytes, mode: int) -> None:
        self.changed += 1
        self.say(f"write {path}")
        if self.dry_run:
            return
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)

    def symlink(self, target: str, path: str) -> None:
        if os.path.islink(path) and os.readlink(path) == target:
            return
        self.changed += 1
        self.say(f"link {path} -> {target}")
        if self.dry_run:
            return
        tmp = f"{path}.tmp{os.getpid()}"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, path)


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _running_zipapp() -> str | None:
    path = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return path if path and zipfile.is_zipfile(path) else None


def _build_id(zipapp: str) -> str:
    with zipfile.ZipFile(zipapp) as z:
        env = json.loads(z.read("environment.json"))
    return str(env.get("build_id", ""))


def prune_extractions(shiv_root: str, keep_id: str, installer: Installer) -> None:
    """Delete ``cnivpc_<id>`` extractions but the current one and the newest other one."""
    if not os.path.isdir(shiv_root):
        return
    dirs = [d for d in os.listdir(shiv_root)
            if d.startswith(f"{PROGRAM}_") and not d.endswith(".tmp")
            and os.path.isdir(os.path.join(shiv_root, d))]
    others = sorted((d for d in dirs if not d.endswith(keep_id)),
                    key=lambda d: os.path.getmtime(os.path.join(shiv_root, d)), reverse=True)
    for stale in others[1:]:
        installer.changed += 1
        installer.say(f"remove old extraction {os.path.join(shiv_root, stale)}")
        if not installer.dry_run:
            shutil.rmtree(os.path.join(shiv_root, stale), ignore_errors=True)


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="cnivpc install", description=__doc__)
    p.add_argument("--source", help="the zipapp to install (default: this running zipapp)")
    p.add_argument("--root", default="/", help="install under this root (default /)")
    p.add_argument("--bin-dir", default="/opt/cni/bin")
    p.add_argument("--conf-dir", default="/etc/cni/net.d")
    p.add_argument("--conf-name", default=DEFAULT_CONF_NAME)
    p.add_argument("--shiv-root", default=DEFAULT_SHIV_ROOT,
                   help="where the zipapp extracts itself (its baked-in --root)")
    p.add_argument("--host-interface", default="eth0")
    p.add_argument("--container-interface", default="eth1")
    p.add_argument("--no-ip-masq", action="store_true")
    p.add_argument("--fused", action="store_true",
                   help="write the fused conflist (one entry of type cnivpc: one process per "
                        "pod instead of three)")
    p.add_argument("--ip-family", choices=("ipv4", "dual-stack", "ipv6"), default="ipv4",
                   help="the pods' addresses: VPC IPv4 (default), IPv4 and IPv6 (dual-stack), "
                        "or IPv6 only with IPv4 egress through the node (ipv6)")
    p.add_argument("--service-route", action="append", default=[], metavar="LIST",
                   help="route an AWS service prefix list over the pod's ENI (s3, dynamodb, a "
                        "prefix list name or pl- id; repeatable; not with --ip-family ipv6)")
    p.add_argument("--subnet-tag", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--security-group", action="append", default=[], metavar="sg-…")
    p.add_argument("--no-extract", action="store_true", help="skip the pre-extraction run")
    p.add_argument("--dry-run", action="store_true")
    return p


def main(args: list[str], out: TextIO) -> int:
    opts = parser().parse_args(args)
    source = opts.source or _running_zipapp()
    if not source or not zipfile.is_zipfile(source):
        raise CliError("no zipapp to install", "run the built zipapp (build/out/cnivpc "
                       "install) or pass --source build/out/cnivpc", EXIT_USAGE)
    tags = {}
    for item in opts.subnet_tag:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--subnet-tag {item!r} is not KEY=VALUE", exit_code=EXIT_USAGE)
        tags[key] = value
    if opts.ip_family == "ipv6" and opts.service_route:
        raise CliError("--service-route needs the pods' own VPC IPv4",
                       "IPv6-only pods (--ip-family ipv6) reach S3 and DynamoDB over IPv6, or "
                       "through the node", EXIT_USAGE)

    def under_root(path: str) -> str:
        return os.path.join(opts.root, path.lstrip("/"))

    bin_dir, conf_dir = under_root(opts.bin_dir), under_root(opts.conf_dir)
    shiv_root = under_root(opts.shiv_root)
    inst = Installer(out, opts.dry_run)
    target = os.path.join(bin_dir, PROGRAM)
    if not os.path.exists(target) or _digest(target) != _digest(source):
        with open(source, "rb") as blob:
            inst.write_atomic(target, blob.read(), 0o755)
    for name in LINKS:
        inst.symlink(PROGRAM, os.path.join(bin_dir, name))
    conf_path = os.path.join(conf_dir, opts.conf_name)
    if os.path.exists(conf_path):
        try:
            with open(conf_path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError) as exc:
            raise CliError(f"{conf_path} is unreadable: {exc}", "fix or remove it") from exc
        problems = validate_conflist(doc)
        if problems:
            raise CliError(f"{conf_path} is invalid: " + "; ".join(problems),
                           "fix it, or remove it to have install write a fresh one")
        out.write(f"kept {conf_path} (valid)\n")
    else:
        doc = conflist(opts.host_interface, opts.container_interface, not opts.no_ip_masq,
                       tags or None, opts.security_group or None, ip_family=opts.ip_family,
                       service_prefix_lists=opts.service_route or None)
        if opts.fused:
            doc = fused_conflist(doc)
        inst.write_atomic(conf_path, (json.dumps(doc, indent=2) + "\n").encode(), 0o644)
    build_id = _build_id(source)
    if not opts.no_extract and not os.path.isdir(os.path.join(shiv_root,
                                                              f"{PROGRAM}_{build_id}")):
        inst.changed += 1
        inst.say(f"extract into {shiv_root}")
        if not opts.dry_run:
            # The caller's PATH: the zipapp's launcher picks the interpreter from it, as it
            # will from the runtime's on this node (python3.10 ... 3.14, newest first).
            path = os.environ.get("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin"
            env = {"PATH": path, "SHIV_ROOT": shiv_root}
            if os.environ.get("CNIVPC_PYTHON"):
                env["CNIVPC_PYTHON"] = os.environ["CNIVPC_PYTHON"]
            subprocess.run([target, "version"], env=env, check=True, capture_output=True)
    prune_extractions(shiv_root, build_id, inst)
    out.write("nothing to do: already installed\n" if inst.changed == 0 else
              f"{'planned' if opts.dry_run else 'done'}: {inst.changed} change(s)\n")
    return EXIT_OK
