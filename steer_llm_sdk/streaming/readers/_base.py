"""What every chunk reader shares: the reader's signature, :class:`Content`, and the helpers
that read a field of a chunk whether it is an SDK object or decoded JSON.

A leaf of the readers package: the shape modules import it; it imports none of them.
"""

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .stream_reader import StreamReader


class Content(str):
    """Output that is not the answer's text (tool-call arguments, reasoning, other choices)."""

    __slots__ = ()


#: A reader of one chunk shape: takes note of what the chunk reports on the stream's
#: :class:`StreamReader` and returns the chunk's content (``str``, :class:`Content` or ``""``).
#: It may raise on a chunk it cannot read; its caller counts that in ``errors``.
Reader = Callable[["StreamReader", Any], str]


def _g(obj: Any, name: str) -> Any:
    """``obj[name]`` for dicts, ``obj.name`` otherwise (only for names the class has)."""
    if type(obj) is dict:
        return obj.get(name)
    return getattr(obj, name, None)


def _fields_of(cls: type) -> Any:
    """The declared fields of a pydantic model class (v2 or v1), else None."""
    fields = getattr(cls, "model_fields", None)
    if fields is None:
        fields = getattr(cls, "__fields__", None)
    return fields


def _read_nothing(reader: "StreamReader", chunk: Any) -> str:
    """The reader of a class whose chunks carry nothing we read."""
    return ""
