"""Sanitising records: clamp, truncate or stringify bad values instead of refusing them.

Runs on the background thread for records built by the SDK (trusted: only text is checked)
and on the caller's thread for records built or touched by user code (every field is
checked, by kind, as the record class's field table declares it).

Every value a user can set ends up valid for every sink: counts are ints in [0, 2**63 - 1]
(int64, what OTLP and JSON readers carry), other numbers finite floats >= 0 (ratios in
[0, 1]) or None, names and texts short strings, flags bools. A value that cannot be made
valid becomes None, or the field's default for a field that is never None. Stringifying a
user object runs user code, which may raise anything: that costs the value, never the
record, except for what belongs to the caller (Ctrl-C, an exception raised by a signal
handler), which goes through.
"""

import math
import operator
import sys
from typing import Any, Dict, Mapping, Tuple

from ._fields import ATTRS, COUNT, FLAG, NAME, OPT_FLAG, RATIO, TEXT, Scalar
from ._signals import signal_exception
from .models import BaseMetrics

_INF = math.inf
_FLOAT_MAX = sys.float_info.max
#: The largest count or integer attribute kept as a number (int64).
MAX_COUNT = 2**63 - 1


def type_name(value: Any) -> str:
    try:
        return type(value).__name__
    except BaseException as exc:  # noqa: B036
        _raise_for_caller(exc)
        return "object"


def _raise_for_caller(exc: BaseException) -> None:
    """Raise what, of ``exc`` raised while user code ran inside sanitising, belongs to the
    caller rather than to the value: Ctrl-C, or an exception raised by a signal handler (a
    Celery soft time limit; see :mod:`._signals`). Neither can happen on the background
    threads."""
    if isinstance(exc, KeyboardInterrupt):
        raise exc
    timeout = signal_exception(exc)
    if timeout is not None:
        raise timeout


def _clean_number(value: Any, kind: str) -> Tuple[Any, bool]:
    """Return (clean value, changed) for a numeric field. May raise for an object whose
    ``__index__`` or comparisons raise."""
    if value is None:
        return None, False
    if type(value) is bool or not isinstance(value, (int, float)):
        return _clean_other(value, kind)
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


def _clean_other(value: Any, kind: str) -> Tuple[Any, bool]:
    """(clean value, True) for a value that is no int or float: an integer of another
    library (numpy's, which says how to become an int through ``__index__``) is taken as
    one; anything else (a bool, ``"12"``, a Decimal) becomes None."""
    if type(value) is bool:
        return None, True
    try:
        value = operator.index(value)
    except TypeError:
        return None, True
    return _clean_number(value, kind)[0], True


def _clean_text(value: Any, kind: str, max_length: int) -> Tuple[Any, bool]:
    if value is None:
        return ("unknown", True) if kind == NAME else (None, False)
    changed = False
    if type(value) is not str:
        try:
            text = str(value)  # may raise (user __str__, an int too long to print)
        except BaseException as exc:  # noqa: B036 - user code: SystemExit too
            _raise_for_caller(exc)
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

    Negative numbers become 0, counts above 2**63 - 1 become 2**63 - 1, non-finite or
    non-numeric values in numeric fields become None (the default, for a field never None),
    ratios are clamped to [0, 1], non-string names are stringified, strings are truncated to
    ``max_attribute_length``, attributes beyond ``max_attributes`` are dropped (first ones
    kept), attributes set to None are removed, and integer attributes beyond int64 and
    non-scalar attribute values are stringified.

    Raises nothing for a record of one of this module's classes, except Ctrl-C or an
    exception raised by a signal handler while user code (a ``__str__``) ran.
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
    try:
        if attrs or (type(attrs) is not dict and not isinstance(attrs, Mapping)):
            clean, bad = _clean_attributes(attrs, max_attributes, max_attribute_length)
        else:
            bad = False
    except BaseException as exc:  # noqa: B036 - a user mapping whose methods raise
        _raise_for_caller(exc)
        clean, bad = {}, True
    if bad:
        record.attributes = clean
        changed = True
    return changed


def _sanitize_fields(record: BaseMetrics, max_attribute_length: int) -> bool:
    """Make every scalar field valid; return True if any changed. A value whose checking
    raised (user code: ``__bool__``, ``__index__``, comparisons) is replaced by the field's
    default."""
    changed = False
    for name, kind, default in type(record)._fields:  # type: ignore[attr-defined]
        if kind is ATTRS:
            continue
        value = getattr(record, name, None)
        try:
            value, bad = _clean_field(value, kind, default, max_attribute_length)
        except BaseException as exc:  # noqa: B036 - user code: SystemExit too
            _raise_for_caller(exc)
            value, bad = default, True
        if bad:
            setattr(record, name, value)
            changed = True
    return changed


def _clean_field(value: Any, kind: str, default: Any, max_length: int) -> Tuple[Any, bool]:
    """(clean value, changed) for one scalar field of ``kind``; a field that is never None
    gets its ``default`` where a value cannot be made valid."""
    if kind is TEXT or kind is NAME:
        if type(value) is str and len(value) <= max_length:
            return value, False
        return _clean_text(value, kind, max_length)
    if kind is FLAG or kind is OPT_FLAG:
        if type(value) is bool or (value is None and kind is OPT_FLAG):
            return value, False
        return (default if value is None else bool(value)), True
    value, bad = _clean_number(value, kind)
    if value is None and default is not None:
        return default, True
    return value, bad
