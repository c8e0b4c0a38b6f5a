"""Pure parts of the ipvlan plugin: which master carries which IP, slave naming, config."""

from __future__ import annotations

import pytest

from cnivpc.cni.types import Result
from cnivpc.plugins.ipvlan import IpvlanConf, _masters, slave_names


def conf(**extra: object) -> IpvlanConf:
    return IpvlanConf.model_validate({"cniVersion": "1.0.0", "name": "n", "type": "t", **extra})


def test_ips_grouped_by_the_interface_that_carries_them() -> None:
    prev = Result.model_validate({
        "interfaces": [{"name": "eth1"}, {"name": "eth2"}],
        "ips": [{"address": "10.0.1.5/24", "interface": 0},
                {"address": "10.0.2.5/24", "interface": 1},
                {"address": "10.0.1.6/24", "interface": 0}]})
    groups = _masters(conf(), prev)
    assert [(m, [ip.address for ip in ips]) for m, ips in groups] == [
        ("eth1", ["10.0.1.5/24", "10.0.1.6/24"]), ("eth2", ["10.0.2.5/24"])]


def test_configured_master_wins() -> None:
    prev = Result.model_validate({"interfaces": [{"name": "eth1"}],
                                  "ips": [{"address": "10.0.1.5/24", "interface": 0}]})
    assert [m for m, _ in _masters(conf(master="ens6"), prev)] == ["ens6"]


def test_slave_names_fit_ifnamsiz() -> None:
    names = slave_names("averylongname15", 3)
    assert names[0] == "averylongname15"
    assert all(len(n) <= 15 for n in names)
    assert len(set(names)) == 3


def test_bad_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown ipvlan mode"):
        conf(mode="l4")
    assert conf(mode="").mode == "l2"
