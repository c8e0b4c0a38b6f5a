"""The files in examples/ are what operators copy: each is checked against what it describes.

- the IAM policy allows every EC2 operation the code calls (found in the source), and no
  mutating action without a tag condition or a resource scope;
- the DaemonSet validates against the Kubernetes schemas (offline, kubernetes-validate);
- the conflist is a valid cnivpc chain; the bake script parses and installs every unit; the
  systemd units run commands the CLI has, the warm unit before kubelet without blocking it;
  the DaemonSet warms the pool after installing, and a failed warm step never fails the pod.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from cnivpc.cli import COMMANDS
from cnivpc.cli.install import conflist as install_conflist
from cnivpc.cli.install import fused_conflist, validate_conflist
from cnivpc.cli.ipam import COMMANDS as IPAM_COMMANDS

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
# Digits too: AssignIpv6Addresses (a scan without them missed it, and the policy lacked it).
CALL = re.compile(r"""\.(?:call|paginate)\(\s*["']([A-Z][A-Za-z0-9]+)["']""")


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
        mutating = [a for a in actions if not a.startswith(("ec2:Describe", "ec2:Get"))]
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


def test_install_writes_the_fused_form_of_its_chain() -> None:
    chained = install_conflist(subnet_tags={"cnivpc": "pods"})
    fused = fused_conflist(chained)
    assert validate_conflist(fused) == []
    assert [p["type"] for p in fused["plugins"]] == ["cnivpc"]
    entry = fused["plugins"][0]
    assert entry["ipam"] == {"interfaceIndex": 1, "subnetTags": {"cnivpc": "pods"}}
    assert entry["ptp"]["ipMasq"] is True and entry["ipvlan"] == {"mode": "l2"}


def test_bake_script_parses() -> None:
    subprocess.run(["bash", "-n", str(EXAMPLES / "ami-bake.sh")], check=True)


def exec_start(unit: str) -> list[str]:
    text = (EXAMPLES / "systemd" / unit).read_text()
    return next(line for line in text.splitlines() if line.startswith("ExecStart=")).split()


def runs_an_existing_command(argv: list[str]) -> bool:
    """``cnivpc <command> [<ipam subcommand>]`` names commands the CLI has."""
    if argv[0] not in COMMANDS:
        return False
    return argv[0] != "ipam" or argv[1] in IPAM_COMMANDS


@pytest.mark.parametrize("unit", ["cnivpc-gc.service", "cnivpc-warm.service"])
def test_systemd_service_runs_an_existing_command(unit: str) -> None:
    argv = exec_start(unit)
    assert argv[0] == "ExecStart=/opt/cni/bin/cnivpc"
    assert runs_an_existing_command(argv[1:])


def test_warm_service_fills_the_pool_before_kubelet() -> None:
    assert exec_start("cnivpc-warm.service")[1:] == ["ipam", "warm"]
    text = (EXAMPLES / "systemd/cnivpc-warm.service").read_text()
    lines = text.splitlines()
    assert "Type=oneshot" in lines and "Before=kubelet.service" in lines
    assert not any(line.startswith(("Requires=", "RequiredBy=")) for line in lines), \
        "a failed warm step must not keep kubelet from starting"
    assert any(line.startswith("WantedBy=") and "kubelet.service" in line for line in lines)


def test_bake_script_installs_and_enables_every_unit() -> None:
    # Static: every unit is installed by name and both entry units are enabled, on the node
    # itself and into an image root (tests/artifact/test_node_layouts.py runs the script).
    script = (EXAMPLES / "ami-bake.sh").read_text()
    install = next(line for line in script.splitlines()
                   if line.lstrip().startswith("for unit in"))
    for unit in sorted(p.name for p in (EXAMPLES / "systemd").iterdir()):
        assert unit in install.replace(";", " ").split(), unit
    enables = [line for line in script.splitlines() if "systemctl" in line and " enable " in line]
    assert len(enables) >= 2  # the node's own systemd, and --root for an image
    for line in enables:
        assert {"cnivpc-gc.timer", "cnivpc-warm.service"} <= set(line.split()), line


def test_daemonset_warms_the_pool_after_install_without_failing() -> None:
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "kubernetes/daemonset.yaml").read_text())
            if d]
    spec = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    inits = spec["initContainers"]
    assert [c["name"] for c in inits] == ["install", "warm"]  # installed first, then warmed
    warm = inits[1]
    assert warm["command"][:2] == ["/bin/sh", "-c"]
    script = warm["command"][2]
    command, _, fallback = script.partition("||")
    argv = command.split()
    assert argv[0].endswith("/opt/cni/bin/cnivpc") and runs_an_existing_command(argv[1:])
    assert argv[1:] == ["ipam", "warm"] and "echo" in fallback  # never fails the pod
    mounts = {m["mountPath"] for m in warm["volumeMounts"]}
    # The IPAM's state, lock and conflist at the host's paths (the conflist's defaults).
    assert {"/var/lib/cnivpc", "/run/cnivpc", "/etc/cni/net.d"} <= mounts
    assert warm["securityContext"]["privileged"] is True and spec["hostNetwork"] is True


def test_iam_policy_scopes_eni_mutations_to_cnivpc_tags() -> None:
    """Mutations of ENIs only on ENIs tagged by cnivpc; creation only with that tag; tagging
    only as part of the creation."""
    policy = json.loads((EXAMPLES / "iam-policy.json").read_text())
    tag = "cnivpc.io/instance-id"
    for stmt in policy["Statement"]:
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        resources = stmt["Resource"] if isinstance(stmt["Resource"], list) else [stmt["Resource"]]
        conditions = json.dumps(stmt.get("Condition", {}))
        on_enis = any(r.endswith(":network-interface/*") for r in resources)
        if not on_enis:
            continue
        if actions == ["ec2:CreateNetworkInterface"]:
            assert f"aws:RequestTag/{tag}" in conditions, stmt["Sid"]
        elif actions == ["ec2:CreateTags"]:
            assert "ec2:CreateAction" in conditions and "CreateNetworkInterface" in conditions
        else:
            assert f"aws:ResourceTag/{tag}" in conditions, stmt["Sid"]


def test_daemonset_gc_sees_the_host_pids_it_judges_pods_by() -> None:
    """Allocations record /proc/<pid>/ns/net paths; gc releases an IP when that path is gone,
    so without hostPID it would release every live pod's IP."""
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "kubernetes/daemonset.yaml").read_text())
            if d]
    spec = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    assert spec.get("hostPID") is True
    gc = next(c for c in spec["containers"] if c["name"] == "gc")
    mounts = {m["mountPath"] for m in gc["volumeMounts"]}
    # state, lock, conflist, the binary and the pinned netns: what gc reads and writes
    assert mounts == {"/host/opt/cni/bin", "/etc/cni/net.d", "/var/lib/cnivpc", "/run/cnivpc",
                      "/var/run/netns"}
    assert not spec.get("hostIPC")
