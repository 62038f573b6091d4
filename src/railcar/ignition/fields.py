"""Checked conversion of YAML values, one small converter per kind of value.

A converter takes the raw value and its YAML path (``storage.files[2].mode``) and returns the
Ignition value or raises :class:`ConfigSchemaError` naming that path. :func:`mapping` builds the
converter for an object from a table of Butane field names → :class:`Field`, so each section of
the config is declared once, as data, in :mod:`railcar.ignition.translate`.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from railcar.ignition.errors import ConfigSchemaError

Converter = Callable[[object, str], Any]


def child(path: str, key: str | int) -> str:
    """The YAML path of a mapping key (``a.b``) or a list index (``a[2]``)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def describe(value: object) -> str:
    """How a value reads in an error: strings quoted, containers by kind."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime.date):
        return f"the date {value.isoformat()}"
    return f"a {type(value).__name__}"


def expected(path: str, what: str, value: object) -> ConfigSchemaError:
    return ConfigSchemaError(path, f"expected {what}, got {describe(value)}")


def string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise expected(path, "a string", value)
    return value


def non_empty_string(value: object, path: str) -> str:
    text = string(value, path)
    if not text:
        raise ConfigSchemaError(path, "must not be empty")
    return text


def absolute_path(value: object, path: str) -> str:
    text = string(value, path)
    if not text.startswith("/"):
        raise ConfigSchemaError(path, f"expected an absolute path, got {describe(text)}")
    return text


def integer(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise expected(path, "an integer", value)
    return value


def non_negative(value: object, path: str) -> int:
    number = integer(value, path)
    if number < 0:
        raise ConfigSchemaError(path, f"expected an integer ≥ 0, got {number}")
    return number


def boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise expected(path, "true or false", value)
    return value


def sequence(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise expected(path, "a list", value)
    return value


def list_of(item: Converter) -> Converter:
    def convert(value: object, path: str) -> list[Any]:
        return [item(v, child(path, i)) for i, v in enumerate(sequence(value, path))]

    return convert


def dictionary(value: object, path: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise expected(path, "a mapping", value)
    for key in value:
        if not isinstance(key, str):
            raise ConfigSchemaError(path, f"keys must be strings, got {describe(key)}")
    return value


@dataclass(frozen=True)
class Field:
    """One Butane key: its Ignition name, how its value is checked, whether it must be set."""

    ignition: str
    convert: Converter
    required: bool = False


def mapping(fields: Mapping[str, Field]) -> Converter:
    """A converter for an object whose Butane keys are ``fields``; unknown keys are errors."""

    def convert(value: object, path: str) -> dict[str, Any]:
        raw = dictionary(value, path)
        check_keys(raw, path, fields)
        out: dict[str, Any] = {}
        for key, field in fields.items():
            if key in raw and raw[key] is not None:
                out[field.ignition] = field.convert(raw[key], child(path, key))
            elif field.required:
                raise ConfigSchemaError(child(path, key), "is required")
        return out

    return convert


def check_keys(raw: Mapping[str, object], path: str, known: Mapping[str, object]) -> None:
    for key in raw:
        if key not in known:
            choices = ", ".join(known)
            raise ConfigSchemaError(child(path, key), f"unknown key; expected one of {choices}")
