"""Sanitising records: clamp, truncate or stringify bad values instead of refusing them.

Runs on the background thread for records built by the SDK (trusted: only text is checked)
and on the caller's thread for records built or touched by user code (every field is
checked, by kind, as the record class's field table declares it).
"""

import math
from operator import attrgetter
from typing import Any, Dict, Mapping, Tuple

from ._fields import COUNT, FLAG, FLOAT, NAME, OPT_FLAG, RATIO, TEXT, Scalar
from .models import BaseMetrics

_INF = math.inf


def _clean_number(value: Any, kind: str) -> Tuple[Any, bool]:
    """Return (clean value, changed) for a numeric field."""
    if value is None:
        return None, False
    if type(value) is bool or not isinstance(value, (int, float)):
        return None, True
    if isinstance(value, float) and not math.isfinite(value):
        return None, True
    if kind == COUNT:
        if type(value) is not int:
            value, changed = int(value), True
        else:
            changed = False
        if value < 0:
            return 0, True
        return value, changed
    if kind == RATIO:
        if value < 0:
            return 0.0, True
        if value > 1:
            return 1.0, True
        return value, False
    if value < 0:
        return 0.0, True
    return value, False


def _clean_text(value: Any, kind: str, max_length: int) -> Tuple[Any, bool]:
    if value is None:
        return ("unknown", True) if kind == NAME else (None, False)
    changed = False
    if type(value) is not str:
        try:
            value = str(value)
        except Exception:
            value = f"<unprintable {type(value).__name__}>"
        changed = True
    if len(value) > max_length:
        return value[:max_length], True
    return value, changed


def _clean_attributes(attrs: Any, max_attributes: int, max_length: int) -> Tuple[Dict, bool]:
    if type(attrs) is not dict and not isinstance(attrs, Mapping):  # the ABC check is slow
        return {}, True
    changed = len(attrs) > max_attributes
    out: Dict[str, Scalar] = {}
    for key, value in attrs.items():
        if len(out) >= max_attributes:
            break
        if type(key) is not str:
            key, changed = str(key), True
        if len(key) > max_length:
            key, changed = key[:max_length], True
        kind = type(value)
        if kind is str:
            if len(value) > max_length:
                value, changed = value[:max_length], True
        elif kind is float:
            if not math.isfinite(value):
                value, changed = str(value), True
        elif value is None:  # an attribute set to None is an absent attribute
            changed = True
            continue
        elif kind is not int and kind is not bool:
            value, changed = _clean_text(value, TEXT, max_length)[0], True
        out[key] = value
    return out, changed


_GETTERS: Dict[type, Tuple[Any, ...]] = {}


def _getters(cls: type) -> Tuple[Any, ...]:
    """Per class: one attrgetter per field kind, so the common all-valid case is a few C
    calls and tight loops instead of a getattr per field."""
    getters = _GETTERS.get(cls)
    if getters is None:
        schema = cls._schema  # type: ignore[attr-defined]

        def names(*kinds: str) -> Tuple[str, ...]:
            return tuple(name for name, kind in schema if kind in kinds)

        def getter(fields: Tuple[str, ...]) -> Any:
            if not fields:
                return lambda record: ()
            if len(fields) == 1:
                single = attrgetter(fields[0])
                return lambda record: (single(record),)
            return attrgetter(*fields)

        getters = (
            getter(names(COUNT)),
            getter(names(FLOAT)),
            getter(names(RATIO)),
            getter(names(TEXT)),
            getter(names(NAME)),
            getter(names(FLAG)),
            getter(names(OPT_FLAG)),
        )
        _GETTERS[cls] = getters
    return getters


def _count_ok(v: Any) -> bool:
    return v is None or (type(v) is int and v >= 0)


def _float_ok(v: Any) -> bool:
    return v is None or ((type(v) is float or type(v) is int) and 0 <= v < _INF)


def _ratio_ok(v: Any) -> bool:
    return v is None or ((type(v) is float or type(v) is int) and 0 <= v <= 1)


def _flag_ok(v: Any) -> bool:
    return type(v) is bool


def _opt_flag_ok(v: Any) -> bool:
    return v is None or type(v) is bool


def _looks_valid(record: BaseMetrics, max_length: int) -> bool:
    """Whether every field already holds a valid value (then nothing needs cleaning)."""
    counts, floats, ratios, texts, names, flags, opt_flags = _getters(type(record))

    def text_ok(v: Any) -> bool:
        return v is None or (type(v) is str and len(v) <= max_length)

    def name_ok(v: Any) -> bool:
        return type(v) is str and len(v) <= max_length

    checks = (
        (counts, _count_ok),
        (floats, _float_ok),
        (ratios, _ratio_ok),
        (texts, text_ok),
        (names, name_ok),
        (flags, _flag_ok),
        (opt_flags, _opt_flag_ok),
    )
    return record.timestamp is not None and all(
        all(map(ok, getter(record))) for getter, ok in checks
    )


def sanitize(record: BaseMetrics, max_attributes: int, max_attribute_length: int) -> bool:
    """Clamp, truncate or stringify bad values in place; return True if anything changed.

    Negative numbers become 0, non-finite or non-numeric values in numeric fields become None,
    ratios are clamped to [0, 1], non-string names are stringified, strings are truncated to
    ``max_attribute_length``, attributes beyond ``max_attributes`` are dropped (first ones
    kept), attributes set to None are removed and non-scalar attribute values are
    stringified. Never raises for a record of one of
    this module's classes.
    """
    changed = False
    if record._trusted:
        model = record.model
        if model is not None and (type(model) is not str or len(model) > max_attribute_length):
            record.model, changed = _clean_text(model, TEXT, max_attribute_length)
        if len(record.provider) > max_attribute_length:
            record.provider, changed = record.provider[:max_attribute_length], True
    elif not _looks_valid(record, max_attribute_length):
        changed = _sanitize_fields(record, max_attribute_length)
    attrs = record.attributes
    if attrs or (type(attrs) is not dict and not isinstance(attrs, Mapping)):
        clean, bad = _clean_attributes(attrs, max_attributes, max_attribute_length)
        if bad:
            record.attributes = clean
            changed = True
    return changed


def _sanitize_fields(record: BaseMetrics, max_attribute_length: int) -> bool:
    changed = False
    for name, kind in record._schema:
        value = getattr(record, name, None)
        if kind is TEXT or kind is NAME:
            if type(value) is str and len(value) <= max_attribute_length:
                continue
            value, bad = _clean_text(value, kind, max_attribute_length)
        elif kind is FLAG or kind is OPT_FLAG:
            if type(value) is bool or (value is None and kind is OPT_FLAG):
                continue
            value, bad = bool(value), True
        else:
            value, bad = _clean_number(value, kind)
        if bad:
            setattr(record, name, value)
            changed = True
    if record.timestamp is None:
        record.timestamp = 0.0
    return changed
