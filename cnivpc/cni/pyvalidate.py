"""A validator for the generated core schemas (``cni.schemas``, ``plugins.schemas``) in pure
Python: what ``pydantic_core.SchemaValidator`` does with them, for the subset of schema types
cnivpc's models use, with the same results and the same errors (type, location, message, input).

Why: importing pydantic_core's extension costs a plugin exec ~5 ms of CPU on a host and ~330 ms
in user-mode-linux, where page faults are dear (it maps and relocates a multi-megabyte shared
object), while validating a config takes it well under a millisecond. The chained mode pays
that three times per pod. ``tests/unit/test_pyvalidate.py`` runs both validators on every
model over the hostile-input corpus and thousands of drawn inputs and requires identical
answers; a schema type outside the subset is refused when the validator is built, so a model
change that needs more fails that test and the build, never a pod.

Lax mode, as pydantic's defaults: ``"12"`` is an int, ``"yes"`` a bool, ``1.0`` an int; the
field ``strict`` flag is honoured where the models set it (bool).

Stdlib only; imports nothing of cnivpc.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

Loc = tuple[str | int, ...]


class ValidationError(ValueError):
    """pydantic_core's ``ValidationError`` as cnivpc reads it: ``errors()`` and ``str()``."""

    def __init__(self, title: str, errors: list[dict[str, Any]]) -> None:
        self.title = title
        self._errors = errors
        super().__init__(self._text())

    def errors(self, *, include_url: bool = True, include_context: bool = True,
               include_input: bool = True) -> list[dict[str, Any]]:
        out = []
        for e in self._errors:
            item = {k: v for k, v in e.items() if k != "ctx" or include_context}
            if not include_input:
                item.pop("input", None)
            out.append(item)
        return out

    def error_count(self) -> int:
        return len(self._errors)

    def _text(self) -> str:
        n = len(self._errors)
        lines = [f"{n} validation error{'' if n == 1 else 's'} for {self.title}"]
        for e in self._errors:
            if e["loc"]:
                lines.append(".".join(str(p) for p in e["loc"]))
            lines.append(f"  {e['msg']} [type={e['type']}, input_value={_repr(e['input'])}, "
                         f"input_type={type(e['input']).__name__}]")
        return "\n".join(lines)



# Defaults deepcopy would hand back as they are (atomic, immutable): no ``copy`` import for
# them (it also pulls in weakref and probes for Jython's org.python.core on every sys.path
# entry), which is every default of cnivpc's models but a few lists and dicts.
_ATOMIC = (type(None), str, int, float, bool, bytes)


def _copied(default: Any) -> Any:
    """``copy.deepcopy(default)``, as pydantic_core copies a field's default."""
    if type(default) in _ATOMIC:
        return default
    import copy

    return copy.deepcopy(default)


def _repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:49] + "..." + text[-48:]


class _Fail(Exception):
    """Errors found under one node (collected, then raised as one ValidationError)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__()
        self.errors = errors


_MISSING = object()
Node = Callable[[Any, Loc], Any]


def _error(kind: str, msg: str, value: Any, loc: Loc,
           ctx: dict[str, Any] | None = None) -> _Fail:
    item: dict[str, Any] = {"type": kind, "loc": loc, "msg": msg, "input": value}
    if ctx is not None:
        item["ctx"] = ctx
    return _Fail([item])


def _num(value: float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


# -- scalars ---------------------------------------------------------------------------------

def _str(schema: dict[str, Any]) -> Node:
    def run(value: Any, loc: Loc) -> Any:
        if type(value) is str:
            return value
        if isinstance(value, str):
            return str(value)
        raise _error("string_type", "Input should be a valid string", value, loc)
    return run


_INT_RE = re.compile(r"^\s*[+-]?([0-9]+(_[0-9]+)*)(\.0+)?\s*$")
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def _bounds(schema: dict[str, Any], value: Any, loc: Loc, given: Any = _MISSING) -> Any:
    """``value`` within the schema's bounds; an error names the input as given."""
    # pydantic_core's order (it matters for NaN, which fails every bound).
    for key, kind, words in (("le", "less_than_equal", "less than or equal to"),
                             ("lt", "less_than", "less than"),
                             ("ge", "greater_than_equal", "greater than or equal to"),
                             ("gt", "greater_than", "greater than")):
        if key not in schema:
            continue
        bound = schema[key]
        ok = {"gt": value > bound, "ge": value >= bound, "lt": value < bound,
              "le": value <= bound}[key]
        if not ok:
            raise _error(kind, f"Input should be {words} {_num(bound)}",
                         value if given is _MISSING else given, loc, {key: bound})
    return value


