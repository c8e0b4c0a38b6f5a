"""Trim an installed botocore's data directory down to what cnivpc's EC2 client needs.

botocore ships ~450 service models (most of its files and most of the zipapp); cnivpc talks to
EC2 only, with the operations listed in ``OPERATIONS``. This keeps the global files
``botocore.session.create_client("ec2")`` reads (endpoints.json reduced to the EC2 entries),
and in ``ec2/<api-version>/``: the endpoint ruleset, the service model reduced to
``OPERATIONS`` and every shape they reach (transitively, without documentation), and their
paginators. A smaller model is also faster to load.

Works on files only, stdlib only: it must not import botocore (the build runs it on a
``pip install --target`` tree, not on the running interpreter's botocore). The result is tied to
the botocore version pinned in build/constraints.txt; the artifact tests smoke-test it.

    python3 build/trim_botocore.py SITE_PACKAGES/botocore/data
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The EC2 operations cnivpc calls (cnivpc/aws). Adding a call there means adding it here.
OPERATIONS: tuple[str, ...] = (
    "AssignPrivateIpAddresses", "UnassignPrivateIpAddresses",
    "AssignIpv6Addresses", "UnassignIpv6Addresses",
    "AttachNetworkInterface", "DetachNetworkInterface",
    "CreateNetworkInterface", "DeleteNetworkInterface", "ModifyNetworkInterfaceAttribute",
    "DescribeInstanceTypes", "DescribeInstances", "DescribeNetworkInterfaces",
    "DescribeSubnets", "DescribeVpcs", "DescribeVpcPeeringConnections",
    "DescribeSecurityGroups", "CreateTags", "DeleteTags",
    "DescribeManagedPrefixLists", "GetManagedPrefixListEntries",
)

SERVICE = "ec2"
# Top-level data files a session reads to build any client (retry policy, endpoint
# partitions, defaults mode). Everything else at the top level is another service.
GLOBAL_FILES = ("_retry.json", "endpoints.json", "partitions.json",
                "sdk-default-configuration.json")
# Per-API-version files kept as they are; the service model and paginators are rewritten.
KEEP_AS_IS = ("endpoint-rule-set-1.json", "endpoint-rule-set-1.json.gz")


def _load(path: Path) -> Any:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.json", f"{stem}.json.gz"):
        if (directory / name).exists():
            return directory / name
    return None


def _shape_refs(node: Any) -> Iterator[str]:
    """Every ``{"shape": name}`` reference anywhere inside a shape or operation definition
    (structure members, list members, map keys and values, errors...)."""
    if isinstance(node, dict):
        ref = node.get("shape")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _shape_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _shape_refs(value)


def _undocumented(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _undocumented(v) for k, v in node.items() if k != "documentation"}
    if isinstance(node, list):
        return [_undocumented(v) for v in node]
    return node


def trim_model(model: dict[str, Any], operations: tuple[str, ...]) -> dict[str, Any]:
    """The model with only ``operations`` and the shapes they reach."""
    missing = [op for op in operations if op not in model["operations"]]
    if missing:
        raise SystemExit(f"trim_botocore: operations not in the {SERVICE} model: {missing} "
                         "(botocore upgraded? update OPERATIONS)")
    ops = {op: _undocumented(model["operations"][op]) for op in operations}
    shapes = model["shapes"]
    keep: set[str] = set()
    todo = [ref for op in ops.values() for ref in _shape_refs(op)]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        if name not in shapes:
            raise SystemExit(f"trim_botocore: shape {name!r} is referenced but not defined")
        keep.add(name)
        todo.extend(_shape_refs(shapes[name]))
    out = {k: v for k, v in model.items() if k not in ("operations", "shapes", "documentation")}
    out["operations"] = ops
    out["shapes"] = {name: _undocumented(shapes[name]) for name in sorted(keep)}
    return out


def _dump(doc: Any, path: Path) -> None:
    # Plain JSON, compact: the zip compresses it anyway, and loading skips a gunzip.
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n", encoding="utf-8")


def _trim_endpoints(path: Path) -> None:
    """endpoints.json lists every service's endpoints per partition (1.2 MB, parsed by every
    session); keep each partition's regions and defaults and only the EC2 entry."""
    doc = _load(path)
    for partition in doc["partitions"]:
        partition["services"] = {k: v for k, v in partition.get("services", {}).items()
                                 if k == SERVICE}
    _dump(doc, path)


def trim(data: Path, operations: tuple[str, ...] = OPERATIONS) -> dict[str, int]:
    """Trim ``data`` (a botocore/data directory) in place; returns before/after byte counts."""
    before = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    versions = sorted(p for p in (data / SERVICE).iterdir() if p.is_dir())
    if not versions:
        raise SystemExit(f"trim_botocore: no {SERVICE} model under {data}")
    api = versions[-1]  # botocore loads the newest API version
    model_path = _find(api, "service-2")
    if model_path is None:
        raise SystemExit(f"trim_botocore: no service-2 model in {api}")
    model = trim_model(_load(model_path), operations)
    paginators_path = _find(api, "paginators-1")
    paginators = _load(paginators_path) if paginators_path else None

    for entry in data.iterdir():
        if entry.name == SERVICE or entry.name in GLOBAL_FILES:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for entry in (data / SERVICE).iterdir():
        if entry == api:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for entry in api.iterdir():
        if entry.name not in KEEP_AS_IS:
            entry.unlink()

    _dump(model, api / "service-2.json")
    _trim_endpoints(data / "endpoints.json")
    if paginators is not None:
        kept = {op: cfg for op, cfg in paginators.get("pagination", {}).items()
                if op in operations}
        _dump({"pagination": kept}, api / "paginators-1.json")
    missing_globals = [name for name in GLOBAL_FILES if not (data / name).exists()]
    if missing_globals:
        raise SystemExit(f"trim_botocore: botocore data lacks {missing_globals}")
    after = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    return {"before": before, "after": after, "operations": len(model["operations"]),
            "shapes": len(model["shapes"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a botocore/data directory, trimmed in place")
    args = parser.parse_args(argv)
    stats = trim(args.data)
    print(f"botocore data: {stats['before'] / 1e6:.1f} MB -> {stats['after'] / 1e6:.2f} MB "
          f"({stats['operations']} EC2 operations, {stats['shapes']} shapes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
