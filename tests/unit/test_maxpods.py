"""``cnivpc max-pods`` in both modes against AWS's published values, and the built-in limits table
against EC2's own DescribeInstanceTypes data.

Where the AWS numbers come from (checked by hand against the sources, not derived from our code):

* secondary-IP mode: ``files/eni-max-pods.txt`` of awslabs/amazon-eks-ami (generated
  2023-01-25; formula "ENIs x (IPv4 per ENI - 1) + 2"): m5.large 29, c5.xlarge 58,
  m5.24xlarge 737;
* prefix mode: ``files/max-pods-calculator.sh`` of the same repository with
  ``--cni-version 1.9.0 --cni-prefix-delegation-enabled``: ENIs x ((IPv4 per ENI - 1) x 16) + 2
  = 434, 898 and 11762, capped at 110 (2 and 4 vCPUs) and 250 (96 vCPUs, the calculator's
  ``CPU_COUNT -gt 30``): m5.large 110, c5.xlarge 110, m5.24xlarge 250.

cnivpc's secondary-IP answer differs on purpose: the ENIs below ``interfaceIndex`` (1: the
primary ENI) carry no pod, and host-network pods are not counted unless
``--host-network-pods`` says so (AWS adds 2). In prefix mode the kubelet ceiling makes both
agree for these three types.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cnivpc.aws.limits import (
    NITRO_FAMILIES,
    aws_calculator_max_pods,
    known_limits,
    known_type,
    pod_ceiling,
)
from cnivpc.cli.exits import EXIT_USAGE, CliError
from cnivpc.cli.maxpods import compute, compute_prefixes, main

# type -> (ENIs, IPv4 per ENI, vCPUs) as EC2's DescribeInstanceTypes says, and AWS's answers
PUBLISHED = {
    #              limits        eni-max-pods.txt   calculator, prefixes
    "m5.large": ((3, 10, 2), 29, 110),
    "c5.xlarge": ((4, 15, 4), 58, 110),
    "m5.24xlarge": ((15, 50, 96), 737, 250),
}
# cnivpc, secondary-IP mode, interfaceIndex 1: (ENIs - 1) x (IPv4 per ENI - 1)
CNIVPC_SECONDARY = {"m5.large": 18, "c5.xlarge": 42, "m5.24xlarge": 686}


@pytest.mark.parametrize("itype", sorted(PUBLISHED))
def test_both_modes_against_the_published_values(itype: str) -> None:
    (enis, per_eni, vcpus), table_value, prefix_value = PUBLISHED[itype]
    facts = known_type(itype)
    assert facts is not None and (facts.enis, facts.ipv4_per_eni, facts.vcpus) == (
        enis, per_eni, vcpus) and facts.nitro
    # our copy of AWS's calculator reproduces both published numbers
    assert aws_calculator_max_pods(enis, per_eni, vcpus, nitro=True, prefixes=False,
                                   show_max_allowed=True) == table_value
    assert aws_calculator_max_pods(enis, per_eni, vcpus, nitro=True,
                                   prefixes=True) == prefix_value
    # prefix mode: cnivpc answers what the calculator answers
    assert compute_prefixes(enis, per_eni, 1, vcpus) == prefix_value
    # secondary-IP mode: cnivpc's own formula, and the difference stated
    ours = compute(enis, per_eni, 1)
    assert ours == CNIVPC_SECONDARY[itype]
    assert table_value - ours == (per_eni - 1) + 2  # the primary ENI's slots + 2 host pods
    assert compute(enis, per_eni, 0, host_network_pods=2) == table_value


def test_prefix_mode_ceiling_and_small_types() -> None:
    assert (pod_ceiling(30), pod_ceiling(31)) == (110, 250)  # "-gt 30", as the calculator
    # t3.nano: 2 ENIs x 2 slots; pods only on ENI 1, whose one free slot is one /28
    assert compute_prefixes(2, 2, 1, 2) == 16
    assert aws_calculator_max_pods(2, 2, 2, nitro=True, prefixes=True) == 34  # all ENIs, +2
    assert compute_prefixes(2, 2, 1, 2, host_network_pods=2) == 18
    assert compute_prefixes(15, 50, 1, 96, cap=200) == 200
    # non-Nitro: the calculator falls back to the secondary-IP formula
    assert aws_calculator_max_pods(2, 10, 2, nitro=False, prefixes=True) == 20


def test_builtin_table_matches_ec2s_data() -> None:
    """Every type the table answers for is a real type with EC2's ENIs, IPv4/ENI, vCPUs and a
    Nitro hypervisor (or bare metal), per moto's copy of DescribeInstanceTypes."""
    from moto.ec2.models.instance_types import INSTANCE_TYPES

    sizes = ("nano", "micro", "small", "medium", "large", "xlarge", "2xlarge", "4xlarge",
             "8xlarge", "9xlarge", "12xlarge", "16xlarge", "18xlarge", "24xlarge", "metal")
    answered = 0
    for family in sorted(NITRO_FAMILIES | {"t3", "t3a"}):
        for size in sizes:
            itype = f"{family}.{size}"
            facts = known_type(itype)
            if facts is None:
                continue
            answered += 1
            data = INSTANCE_TYPES.get(itype)
            assert data is not None, f"{itype} is not a real type"
            net = data["NetworkInfo"]
            assert (facts.enis, facts.ipv4_per_eni, facts.vcpus) == (
                net["MaximumNetworkInterfaces"], net["Ipv4AddressesPerInterface"],
                data["VCpuInfo"]["DefaultVCpus"]), itype
            assert facts.nitro == (data.get("Hypervisor") == "nitro"
                                   or bool(data.get("BareMetal"))), itype
            assert known_limits(itype) == (facts.enis, facts.ipv4_per_eni)
    assert answered >= 130  # 135 types today, each checked above
    assert known_limits("t3a.small") == (2, 4)  # the table once said 3 ENIs
    assert known_type("m5a.metal") is None and known_type("m6g.24xlarge") is None


def run(tmp_path: Path, *args: str) -> dict[str, object]:
    conf = tmp_path / "10-cnivpc.conflist"
    conf.write_text(json.dumps({"cniVersion": "1.1.0", "name": "cnivpc",
                                "plugins": [{"type": "cnivpc-ipam"}]}))
    out = io.StringIO()
    assert main(["--conf", str(conf), "--json", *args], out) == 0
    doc: dict[str, object] = json.loads(out.getvalue())
    return doc


def test_offline_command_line(tmp_path: Path) -> None:
    doc = run(tmp_path, "--enis", "3", "--ipv4-per-eni", "10", "--prefixes", "--vcpus", "2")
    assert (doc["mode"], doc["max_pods"], doc["aws_calculator"]) == ("prefixes", 110, 110)
    doc = run(tmp_path, "--enis", "3", "--ipv4-per-eni", "10")
    assert (doc["mode"], doc["max_pods"]) == ("secondary-ips", 18)
    with pytest.raises(CliError) as exc:
        run(tmp_path, "--enis", "3", "--ipv4-per-eni", "10", "--prefixes")
    assert exc.value.exit_code == EXIT_USAGE and "--vcpus" in str(exc.value)
