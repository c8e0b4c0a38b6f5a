"""Frozen records for the plugin path: what ``@dataclass(frozen=True)`` gives the IPAM's and the
metadata's value classes (keyword or positional construction, defaults, immutability, equality
by class and fields, a hash, the same repr, ``replace``), without importing ``dataclasses``.

Why: ``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``), and
``@dataclass`` builds each class's methods by compiling generated source at import: ~25 classes
on the IPAM's warm path cost it ~20 ms of CPU per exec, for records that only hold values.
``Record`` reads the fields from the class annotations once per class (``__init_subclass__``)
and runs generic methods; a type checker sees a frozen dataclass (``dataclass_transform``).
Not for hot loops over thousands of objects (the generic ``__init__`` is slower per instance
than a generated one); none of the warm path's are.

Stdlib only; imports nothing of cnivpc.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_kwargs: Any) -> Any:
        return lambda cls: cls

R = TypeVar("R", bound="Record")
_MISSING = object()


@dataclass_transform(frozen_default=True)
class Record:
    """Subclass with annotated fields (defaults as class attributes, after the fields
    without one), as a frozen dataclass is declared."""

    __fields__: ClassVar[tuple[str, ...]] = ()
    __defaults__: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names: list[str] = list(cls.__fields__)
        for name, hint in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063 - inspect is what this avoids
            # Annotations are strings (``from __future__ import annotations``).
            if str(hint).startswith(("ClassVar", "typing.ClassVar")) or name in names:
                continue
            names.append(name)
        defaults = {n: getattr(cls, n) for n in names if hasattr(cls, n)}
        seen_default = False
        for name in names:
            if name in defaults:
                seen_default = True
            elif seen_default:
                raise TypeError(f"{cls.__name__}: field {name} without a default follows one "
                                "with a default")
        cls.__fields__ = tuple(names)
        cls.__defaults__ = defaults
        type.__setattr__(cls, "__match_args__", tuple(names))  # case Cls(a, b) patterns

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = self.__fields__
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__}() takes {len(fields)} positional "
                            f"arguments but {len(args)} were given")
        values = dict(zip(fields, args, strict=False))  # fewer args: the rest by keyword
        for name, value in kwargs.items():
            if name not in fields:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument "
                                f"'{name}'")
            if name in values:
                raise TypeError(f"{type(self).__name__}() got multiple values for argument "
                                f"'{name}'")
            values[name] = value
        setter = object.__setattr__
        for name in fields:
            value = values.get(name, _MISSING)
            if value is _MISSING:
                value = self.__defaults__.get(name, _MISSING)
                if value is _MISSING:
                    raise TypeError(f"{type(self).__name__}() missing required argument: "
                                    f"'{name}'")
            setter(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field '{name}' of frozen "
                             f"{type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field '{name}' of frozen {type(self).__name__}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__fields__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__fields__)
        return f"{type(self).__qualname__}({inner})"


def replace(record: R, **changes: Any) -> R:
    """A copy of ``record`` with ``changes`` (``dataclasses.replace``)."""
    values = {name: getattr(record, name) for name in record.__fields__}
    for name in changes:
        if name not in values:
            raise TypeError(f"{type(record).__name__} has no field '{name}'")
    values.update(changes)
    return type(record)(**values)
