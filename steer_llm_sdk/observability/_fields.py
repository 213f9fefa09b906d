"""The field table behind every record class: names, kinds, defaults, generated ``__init__``.

A record class lists its public fields once, as annotated class attributes with defaults::

    class ErrorMetrics(BaseMetrics):
        error_class: str = "Exception"
        status_code: Optional[int] = None

:class:`RecordMeta` turns that table into ``__slots__`` (no per-instance dict), a generated
``__init__`` that assigns each field once (inherited fields included, so no class repeats the
base fields), and ``_schema``: ``(name, kind)`` pairs of the scalar fields, which sanitising
and ``to_dict`` read.
The kind of a field follows from its annotation:

=================  =========  ==============================================
annotation         kind       valid values
=================  =========  ==============================================
``int``            count      int >= 0 (``Optional``: or None)
``float``          float      finite float >= 0 (``Optional``: or None)
``Ratio``          ratio      float in [0, 1]
``str``            name       str, never None
``Optional[str]``  text       str or None
``bool``           flag       bool
``Optional[bool]`` opt_flag   bool or None
``Attributes``     attrs      mapping str -> scalar (default: a new empty dict)
``Id``             name       str; may hold a counter until first read
``Optional[Id]``   text       the same, or None
=================  =========  ==============================================

An ``Id`` field stores the value given (a request-id counter from :mod:`._ids`, or a str) in
a private slot; reading the field formats a counter into its id string once and keeps it.
Formatting costs more than the rest of a record's background work, and most records are
never read that way, so it is deferred until someone looks.

Private per-instance state is declared with :func:`private` and is not an argument of
``__init__``. Type checkers see the generated ``__init__`` through ``dataclass_transform``.

No I/O; imports only the leaf :mod:`._ids` from the rest of the package.
"""

