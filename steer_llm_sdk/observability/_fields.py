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
=================  =========  ==============================================

Private per-instance state is declared with :func:`private` and is not an argument of
``__init__``. Type checkers see the generated ``__init__`` through ``dataclass_transform``.

No I/O, and no imports from the rest of the package.
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

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover
    from typing_extensions import dataclass_transform


Scalar = Union[str, int, float, bool]
#: The annotation of a field holding a ratio in [0, 1].
Ratio = Annotated[float, "ratio"]
#: The annotation of a record's attribute mapping.
Attributes = Mapping[str, Scalar]

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


def _kind(annotation: Any) -> str:
    if annotation == Attributes or get_origin(annotation) in (abc.Mapping, dict):
        return ATTRS
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
    fields: Tuple[Tuple[str, str, Any], ...], privates: Dict[str, Any]
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
        else:
            body.append(f"self.{name} = {name}")
    for name, default in privates.items():
        env[f"_p_{name}"] = default
        body.append(f"self.{name} = _p_{name}")
    source = f"def __init__(self, {', '.join(params)}):\n    " + "\n    ".join(body)
    exec(source, env)  # the source is built from this module's own table
    return env["__init__"]


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
        for field_name, annotation in annotations.items():
            if get_origin(annotation) is ClassVar or field_name.startswith("__"):
                continue
            value = namespace.pop(field_name, None)
            if isinstance(value, _Private):
                own_privates[field_name] = value.default
            else:
                own[field_name] = value
        namespace["__slots__"] = tuple(own) + tuple(own_privates)
        cls = super().__new__(mcls, name, bases, namespace)
        hints = get_type_hints(cls, include_extras=True)
        parent_fields: Tuple[Tuple[str, str, Any], ...] = getattr(cls, "_fields", ())
        parent_privates: Dict[str, Any] = getattr(cls, "_privates", {})
        fields = parent_fields + tuple((n, _kind(hints[n]), d) for n, d in own.items())
        privates = {**parent_privates, **own_privates}
        cls._fields = fields  # type: ignore[attr-defined]
        cls._privates = privates  # type: ignore[attr-defined]
        # The scalar fields, checked one by one when sanitising (attributes are checked
        # as a mapping of their own).
        cls._schema = tuple((n, k) for n, k, _ in fields if k != ATTRS)  # type: ignore[attr-defined]
        cls.__init__ = _make_init(fields, privates)  # type: ignore[misc]
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
    "Ratio",
    "RecordMeta",
    "Scalar",
    "private",
]
