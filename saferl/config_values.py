"""Checking a config value against its dataclass field's annotation (used by saferl/config.py's merge)."""

from __future__ import annotations

import math
import types
import typing

from saferl.errors import SafeRLError


def coerce(value, annotation, key: str):
    """Check `value` against a field annotation; ints and numeric strings are accepted for floats."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, key)
            except SafeRLError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise SafeRLError(f"config key '{key}' must be a list, got {value!r}")
        return [coerce(v, item_type, key) for v in value]
    if annotation is bool:
        if not isinstance(value, bool):
            raise SafeRLError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise SafeRLError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SafeRLError(f"config key '{key}' must be a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range
            number = math.inf
        if not math.isfinite(number):  # inf passes every `> 0` check, and NaN fails no `not <` one
            raise SafeRLError(f"config key '{key}' must be a finite number, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise SafeRLError(f"config key '{key}' must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation} for {key}")