def _int(schema: dict[str, Any]) -> Node:
    def run(value: Any, loc: Loc) -> Any:
        if type(value) is int:
            return _bounds(schema, value, loc)
        if isinstance(value, bool):
            return _bounds(schema, int(value), loc, value)
        if isinstance(value, float):
            if math.isnan(value) or math.isinf(value):
                raise _error("finite_number", "Input should be a finite number", value, loc)
            if value != int(value):
                raise _error("int_from_float", "Input should be a valid integer, got a number "
                             "with a fractional part", value, loc)
            if not -2.0**63 <= value < 2.0**63:  # pydantic_core converts through an i64
                raise _error("int_parsing_size", "Unable to parse input string as an integer, "
                             "exceeded maximum size", value, loc)
            return _bounds(schema, int(value), loc, value)
        if isinstance(value, str):
            match = _INT_RE.match(value)
            if match is None or len(value) > 4300:
                raise _error("int_parsing", "Input should be a valid integer, unable to parse "
                             "string as an integer", value, loc)
            return _bounds(schema, int(value.strip().split(".")[0].replace("_", "")), loc, value)
        raise _error("int_type", "Input should be a valid integer", value, loc)
    return run


def _float(schema: dict[str, Any]) -> Node:
    def run(value: Any, loc: Loc) -> Any:
        if isinstance(value, (bool, int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                if not value.isascii():  # Python's float() reads other scripts' digits
                    raise ValueError(value)
                number = float(value.strip())
            except ValueError:
                raise _error("float_parsing", "Input should be a valid number, unable to parse "
                             "string as a number", value, loc) from None
        else:
            raise _error("float_type", "Input should be a valid number", value, loc)
        return _bounds(schema, number, loc, value)
    return run


def _bool(schema: dict[str, Any]) -> Node:
    strict = bool(schema.get("strict"))

    def run(value: Any, loc: Loc) -> Any:
        if isinstance(value, bool):
            return value
        if not strict:
            parsing = _error("bool_parsing", "Input should be a valid boolean, unable to "
                             "interpret input", value, loc)
            if isinstance(value, int):
                if value in (0, 1):
                    return bool(value)
                if -2**63 <= value < 2**63:
                    raise parsing
                raise _error("bool_type", "Input should be a valid boolean", value, loc)
            if isinstance(value, float):
                if value in (0.0, 1.0):
                    return bool(value)
                if math.isfinite(value) and value == int(value) and \
                        -2.0**63 <= value < 2.0**63:
                    raise parsing
            if isinstance(value, str):
                text = value.lower()  # not stripped: " yes " is refused
                if text in _TRUE:
                    return True
                if text in _FALSE:
                    return False
                raise parsing
        raise _error("bool_type", "Input should be a valid boolean", value, loc)
    return run


def _any(schema: dict[str, Any]) -> Node:
    return lambda value, loc: value


# -- containers and wrappers -----------------------------------------------------------------

def _list(schema: dict[str, Any]) -> Node:
    item = _build(schema["items_schema"])
    longest = schema.get("max_length")

    def run(value: Any, loc: Loc) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _error("list_type", "Input should be a valid list", value, loc)
        out: list[Any] = []
        errors: list[dict[str, Any]] = []
        for n, element in enumerate(value):
            try:
                out.append(item(element, (*loc, n)))
            except _Fail as fail:
                errors += fail.errors
        if errors:
            raise _Fail(errors)
        if longest is not None and len(out) > longest:
            raise _error("too_long", f"List should have at most {longest} item"
                         f"{'' if longest == 1 else 's'} after validation, not {len(out)}",
                         value, loc, {"field_type": "List", "max_length": longest,
                                      "actual_length": len(out)})
        return out
    return run


def _dict(schema: dict[str, Any]) -> Node:
    keys = _build(schema["keys_schema"])
    values = _build(schema["values_schema"])

    def run(value: Any, loc: Loc) -> Any:
        if not isinstance(value, dict):
            raise _error("dict_type", "Input should be a valid dictionary", value, loc)
        out: dict[Any, Any] = {}
        errors: list[dict[str, Any]] = []
        for k, v in value.items():
            try:
                key = keys(k, (*loc, k, "[key]"))
            except _Fail as fail:
                errors += fail.errors
                continue
            try:
                out[key] = values(v, (*loc, k))
            except _Fail as fail:
                errors += fail.errors
        if errors:
            raise _Fail(errors)
        return out
    return run


def _nullable(schema: dict[str, Any]) -> Node:
    inner = _build(schema["schema"])
    return lambda value, loc: None if value is None else inner(value, loc)


def _function(schema: dict[str, Any], before: bool) -> Node:
    function = schema["function"]
    if function.get("type") != "no-info":
        raise TypeError(f"unsupported function schema {function.get('type')!r}")
    call = function["function"]
    inner = _build(schema["schema"])

    def apply(value: Any, loc: Loc) -> Any:
        try:
            return call(value)
        except ValueError as exc:
            raise _error("value_error", f"Value error, {exc}", value, loc,
                         {"error": exc}) from None
        except AssertionError as exc:
            raise _error("assertion_error", f"Assertion failed, {exc}", value, loc,
                         {"error": exc}) from None

    if before:
        return lambda value, loc: inner(apply(value, loc), loc)
    return lambda value, loc: apply(inner(value, loc), loc)


def _model(schema: dict[str, Any]) -> Node:
    if schema.get("root_model") or schema.get("custom_init"):
        raise TypeError("root models and custom __init__ are not supported")
    cls = schema["cls"]
    config = schema.get("config", {})
    fields_schema = schema["schema"]
    if fields_schema.get("type") != "model-fields" or fields_schema.get("computed_fields"):
        raise TypeError("a model must hold plain model-fields")
    if config.get("extra_fields_behavior", "ignore") != "allow":
        raise TypeError("only extra='allow' models are supported")
    by_name = bool(config.get("validate_by_name"))
    title = config.get("title", getattr(cls, "__name__", "Model"))
    fields: list[tuple[str, str, Node, Any, Any]] = []
    for name, field in fields_schema["fields"].items():
        if field.get("type") != "model-field":
            raise TypeError(f"unsupported field schema {field.get('type')!r}")
        alias = field.get("validation_alias") or name
        if not isinstance(alias, str):
            raise TypeError("only plain string aliases are supported")
        inner = field["schema"]
        default, factory = _MISSING, None
        if inner.get("type") == "default":
            if inner.get("default_factory_takes_data"):
                raise TypeError("default factories taking data are not supported")
            default = inner.get("default", _MISSING)
            factory = inner.get("default_factory")
            inner = inner["schema"]
        fields.append((name, alias, _build(inner), default, factory))

    def run(value: Any, loc: Loc, instance: Any = None) -> Any:
        if isinstance(value, cls) and instance is None:
            return value
        if not isinstance(value, dict):
            raise _error("model_type", f"Input should be a valid dictionary or instance of "
                         f"{title}", value, loc, {"class_name": title})
        out: dict[str, Any] = {}
        fields_set: set[str] = set()
        used: set[str] = set()
        errors: list[dict[str, Any]] = []
        for name, alias, validate, default, factory in fields:
            if alias in value:
                key: str | None = alias
            elif by_name and name in value:
                key = name
            else:
                key = None
            if key is None:
                if factory is not None:
                    out[name] = factory()
                elif default is not _MISSING:
                    out[name] = _copied(default)
                else:
                    errors.append({"type": "missing", "loc": (*loc, alias),
                                   "msg": "Field required", "input": value})
                continue
            used.add(key)
            try:
                out[name] = validate(value[key], (*loc, key))
                fields_set.add(name)
            except _Fail as fail:
                errors += fail.errors
        if errors:
            raise _Fail(errors)
        # The keys no field took (a field's name beside its alias, too) are extra.
        extra = {k: v for k, v in value.items() if k not in used}
        fields_set.update(extra)  # as pydantic_core counts them
        new = instance if instance is not None else cls.__new__(cls)
        object.__setattr__(new, "__dict__", out)
        object.__setattr__(new, "__pydantic_extra__", extra)
        object.__setattr__(new, "__pydantic_fields_set__", fields_set)
        object.__setattr__(new, "__pydantic_private__", None)
        return new

    run.title = title  # type: ignore[attr-defined]
    return run


_BUILDERS: dict[str, Callable[[dict[str, Any]], Node]] = {
    "str": _str, "int": _int, "float": _float, "bool": _bool, "any": _any, "list": _list,
    "dict": _dict, "nullable": _nullable, "model": _model,
    "function-after": lambda s: _function(s, before=False),
    "function-before": lambda s: _function(s, before=True),
}
_SUPPORTED_KEYS = {
    "str": set(), "int": {"ge", "le", "gt", "lt"}, "float": {"ge", "le", "gt", "lt"},
    "bool": {"strict"}, "any": set(), "list": {"items_schema", "max_length"},
    "dict": {"keys_schema", "values_schema"}, "nullable": {"schema"},
    "model": {"cls", "config", "custom_init", "ref", "root_model", "schema"},
    "function-after": {"function", "schema"}, "function-before": {"function", "schema"},
}


def _build(schema: dict[str, Any]) -> Node:
    kind = schema.get("type")
    builder = _BUILDERS.get(kind)  # type: ignore[arg-type]
    unknown = set(schema) - {"type"} - _SUPPORTED_KEYS.get(kind, set())  # type: ignore[arg-type]
    if builder is None or unknown:
        raise TypeError(f"schema {kind!r} with {sorted(unknown)} is not supported by "
                        "cni.pyvalidate")
    return builder(schema)


class Validator:
    """``SchemaValidator(schema)`` for a model schema: ``validate_python(data,
    self_instance=...)``."""

    def __init__(self, schema: dict[str, Any]) -> None:
        if schema.get("type") != "model":
            raise TypeError("only model schemas are supported")
        self._run = _model(schema)
        self._title: str = self._run.title  # type: ignore[attr-defined]

    def validate_python(self, data: Any, *, self_instance: Any = None) -> Any:
        try:
            return self._run(data, (), self_instance)  # type: ignore[call-arg]
        except _Fail as fail:
            raise ValidationError(self._title, fail.errors) from None
