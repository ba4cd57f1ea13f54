"""Runtime of the generated response types: attribute access over Warden's JSON.

Parsing is deliberately lenient. Warden adds fields (e.g. `logs` and `approval` on
`execute_tool` results) and enum values before every client upgrades, so unknown fields are
kept, readable as attributes and returned by `to_dict()`, and a value of an unexpected shape
is kept as it came rather than raising: a newer server never breaks an older SDK.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Generic, Literal, TypeVar, Union, get_args, get_origin, overload

_T = TypeVar("_T")
_M = TypeVar("_M", bound="WardenModel")

REDACTED = "[redacted]"

# Field names that carry credentials (the service's logger redacts the same names,
# SECRET_FIELD_NAMES in libs/core/src/logger.ts) plus `headers`, which holds an
# Authorization header in an MCP token's cursor_config. A repr never shows their values.
SECRET_FIELDS = frozenset(
    {
        "authorization",
        "api_token",
        "apitoken",
        "api_key",
        "apikey",
        "token",
        "secret",
        "password",
        "credential",
        "credentials",
        "x-auth-key",
        "x-auth-email",
        "cookie",
        "set-cookie",
        "plaintext",
        "datakey",
        "headers",
    }
)


def redact(value: Any) -> Any:
    """A copy of JSON `value` with the values of credential-bearing keys replaced, at any depth."""
    if isinstance(value, Mapping):
        return {
            k: REDACTED if str(k).lower() in SECRET_FIELDS else redact(v)
            for k, v in typing.cast(Mapping[Any, Any], value).items()
        }
    if isinstance(value, list):
        return [redact(v) for v in typing.cast(list[Any], value)]
    return value


@dataclasses.dataclass(frozen=True)
class _Field:
    attr: str
    key: str
    type: Any


@functools.lru_cache(maxsize=None)
def _fields(cls: type) -> tuple[_Field, ...]:
    if not dataclasses.is_dataclass(cls):
        return ()
    hints = typing.get_type_hints(cls)
    return tuple(
        _Field(f.name, str(f.metadata.get("json", f.name)), hints[f.name]) for f in dataclasses.fields(cls)
    )


@functools.lru_cache(maxsize=None)
def _consts(cls: type) -> dict[str, Any]:
    """The fields fixed to one value (`type: "api_token"`): what tells union variants apart."""
    return {
        f.key: get_args(f.type)[0]
        for f in _fields(cls)
        if get_origin(f.type) is Literal and len(get_args(f.type)) == 1
    }


def _accepts(tp: Any, value: Any) -> bool:
    origin = get_origin(tp)
    if origin is Literal:
        return value in get_args(tp)
    if origin is list:
        return isinstance(value, list)
    if origin is dict:
        return isinstance(value, Mapping)
    if isinstance(tp, type):
        if issubclass(tp, WardenModel):
            return isinstance(value, Mapping) and all(
                typing.cast(Mapping[str, Any], value).get(k) == v for k, v in _consts(tp).items()
            )
        if tp is float:
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        return isinstance(value, tp)
    return False


def _convert(tp: Any, value: Any) -> Any:
    """JSON `value` as annotation `tp` says: objects become models, recursively."""
    if value is None or tp is Any:
        return value
    origin = get_origin(tp)
    if origin is None:
        if isinstance(tp, type) and issubclass(tp, WardenModel) and isinstance(value, Mapping):
            return tp.from_json(typing.cast(Mapping[str, Any], value))
        return value
    args = get_args(tp)
    if origin is list and isinstance(value, list):
        return [_convert(args[0], v) for v in typing.cast(list[Any], value)]
    if origin is dict and isinstance(value, Mapping):
        return {k: _convert(args[1], v) for k, v in typing.cast(Mapping[str, Any], value).items()}
    if origin is Union or origin is types.UnionType:
        chosen = next((a for a in args if a is not type(None) and _accepts(a, value)), Any)
        return _convert(chosen, value)
    # A Literal keeps values this SDK does not know yet; other shapes are kept as they came.
    return value


def _wrap(value: Any) -> Any:
    """An undeclared JSON value: objects get attribute access, the rest stays as it is."""
    if isinstance(value, Mapping):
        return JsonObject.from_json(typing.cast(Mapping[str, Any], value))
    if isinstance(value, list):
        return [_wrap(v) for v in typing.cast(list[Any], value)]
    return value


def _to_json(value: Any) -> Any:
    if isinstance(value, WardenModel):
        return value.to_dict()
    if isinstance(value, list):
        return [_to_json(v) for v in typing.cast(list[Any], value)]
    if isinstance(value, Mapping):
        return {k: _to_json(v) for k, v in typing.cast(Mapping[str, Any], value).items()}
    return value


class WardenModel:
    """Base of Warden's response types.

    Declared fields are attributes (typed). Fields Warden sent that this version of the SDK
    does not declare are kept: readable as attributes too (`result.logs`), listed by
    `extra_fields()`, and included in `to_dict()`, which returns the JSON as received.
    """

    @classmethod
    def from_json(cls: type[_M], value: Mapping[str, Any]) -> _M:
        if not isinstance(value, Mapping):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"{cls.__name__}: expected a JSON object, got {type(value).__name__}")
        instance = cls(**{f.attr: _convert(f.type, value.get(f.key)) for f in _fields(cls)})
        # Frozen dataclasses refuse setattr; this is the one attribute set after __init__.
        object.__setattr__(instance, "_warden_json", dict(value))
        return instance

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (a deep copy), including fields this SDK does not declare."""
        raw: dict[str, Any] | None = self.__dict__.get("_warden_json")
        if raw is not None:
            return copy.deepcopy(raw)
        return {f.key: _to_json(getattr(self, f.attr)) for f in _fields(type(self))}

    def extra_fields(self) -> dict[str, Any]:
        """The fields Warden sent that this version of the SDK does not declare."""
        raw: dict[str, Any] = self.__dict__.get("_warden_json") or {}
        known = {f.key for f in _fields(type(self))}
        return {k: _wrap(v) for k, v in raw.items() if k not in known}

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: declared fields never come here.
        if name.startswith("_"):
            raise AttributeError(name)
        raw: dict[str, Any] | None = self.__dict__.get("_warden_json")
        if raw is not None and name in raw:
            return _wrap(raw[name])
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __repr__(self) -> str:
        parts = [
            f"{f.attr}={REDACTED!r}"
            if f.key.lower() in SECRET_FIELDS and getattr(self, f.attr) is not None
            else f"{f.attr}={redact(_to_json(getattr(self, f.attr)))!r}"
            for f in _fields(type(self))
        ]
        extra = self.extra_fields()
        if extra:
            parts.append(f"extra_fields={redact(_to_json(extra))!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class JsonObject(WardenModel):
    """A JSON object the SDK declares no type for: read it by attribute or by key."""

    def __getitem__(self, key: str) -> Any:
        return _wrap(self.__dict__["_warden_json"][key])

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__["_warden_json"]

    def keys(self) -> list[str]:
        return list(self.__dict__["_warden_json"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonObject) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable JSON inside

    def __repr__(self) -> str:
        return f"JsonObject({redact(self.__dict__['_warden_json'])!r})"


class WardenPage(WardenModel, Generic[_T]):
    """One page of a listing. It is a sequence of its items (`page[0]`, `len(page)`,
    `for item in page`); the items are also the named field (`page.tools`), and
    `next_page_token` is None on the last page."""

    _warden_items_field: ClassVar[str] = ""

    def __init_subclass__(cls, items_field: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if items_field is not None:
            cls._warden_items_field = items_field

    def _warden_items(self) -> list[_T]:
        return getattr(self, self._warden_items_field)

    def __iter__(self) -> Iterator[_T]:
        return iter(self._warden_items())

    def __len__(self) -> int:
        return len(self._warden_items())

    @overload
    def __getitem__(self, index: int) -> _T: ...

    @overload
    def __getitem__(self, index: slice) -> list[_T]: ...

    def __getitem__(self, index: int | slice) -> _T | list[_T]:
        return self._warden_items()[index]