import sys
from collections import abc
from typing import (
    Annotated,
    Any,
    Callable,
    ClassVar,
    Dict,
    Literal,
    Mapping,
    Tuple,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from ._ids import format_id

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover
    from typing_extensions import dataclass_transform


Scalar = Union[str, int, float, bool]
#: The annotation of a field holding a ratio in [0, 1].
Ratio = Annotated[float, "ratio"]
#: The annotation of a record's attribute mapping.
Attributes = Mapping[str, Scalar]
#: The annotation of a request-id field (formatted from a counter when first read).
Id = Annotated[str, "id"]

COUNT, FLOAT, RATIO, TEXT, NAME, FLAG, OPT_FLAG, ATTRS = (
    "count",
    "float",
    "ratio",
    "text",
    "name",
    "flag",
    "opt_flag",
    "attrs",
)


class _Private:
    __slots__ = ("default",)

    def __init__(self, default: Any) -> None:
        self.default = default


def private(default: Any, *, init: "Literal[False]" = False) -> Any:
    """Declare per-instance private state with its initial ``default`` (not an argument)."""
    return _Private(default)


def _is_id(annotation: Any) -> bool:
    if get_origin(annotation) is Union:
        return any(_is_id(arg) for arg in get_args(annotation))
    return get_origin(annotation) is Annotated and "id" in annotation.__metadata__


def _kind(annotation: Any) -> str:
    if annotation == Attributes or get_origin(annotation) in (abc.Mapping, dict):
        return ATTRS
    if _is_id(annotation):
        return TEXT if get_origin(annotation) is Union else NAME
    if get_origin(annotation) is Annotated:
        return RATIO
    optional = False
    if get_origin(annotation) is Union:
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(args) < len(get_args(annotation))
        annotation = args[0] if len(args) == 1 else str
    if annotation is bool:
        return OPT_FLAG if optional else FLAG
    if annotation is int:
        return COUNT
    if annotation is float:
        return FLOAT
    return TEXT if optional else NAME


def _make_init(
    fields: Tuple[Tuple[str, str, Any], ...], privates: Dict[str, Any], ids: Tuple[str, ...]
) -> Callable[..., None]:
    """An ``__init__`` assigning every field once; generated so that building a record on
    the caller's thread costs one plain function call (positional arguments are cheapest)."""
    params, body = [], []
    env: Dict[str, Any] = {}
    for name, kind, default in fields:
        env[f"_d_{name}"] = default
        params.append(f"{name}=_d_{name}")
        if kind == ATTRS:
            body.append(f"self.{name} = {{}} if {name} is None else {name}")
        elif name in ids:
            body.append(f"self._{name} = {name}")  # the raw slot, formatted on first read
        else:
            body.append(f"self.{name} = {name}")
    for name, default in privates.items():
        env[f"_p_{name}"] = default
        body.append(f"self.{name} = _p_{name}")
    source = f"def __init__(self, {', '.join(params)}):\n    " + "\n    ".join(body)
    exec(source, env)  # the source is built from this module's own table
    return env["__init__"]


_VALID = {
    COUNT: "v is None or (type(v) is int and 0 <= v <= _MAX_COUNT)",
    FLOAT: "v is None or (type(v) is float and 0 <= v < _INF) or (type(v) is int and 0 <= v"
    " <= _FLOAT_MAX)",
    RATIO: "v is None or ((type(v) is float or type(v) is int) and 0 <= v <= 1)",
    TEXT: "v is None or (type(v) is str and len(v) <= max_length)",
    NAME: "type(v) is str and len(v) <= max_length",
    FLAG: "type(v) is bool",
    OPT_FLAG: "v is None or type(v) is bool",
}


def _make_validator(
    fields: Tuple[Tuple[str, str, Any], ...], ids: Tuple[str, ...]
) -> Callable[[Any, int], bool]:
    """``valid(record, max_length)``: whether every scalar field already holds a valid value
    (then sanitising has nothing to do). Generated as straight-line code, one test per field:
    it runs on the caller's thread for every record built by user code."""
    lines = ["def valid(record, max_length):"]
    for name, kind, _ in fields:
        if kind == ATTRS:
            continue
        test = _VALID[kind]
        if name in ids:  # the raw slot; an unformatted counter is valid
            lines.append(f"    v = record._{name}")
            test = f"type(v) is int or ({test})"
        else:
            lines.append(f"    v = record.{name}")
        if name == "timestamp":
            test = f"v is not None and ({test})"
        lines.append(f"    if not ({test}):\n        return False")
    lines.append("    return True")
    env: Dict[str, Any] = {
        "_INF": float("inf"),
        "_FLOAT_MAX": sys.float_info.max,
        "_MAX_COUNT": 2**63 - 1,
    }
    exec("\n".join(lines), env)  # the source is built from this module's own table
    return env["valid"]


def _id_property(slot: Any) -> property:
    """The public face of an ``Id`` field over its raw ``slot`` (a member descriptor)."""
    get_raw, set_raw = slot.__get__, slot.__set__

    def get(self: Any) -> Any:
        value = get_raw(self)
        if type(value) is int:
            value = format_id(value)
            set_raw(self, value)
        return value

    return property(get, set_raw)


@dataclass_transform(field_specifiers=(private,))
class RecordMeta(type):
    """Builds a record class from its annotated fields (see the module docstring)."""

    def __new__(
        mcls,
        name: str,
        bases: Tuple[type, ...],
        namespace: Dict[str, Any],
    ) -> Any:
        annotations = namespace.get("__annotations__", {})
        own_privates: Dict[str, Any] = {}
        own: Dict[str, Any] = {}
        own_ids = []
        for field_name, annotation in annotations.items():
            if get_origin(annotation) is ClassVar or field_name.startswith("__"):
                continue
            value = namespace.pop(field_name, None)
            if isinstance(value, _Private):
                own_privates[field_name] = value.default
            else:
                own[field_name] = value
                if _is_id(annotation):
                    own_ids.append(field_name)
        slots = [f"_{n}" if n in own_ids else n for n in own]
        namespace["__slots__"] = tuple(slots) + tuple(own_privates)
        cls = super().__new__(mcls, name, bases, namespace)
        for field_name in own_ids:
            setattr(cls, field_name, _id_property(cls.__dict__[f"_{field_name}"]))
        hints = get_type_hints(cls, include_extras=True)
        parent_fields: Tuple[Tuple[str, str, Any], ...] = getattr(cls, "_fields", ())
        parent_privates: Dict[str, Any] = getattr(cls, "_privates", {})
        fields = parent_fields + tuple((n, _kind(hints[n]), d) for n, d in own.items())
        privates = {**parent_privates, **own_privates}
        ids = tuple(getattr(cls, "_ids", ())) + tuple(own_ids)
        cls._ids = ids  # type: ignore[attr-defined]
        cls._fields = fields  # type: ignore[attr-defined]
        cls._privates = privates  # type: ignore[attr-defined]
        # The scalar fields, checked one by one when sanitising (attributes are checked
        # as a mapping of their own).
        cls._schema = tuple((n, k) for n, k, _ in fields if k != ATTRS)  # type: ignore[attr-defined]
        cls.__init__ = _make_init(fields, privates, ids)  # type: ignore[misc]
        cls._valid = staticmethod(_make_validator(fields, ids))  # type: ignore[attr-defined]
        return cls


__all__ = [
    "ATTRS",
    "COUNT",
    "FLAG",
    "FLOAT",
    "NAME",
    "OPT_FLAG",
    "RATIO",
    "TEXT",
    "Attributes",
    "Id",
    "Ratio",
    "RecordMeta",
    "Scalar",
    "private",
]
