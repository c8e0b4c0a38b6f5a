"""The files in examples/ are what operators copy: each is checked against what it describes.

- the IAM policy allows every EC2 operation the code calls (found in the source), and no
  mutating action without a tag condition or a resource scope;
- the DaemonSet validates against the Kubernetes schemas (offline, kubernetes-validate);
- the conflist is a valid cnivpc chain; the bake script parses; the systemd service runs a
  command the CLI has.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import yaml

from cnivpc.cli import COMMANDS
from cnivpc.cli.install import validate_conflist

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CALL = re.compile(r"""\.(?:call|paginate)\(\s*["']([A-Z][A-Za-z]+)["']""")


def ec2_operations_in_code() -> set[str]:
    found: set[str] = set()
    for path in (REPO / "cnivpc").rglob("*.py"):
        if "lab" in path.parts:
            continue  # the lab's own EC2 server is not a client of AWS
        found.update(CALL.findall(path.read_text()))
    return found


def test_iam_policy_covers_every_ec2_call() -> None:
    policy = json.loads((EXAMPLES / "iam-policy.json").read_text())
    allowed: set[str] = set()
    for stmt in policy["Statement"]:
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        allowed.update(a.removeprefix("ec2:") for a in actions)
    used = ec2_operations_in_code()
    assert "AssignPrivateIpAddresses" in used  # the scan finds the calls at all
    assert used <= allowed, f"missing from the IAM policy: {sorted(used - allowed)}"


def test_iam_policy_scopes_mutations() -> None:
    policy = json.loads((EXAMPLES / "iam-policy.json").read_text())
    for stmt in policy["Statement"]:
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        mutating = [a for a in actions if not a.startswith("ec2:Describe")]
        if mutating:
            assert stmt["Resource"] != "*" or "Condition" in stmt, stmt["Sid"]


def test_daemonset_validates_against_kubernetes_schemas() -> None:
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "kubernetes/daemonset.yaml").read_text())
            if d]
    assert {d["kind"] for d in docs} == {"ServiceAccount", "DaemonSet"}
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_daemonset_validation_catches_a_typo() -> None:
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "kubernetes/daemonset.yaml").read_text())
            if d]
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    ds["spec"]["template"]["spec"]["hostNetwrok"] = True
    try:
        kubernetes_validate.validate(ds, "1.30", strict=True)
    except kubernetes_validate.ValidationError:
        return
    raise AssertionError("an unknown field passed strict validation")


def test_conflist_is_a_valid_chain() -> None:
    doc = json.loads((EXAMPLES / "cnivpc.conflist").read_text())
    assert validate_conflist(doc) == []
    assert [p["type"] for p in doc["plugins"]] == ["cnivpc-ipam", "cnivpc-ipvlan", "cnivpc-ptp"]


def test_fused_conflist_is_the_same_configuration() -> None:
    chained = json.loads((EXAMPLES / "cnivpc.conflist").read_text())
    fused = json.loads((EXAMPLES / "cnivpc-fused.conflist").read_text())
    assert validate_conflist(fused) == []
    entry = fused["plugins"][0]
    assert entry["type"] == "cnivpc"
    for plugin in chained["plugins"]:
        section = entry[plugin["type"].removeprefix("cnivpc-")]
        expected = {k: v for k, v in plugin.items() if k not in ("type", "logFile")}
        assert section == expected


def test_bake_script_parses() -> None:
    subprocess.run(["bash", "-n", str(EXAMPLES / "ami-bake.sh")], check=True)


def test_systemd_service_runs_an_existing_command() -> None:
    unit = (EXAMPLES / "systemd/cnivpc-gc.service").read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    command = exec_start.split()[1]
    assert exec_start.split()[0] == "ExecStart=/opt/cni/bin/cnivpc"
    assert command in COMMANDS
