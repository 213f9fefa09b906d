"""Sanitising records: clamp, truncate or stringify bad values instead of refusing them.

Runs on the background thread for records built by the SDK (trusted: only text is checked)
and on the caller's thread for records built or touched by user code (every field is
checked, by kind, as the record class's field table declares it).
"""

import math
import sys
from typing import Any, Dict, Mapping, Tuple

from ._fields import COUNT, FLAG, NAME, OPT_FLAG, RATIO, TEXT, Scalar
from .models import BaseMetrics

_INF = math.inf
_FLOAT_MAX = sys.float_info.max
#: The largest count or integer attribute kept as a number (int64).
MAX_COUNT = 2**63 - 1


def type_name(value: Any) -> str:
    try:
        return type(value).__name__
    except BaseException:  # noqa: B036
        return "object"


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
        if value > MAX_COUNT:  # beyond what any exporter carries (int64)
            return MAX_COUNT, True
        return value, changed
    if type(value) is not float:  # an int: it must convert to a finite float
        if not -_FLOAT_MAX <= value <= _FLOAT_MAX:
            return None, True
        value = float(value)
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
            text = str(value)  # may raise (user __str__, an int too long to print)
        except BaseException:  # noqa: B036
            text = None
        value = text if type(text) is str else f"<unprintable {type_name(value)}>"
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
            key, changed = _clean_text(key, NAME, max_length)[0], True
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
        elif kind is int:
            if not -MAX_COUNT <= value <= MAX_COUNT:  # exporters and JSON readers choke
                value, changed = _clean_text(value, TEXT, max_length)[0], True
        elif kind is not bool:
            value, changed = _clean_text(value, TEXT, max_length)[0], True
        out[key] = value
    return out, changed


def _looks_valid(record: BaseMetrics, max_length: int) -> bool:
    """Whether every field already holds a valid value (then nothing needs cleaning): the
    record class's generated validator (see :mod:`._fields`)."""
    return type(record)._valid(record, max_length)  # type: ignore[attr-defined]


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
