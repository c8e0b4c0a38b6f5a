"""cni.records.Record behaves as the frozen dataclasses it replaced on the plugin path:
construction (positional, keyword, defaults, errors), immutability, equality by class and
fields, hashing, repr, pattern matching and ``replace``; and the IPAM's warm path imports
neither ``dataclasses`` nor ``inspect`` for them."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import FrozenInstanceError, dataclass
from dataclasses import replace as dc_replace

import pytest

from cnivpc.cni.records import Record, replace
from cnivpc.plugins.ipam.decision import Claim, Wait
from cnivpc.plugins.ipam.store import Allocation


class Point(Record):
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class DcPoint:
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()


def test_construction_and_defaults_as_a_dataclass() -> None:
    assert (Point(1).x, Point(1).y, Point(1).tags) == (1, 0, ())
    assert Point(1, 2) == Point(x=1, y=2) == Point(2 - 1, y=2)
    for args, kwargs in (((), {}), ((1, 2, (), 4), {}), ((1,), {"x": 1}), ((1,), {"z": 3})):
        with pytest.raises(TypeError):
            Point(*args, **kwargs)
        with pytest.raises(TypeError):
            DcPoint(*args, **kwargs)


def test_frozen_equal_by_class_and_fields_hashable() -> None:
    p = Point(1, 2)
    with pytest.raises(AttributeError):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):  # the dataclass raised this AttributeError
        DcPoint(1).x = 3  # type: ignore[misc]
    assert p != Point(1, 3) and p != (1, 2, ())
    # Records of different classes with the same values differ (a NamedTuple would not).
    assert Claim(3) != Wait(3) and Claim(3) == Claim(3)
    assert hash(Point(1, 2, ("a",))) == hash(Point(1, 2, ("a",)))
    assert len({Point(1), Point(1), Point(2)}) == 2


def test_repr_and_match_as_a_dataclass() -> None:
    assert repr(Point(1, 2)).replace("Point", "DcPoint") == repr(DcPoint(1, 2))
    match Wait(7):
        case Claim(op_id):
            pytest.fail(f"matched Claim {op_id}")
        case Wait(op_id):
            assert op_id == 7


def test_replace_as_dataclasses_replace() -> None:
    a = Allocation("10.0.0.5", "eni-1", "c1", "eth0", "ns/pod", 1.0)
    b = replace(a, ipv6="fd00::5", netns="/x")
    assert (b.ip, b.ipv6, b.netns, a.ipv6) == ("10.0.0.5", "fd00::5", "/x", "")
    assert type(b) is Allocation and replace(a) == a
    with pytest.raises(TypeError):
        replace(a, nope=1)
    assert dc_replace(DcPoint(1), y=5) == DcPoint(1, 5) and replace(Point(1), y=5) == Point(1, 5)


def test_a_default_before_a_field_without_one_is_refused() -> None:
    with pytest.raises(TypeError):
        class Bad(Record):
            a: int = 0
            b: int


def test_the_ipam_plugin_imports_no_dataclasses() -> None:
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = ("import sys; from cnivpc import plugins; plugins.load('cnivpc-ipam'); "
            "print(sorted(m for m in ('dataclasses', 'botocore') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": repo}).stdout
    assert out.strip() == "[]"
