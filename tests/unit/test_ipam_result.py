"""The IPAM result for one allocation: prefix length from the subnet, gateway = network + 1,
routes for every VPC CIDR plus extras (deduplicated), DNS = VPC base + 2, in every version."""

from __future__ import annotations

import pytest

from cnivpc.plugins.ipam import result
from cnivpc.plugins.ipam.store import Allocation, EniRecord

ENI = EniRecord(eni_id="eni-1", mac="02:00:00:00:00:01", device_index=1,
                subnet_id="subnet-1", subnet_cidr="10.0.16.0/20", vpc_id="vpc-1",
                vpc_cidrs=("10.0.0.0/16", "100.64.0.0/16"), link="eth1", primary_ip="10.0.16.4")
ALLOC = Allocation(ip="10.0.16.23", eni_id="eni-1", container_id="c", ifname="eth0", pod="",
                   allocated_at=0.0)


def test_result_shape() -> None:
    res = result.build(ALLOC, ENI, ["172.16.0.0/12", "10.0.0.0/16", "192.168.5.7/24"])
    assert res.to_version("1.0.0") == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth1"}],
        "ips": [{"address": "10.0.16.23/20", "gateway": "10.0.16.1", "interface": 0}],
        "routes": [{"dst": "10.0.0.0/16", "gw": "10.0.16.1"},
                   {"dst": "100.64.0.0/16", "gw": "10.0.16.1"},
                   {"dst": "172.16.0.0/12", "gw": "10.0.16.1"},
                   {"dst": "192.168.5.0/24", "gw": "10.0.16.1"}],
        "dns": {"nameservers": ["10.0.0.2"]},
    }


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0"])
def test_result_in_old_versions_has_ip_version(version: str) -> None:
    out = result.build(ALLOC, ENI, []).to_version(version)
    assert out["ips"][0]["version"] == "4"
    assert out["cniVersion"] == version
