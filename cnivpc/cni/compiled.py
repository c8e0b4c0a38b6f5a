"""Model classes compiled from generated core schemas: the pydantic models' validation and
serialization without ``pydantic``'s Python layer (it and the creation of every model class
cost ~55 ms of CPU per exec, the validation itself 0.3 ms), and without pydantic_core's
extension on the plugin path either: ``cni.pyvalidate`` runs the same schemas in Python with
the same answers (loading the extension costs ~330 ms of CPU per exec in user-mode-linux).

The pydantic declarations stay the one source of truth (``cni.types`` and each plugin's config
model): ``build/schemas.py`` (``./build/dev schemas``) writes their core schemas as data into
generated modules (``cni/schemas.py``, ``plugins/schemas.py``), and a unit test fails when
those are not current. In that data a model class is ``{"$model": "module:Name"}`` (the
pydantic source's name) and a function a field runs is ``{"$call": "module:name"}``: a
module-level function of a module that does not import pydantic (``cni.wire`` and the
plugins' config modules hold them, and the pydantic declarations name the same functions).

``model(models, key)`` returns the class compiled for the pydantic model ``key``: a plain
class carrying the source's pydantic-free base classes (its methods: ``cni.wire``) and the
part of the ``BaseModel`` API cnivpc uses: keyword construction (validated), ``model_validate``,
``model_dump``, ``model_copy`` and ``model_fields`` (alias, required). The same key always
gives the same class, so nested models validate as the same instances. Its schema is resolved
and its validator built on first use. Validation errors are ``cni.pyvalidate``'s
``ValidationError`` (a ``ValueError``, read as pydantic_core's: the same types, locations (the
wire keys), messages and inputs; tests/unit/test_pyvalidate.py holds them to it).

Imports ``cni.pyvalidate`` and the stdlib; pydantic_core only for ``model_dump`` with options
beyond the three cnivpc uses. The modules the data names are imported on first validation.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, ClassVar

from .pyvalidate import Validator

if TYPE_CHECKING:
    from pydantic_core import SchemaSerializer

_entries: dict[str, dict[str, Any]] = {}
_classes: dict[str, type[Compiled]] = {}


class FieldInfo:
    """What ``model_fields`` tells of a field: its wire alias and whether it is required."""

    __slots__ = ("alias", "required")

    def __init__(self, alias: str | None, required: bool) -> None:
        self.alias = alias
        self.required = required

    def is_required(self) -> bool:
        return self.required


class Compiled:
    """Base of every compiled model. The slots are the ones pydantic_core fills in when it
    builds an instance (as on ``BaseModel``): the fields in ``__dict__``, unknown keys in
    ``__pydantic_extra__`` (the configs allow them), the keys given in
    ``__pydantic_fields_set__``."""

    __slots__ = (
        "__dict__",
        "__pydantic_extra__",
        "__pydantic_fields_set__",
        "__pydantic_private__",
    )
    model_fields: ClassVar[dict[str, FieldInfo]] = {}
    _key: ClassVar[str] = ""
    _schema_validator: ClassVar[Validator | None] = None
    _schema_serializer: ClassVar[SchemaSerializer | None] = None

    def __init__(self, **data: Any) -> None:
        type(self)._validator().validate_python(data, self_instance=self)

    @classmethod
    def _validator(cls) -> Validator:
        validator = cls.__dict__.get("_schema_validator")
        if validator is None:
            validator = Validator(_schema(cls._key))
            cls._schema_validator = validator
        return validator

    @classmethod
    def _serializer(cls) -> SchemaSerializer:
        serializer = cls.__dict__.get("_schema_serializer")
        if serializer is None:
            from pydantic_core import SchemaSerializer  # never on the plugin path

            serializer = SchemaSerializer(_schema(cls._key))
            cls._schema_serializer = serializer
        return serializer

    @classmethod
    def model_validate(cls, obj: Any) -> Any:
        return cls._validator().validate_python(obj)

    def model_dump(self, *, by_alias: bool = False, exclude_none: bool = False,
                   mode: str = "python", **kwargs: Any) -> Any:
        """``BaseModel.model_dump``. The common case (no options beyond these three) is done
        here from the fields, not by pydantic_core's serializer: its first use imports
        decimal, fractions, uuid, numbers and platform (~5 ms per exec) to recognise values
        that never occur in a model validated from JSON. tests/unit/test_compiled_models.py
        compares both with pydantic's."""
        if kwargs:
            return type(self)._serializer().to_python(
                self, by_alias=by_alias, exclude_none=exclude_none, mode=mode, **kwargs)
        return _dump(self, by_alias, exclude_none, mode == "json")

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Any:
        """A copy, ``update`` applied without validation (as ``BaseModel.model_copy``)."""
        cls = type(self)
        new = cls.__new__(cls)
        fields = dict(self.__dict__)
        extra = self.__pydantic_extra__
        extra = None if extra is None else dict(extra)
        if deep:
            import copy  # only model_copy(deep=True) needs it, and no plugin path calls that

            fields, extra = copy.deepcopy(fields), copy.deepcopy(extra)
        fields_set = set(self.__pydantic_fields_set__)
        for key, value in (update or {}).items():
            if key in cls.model_fields or extra is None:
                fields[key] = value
                fields_set.add(key)
            else:
                extra[key] = value
        object.__setattr__(new, "__dict__", fields)
        object.__setattr__(new, "__pydantic_extra__", extra)
        object.__setattr__(new, "__pydantic_fields_set__", fields_set)
        object.__setattr__(new, "__pydantic_private__", None)
        return new

    def __getattr__(self, name: str) -> Any:
        # Unknown config keys, as pydantic exposes them; never the slots themselves.
        if not name.startswith("__"):
            try:
                extra = object.__getattribute__(self, "__pydantic_extra__")
            except AttributeError:
                extra = None
            if extra and name in extra:
                return extra[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return bool(self.__dict__ == other.__dict__
                    and self.__pydantic_extra__ == other.__pydantic_extra__)

    __hash__ = None  # type: ignore[assignment]  # mutable, as pydantic's models

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({fields})"


def _dump(value: Any, by_alias: bool, exclude_none: bool, json: bool) -> Any:
    if isinstance(value, Compiled):
        out: dict[Any, Any] = {}
        fields = value.__dict__
        for name, info in type(value).model_fields.items():
            item = fields[name]
            if item is None and exclude_none:
                continue
            key = info.alias if by_alias and info.alias else name
            out[key] = _dump(item, by_alias, exclude_none, json)
        for key, item in (value.__pydantic_extra__ or {}).items():
            if item is None and exclude_none:
                continue
            out[key] = _dump(item, by_alias, exclude_none, json)
        return out
    if isinstance(value, dict):
        return {k: _dump(v, by_alias, exclude_none, json) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and (json or type(value) is list):
        return [_dump(v, by_alias, exclude_none, json) for v in value]
    if json and isinstance(value, float) and value - value != 0:
        return None  # inf and nan: pydantic's JSON mode writes null
    return value


def model(models: dict[str, dict[str, Any]], key: str) -> Any:
    """The class compiled for the pydantic model ``key`` (``"module:Name"``), ``models`` being
    a generated module's ``MODELS`` (it carries every model ``key`` refers to)."""
    for other, entry in models.items():
        _entries.setdefault(other, entry)
    return _class(key)


def _class(key: str) -> type[Compiled]:
    cls = _classes.get(key)
    if cls is not None:
        return cls
    # A model missing from the data (not generated yet: build/schemas.py imports this module)
    # gets a class that fails on first use.
    entry = _entries.get(key) or {"name": key.partition(":")[2], "bases": [], "fields": {}}
    bases = tuple(_import(name) for name in entry["bases"])
    cls = type(entry["name"], (*bases, Compiled), {
        "__module__": key.partition(":")[0], "__qualname__": entry["name"], "__slots__": (),
        "_key": key,
        "model_fields": {name: FieldInfo(alias, required)
                         for name, (alias, required) in entry["fields"].items()}})
    _classes[key] = cls
    return cls


def _schema(key: str) -> Any:
    if key not in _entries:
        raise LookupError(f"no generated schema for {key}: run ./build/dev schemas")
    return _resolve(_entries[key]["schema"])


def _resolve(node: Any) -> Any:
    if isinstance(node, dict):
        if len(node) == 1:
            if "$model" in node:
                return _class(node["$model"])
            if "$call" in node:
                return _import(node["$call"])
        return {k: _resolve(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v) for v in node]
    return node


def _import(name: str) -> Any:
    module, _, qualname = name.partition(":")
    value: Any = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value
