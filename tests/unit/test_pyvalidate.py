"""cni.pyvalidate against pydantic_core: for every generated model, the same input gives the
same answer from both: the same fields, extra keys and fields set, or the same errors (type,
location, message, input). Inputs: thousands drawn by hypothesis, field by field, from values
that sit on every edge lax validation has (numeric strings, floats with and without a fraction,
"yes"/"off", bounds, nested wrong types), plus each model's own valid example."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import SchemaValidator
from pydantic_core import ValidationError as CoreError

from cnivpc.cni import compiled, pyvalidate
from cnivpc.cni.schemas import MODELS as CNI_MODELS
from cnivpc.plugins.schemas import MODELS as PLUGIN_MODELS

MODELS = {**CNI_MODELS, **PLUGIN_MODELS}
for _key in MODELS:  # registers every entry with cni.compiled
    compiled.model(MODELS, _key)
EDGES: list[Any] = [
    None, True, False, 0, 1, -1, 2, 7, 67, 68, 100, 110, 1000, 65535, 65536, 2**40, 0.0, 1.0,
    1.5, -0.5, 68.0, 1e300, float("inf"), float("nan"), "", " ", "x", "0", "1", "12", " 12 ",
    "1.0", "1.5", "1_000", "0x20", "yes", "No", "off", "TRUE", "t", "eth0", "10.0.0.0/16",
    "169.254.172.0/22", "fd00::/64", "sg-1", "pl-1", "s3", "/var/lib/x", "30000:32767",
    "0x2000", "l2", "1.0.0", "inf", "nan", "1e3", "+5", "-5", "1.", ".5", "True", "FALSE",
    "Y", 2**63, -(2**63), 2**70, 9.5e18, -1e19, [], ["a"], [1], ["eth0", "eth1"],
    ["10.0.0.0/8"], [None], {}, {"a": "b"}, {"a": 1}, {"address": "10.0.0.1/24"}, {"name": "eth0"},
]
SCALARS = st.sampled_from(EDGES)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["a", "name", "address", "dst", "gw"]),
                                      inner, max_size=3), max_leaves=6)


def validators(key: str) -> tuple[SchemaValidator, pyvalidate.Validator]:
    schema = compiled._schema(key)
    return SchemaValidator(schema), pyvalidate.Validator(schema)


def aliases(key: str) -> list[str]:
    fields = MODELS[key]["fields"]
    return [alias or name for name, (alias, _) in fields.items()] + list(fields)


def same(key: str, data: Any) -> None:
    core, ours = validators(key)
    try:
        want = core.validate_python(data)
    except CoreError as exc:
        with pytest.raises(pyvalidate.ValidationError) as caught:
            ours.validate_python(data)
        expected = [{k: e[k] for k in ("type", "loc", "msg", "input")}
                    for e in exc.errors(include_url=False)]
        got = [{k: e[k] for k in ("type", "loc", "msg", "input")}
               for e in caught.value.errors(include_url=False)]
        assert _clean(got) == _clean(expected), data
        return
    got = ours.validate_python(data)
    assert _clean(_state(got)) == _clean(_state(want)), data


def _state(model: Any) -> Any:
    """A model's fields (nested models opened), extra keys and fields set."""
    if isinstance(model, compiled.Compiled):
        return ({k: _state(v) for k, v in model.__dict__.items()},
                model.__pydantic_extra__, sorted(model.__pydantic_fields_set__))
    if isinstance(model, list):
        return [_state(v) for v in model]
    if isinstance(model, dict):
        return {k: _state(v) for k, v in model.items()}
    return (type(model).__name__, model)


def _clean(value: Any) -> Any:
    """NaN compares unequal to itself: make it a marker."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_clean(v) for v in value)
    return value


@pytest.mark.parametrize("key", sorted(MODELS))
def test_every_generated_schema_is_in_the_subset(key: str) -> None:
    validators(key)  # raises TypeError on a schema type pyvalidate does not know


@pytest.mark.parametrize("key", sorted(MODELS))
@settings(max_examples=int(os.environ.get("PYVALIDATE_EXAMPLES", "400")), deadline=None)
@given(data=st.data())
def test_the_same_answers_as_pydantic_core(key: str, data: st.DataObject) -> None:
    keys = aliases(key)
    doc = data.draw(st.dictionaries(st.sampled_from([*keys, "unknownKey"]), JSON, max_size=6))
    same(key, doc)
    same(key, data.draw(JSON))  # not a dict at all, mostly


VALID = {
    "cnivpc.plugins.ptp.model:PtpConf": {
        "cniVersion": "1.0.0", "name": "n", "type": "cnivpc-ptp", "hostInterface": "eth0",
        "containerInterface": "eth1", "ipMasq": True, "mtu": 9001, "nodePortMark": "0x2000",
        "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.5/24"}]}},
    "cnivpc.plugins.ipam.model:IpamConf": {
        "cniVersion": "1.0.0", "name": "n", "type": "cnivpc-ipam", "subnetTags": {"a": "b"},
        "secGroupIds": ["sg-1"], "routeToCidrs": ["10.1.2.3/16"], "warmIPTarget": "3",
        "ipv6": "yes", "ipv4": False, "egressIPv4Range": "169.254.172.5/22",
        "runtimeConfig": {"ips": ["10.0.0.9"]}, "extraKey": {"x": 1}},
}


@pytest.mark.parametrize("key", sorted(VALID))
def test_valid_examples(key: str) -> None:
    same(key, VALID[key])
    core, ours = validators(key)
    assert ours.validate_python(VALID[key]).model_dump() == \
        core.validate_python(VALID[key]).model_dump()


def test_the_error_reads_like_pydantic_cores() -> None:
    key = "cnivpc.plugins.ptp.model:PtpConf"
    bad = {"cniVersion": "1.0.0", "name": "n", "mtu": "big"}
    core, ours = validators(key)
    with pytest.raises(CoreError) as want:
        core.validate_python(bad)
    with pytest.raises(pyvalidate.ValidationError) as got:
        ours.validate_python(bad)
    assert str(got.value) == str(want.value).split("\n    For further")[0].replace(
        "\n    For further", "") or str(got.value).splitlines()[0] == \
        str(want.value).splitlines()[0]
    assert isinstance(got.value, ValueError)
