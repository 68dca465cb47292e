"""Checks against the vendors' own SDK types, shared by the contract tests.

Two directions (issue 12, "Contract tests against the vendors' own SDK types"):

* **What we send** must be accepted by the SDK's request model *and* be fully understood by it:
  :func:`assert_model_accepts` validates a JSON object with a pydantic model, then requires that
  no key was unknown to the model (the SDK models allow or ignore extra keys, so validation
  alone would pass a misspelt field) and that the model's own dump gives the same JSON back.
  :func:`assert_typeddict_accepts` does the same for Stainless ``TypedDict`` params (Telnyx),
  translating ``PropertyInfo`` aliases (``from_`` -> ``"from"``).
* **What we receive**: :func:`sdk_variants` builds, with the SDK model itself, the JSON of a
  server message four ways: every optional field absent; every optional field ``null``; every
  optional object present but each of *its* optional fields ``null`` (an alignment whose lists
  are null, say); and every field present (a sample value per type). The decoders under test
  must take all four.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter

Variant = Literal["absent", "null", "inner_null", "full"]
VARIANTS: tuple[Variant, ...] = ("absent", "null", "inner_null", "full")


# --------------------------------------------------------------------------- what we send


def _field_key(name: str, info: Any) -> str:
    return info.alias or name


def _extras(model: BaseModel, path: str = "$") -> Iterator[str]:
    """Keys of a validated model (and nested models) that its class does not declare."""
    for key in (model.model_extra or {}).keys():
        yield f"{path}.{key}"
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        yield from _extras_in(value, f"{path}.{name}")


def _extras_in(value: object, path: str) -> Iterator[str]:
    if isinstance(value, BaseModel):
        yield from _extras(value, path)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _extras_in(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _extras_in(item, f"{path}.{key}")


def assert_model_accepts(model: type[BaseModel], payload: Mapping[str, Any]) -> BaseModel:
    """``payload`` (a JSON object we send) is valid for ``model`` and every key is one it knows.

    Returns:
        The validated model.

    Raises:
        AssertionError: unknown keys, or the model's dump differs from ``payload``.
        pydantic.ValidationError: the model refuses a value.
    """
    validated = model.model_validate(dict(payload))
    unknown = list(_extras(validated))
    assert not unknown, f"{model.__name__} does not know {unknown} in {dict(payload)}"
    dumped = validated.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert dumped == dict(payload), f"{model.__name__} reads {dict(payload)} as {dumped}"
    return validated


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated/Required/NotRequired/ReadOnly wrappers."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin is not None and getattr(origin, "_name", None) in ("Required", "NotRequired", "ReadOnly"):
            annotation = typing.get_args(annotation)[0]
        elif str(origin).endswith(("Required", "NotRequired", "ReadOnly")):
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation


def _alias(annotation: Any) -> str | None:
    """The ``PropertyInfo(alias=...)`` of an annotated TypedDict key, if any."""
    if typing.get_origin(annotation) is typing.Annotated:
        for meta in typing.get_args(annotation)[1:]:
            alias = getattr(meta, "alias", None)
            if isinstance(alias, str):
                return alias
        return _alias(typing.get_args(annotation)[0])
    args = typing.get_args(annotation)
    if args and str(typing.get_origin(annotation)).endswith(("Required", "NotRequired", "ReadOnly")):
        return _alias(args[0])
    return None


def _typeddicts_in(annotation: Any) -> list[type]:
    """TypedDict classes an annotation may hold directly or as list/iterable items."""
    annotation = _unwrap(annotation)
    if typing.is_typeddict(annotation):
        return [annotation]
    found: list[type] = []
    for arg in typing.get_args(annotation):
        found += _typeddicts_in(arg)
    return found


def _to_python_keys(td: type, payload: Mapping[str, Any], path: str) -> dict[str, Any]:
    hints = typing.get_type_hints(td, include_extras=True)
    by_wire = {(_alias(hint) or name): name for name, hint in hints.items()}
    unknown = [f"{path}.{key}" for key in payload if key not in by_wire]
    assert not unknown, f"{td.__name__} does not know {unknown}"
    out: dict[str, Any] = {}
    for wire, value in payload.items():
        name = by_wire[wire]
        inner = _typeddicts_in(hints[name])
        if inner and isinstance(value, Mapping):
            value = _to_python_keys(inner[0], value, f"{path}.{wire}")
        elif inner and isinstance(value, list):
            value = [
                _to_python_keys(inner[0], v, f"{path}.{wire}[{i}]") if isinstance(v, Mapping) else v
                for i, v in enumerate(value)
            ]
        out[name] = value
    return out


def _force(value: object) -> object:
    """Consume pydantic's lazy iterables (``Iterable[...]`` validates item by item)."""
    if isinstance(value, dict):
        return {k: _force(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_force(v) for v in value]
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return [_force(v) for v in value]
    return value


def assert_typeddict_accepts(td: type, payload: Mapping[str, Any]) -> None:
    """``payload`` (a JSON body we send) fits a Stainless ``TypedDict`` params type.

    Every key must be declared (by its wire alias), every required key present, every value
    valid for its annotation (Literals included), recursively.
    """
    python = _to_python_keys(td, payload, "$")
    hints = typing.get_type_hints(td, include_extras=True)
    required = {k for k, hint in hints.items() if str(typing.get_origin(hint)).endswith("Required")}
    required -= {k for k, hint in hints.items() if str(typing.get_origin(hint)).endswith("NotRequired")}
    missing = sorted((required | set(getattr(td, "__required_keys__", set()))) - set(python))
    assert not missing, f"{td.__name__} requires {missing}"
    validated = TypeAdapter(td).validate_python(python)
    _force(validated)


# --------------------------------------------------------------------------- what we receive


def _is_optional(info: Any) -> bool:
    return not info.is_required()


def _holds_model(annotation: Any) -> bool:
    """The annotation is (or holds, as an optional or a list) a pydantic model."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_model(arg) for arg in typing.get_args(annotation))


def _allows_none(annotation: Any) -> bool:
    annotation = _unwrap(annotation)
    return annotation is None or type(None) in typing.get_args(annotation)


def _sample(annotation: Any, variant: Variant, overrides: Mapping[str, Any], name: str) -> Any:
    """A JSON value of ``annotation`` (required fields get one in every variant)."""
    if name in overrides:
        return overrides[name]
    annotation = _unwrap(annotation)
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return _sample(args[0], variant, overrides, name)
    if origin is Literal:
        value = typing.get_args(annotation)[0]
        return value.value if isinstance(value, enum.Enum) else value
    if (
        origin in (list, Iterable, tuple)
        or origin is not None
        and str(origin).endswith(("Sequence", "Iterable"))
    ):
        return [_sample(args[0], variant, overrides, name)] if args else []
    if origin is dict or origin is not None and str(origin).endswith("Mapping"):
        return {"key": _sample(args[1], variant, overrides, name)} if len(args) == 2 else {}
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return build(annotation, variant, overrides)
        if issubclass(annotation, enum.Enum):
            return next(iter(annotation)).value
        if issubclass(annotation, bool):
            return True
        if issubclass(annotation, int):
            return 1
        if issubclass(annotation, float):
            return 1.0
        if issubclass(annotation, str):
            return "x"
        if issubclass(annotation, datetime):
            return datetime(2026, 11, 24, 12, 0, tzinfo=UTC).isoformat()
        if issubclass(annotation, date):
            return "2026-11-24"
    return "x"  # Any/object


def build(
    model: type[BaseModel], variant: Variant, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON object of ``model`` for one variant (see the module docstring); keys by alias.

    ``overrides`` gives the value of a field by name or alias wherever it occurs (a base64
    ``audio``, say), in every variant.
    """
    overrides = overrides or {}
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = _field_key(name, info)
        given = key in overrides or name in overrides
        if _is_optional(info) and not given:
            if variant == "absent":
                continue
            if variant == "null" or variant == "inner_null" and not _holds_model(info.annotation):
                if _allows_none(info.annotation):
                    out[key] = None
                continue
        value = (
            overrides.get(key, overrides.get(name))
            if given
            else _sample(info.annotation, variant, overrides, key)
        )
        out[key] = value
    return out


def sdk_variants(
    model: type[BaseModel], overrides: Mapping[str, Any] | None = None
) -> Iterator[tuple[Variant, dict[str, Any]]]:
    """Each variant's JSON, built by the SDK model itself (validated and dumped by it)."""
    for variant in VARIANTS:
        raw = build(model, variant, overrides)
        made = model.model_validate(raw)
        yield variant, made.model_dump(mode="json", by_alias=True, exclude_unset=True)


__all__ = [
    "VARIANTS",
    "Variant",
    "assert_model_accepts",
    "assert_typeddict_accepts",
    "build",
    "sdk_variants",
]
