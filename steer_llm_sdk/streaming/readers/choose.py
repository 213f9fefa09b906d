"""Which reader reads a chunk: :data:`READERS`, the reader of each chunk class, chosen the
first time the class is seen and kept.

The choice is made from the class's declared fields (the SDKs' chunks are pydantic models),
so reading a stream of SDK objects costs no attribute look-up that can miss: on a pydantic
model each miss raises and catches ``AttributeError`` inside pydantic. Only the
chunks of a class that declares no fields are looked at one by one
(:func:`_read_by_instance`), and plain values by :mod:`.plain`.
"""

from typing import TYPE_CHECKING, Any, Dict

from ._base import Reader, _fields_of, _read_nothing
from .cohere import COHERE_TYPES, _cohere_event_reader, _read_cohere_event
from .events import _event_reader, _read_event
from .gemini import _read_gemini, _read_gemini_object
from .mistral import _read_mistral_chunk, _read_mistral_event, wraps_chat_chunk
from .openai_chat import _has_delta, _read_chat, _read_chat_object, _read_groq_object
from .plain import _read_bytes, _read_dict, _read_str

if TYPE_CHECKING:
    from .stream_reader import StreamReader


def _read_by_instance(reader: "StreamReader", chunk: Any) -> str:
    """A chunk of a class that declares no fields (not a pydantic model): its reader is
    decided by the attributes of each instance, the slow way."""
    names = {
        n for n in ("choices", "type", "candidates", "usage_metadata", "data") if hasattr(chunk, n)
    }
    if "choices" in names:
        return _read_chat(reader, chunk)
    if "candidates" in names or "usage_metadata" in names:
        return _read_gemini(reader, chunk)
    if "type" in names:
        if chunk.type in COHERE_TYPES:
            return _read_cohere_event(reader, chunk)
        return _read_event(reader, chunk)
    if "data" in names and hasattr(chunk.data, "choices"):  # an event around a chat chunk
        return _read_mistral_chunk(reader, chunk.data)
    return ""


def _choose(cls: type) -> Reader:
    """The reader for chunks of class ``cls``, from its declared fields."""
    if issubclass(cls, dict):
        return _read_dict
    if issubclass(cls, str):
        return _read_str
    if issubclass(cls, (bytes, bytearray)):
        return _read_bytes
    fields = _fields_of(cls)
    if fields is None or callable(fields):
        return _read_by_instance
    if "choices" in fields:
        if not _has_delta(fields):
            return _read_chat
        return _read_groq_object if "x_groq" in fields else _read_chat_object
    if "candidates" in fields or "usage_metadata" in fields:
        return _read_gemini_object
    if "type" in fields:
        return _cohere_event_reader(fields) or _event_reader(fields)
    if "data" in fields and wraps_chat_chunk(fields):
        return _read_mistral_event
    return _read_nothing


class _Readers(Dict[type, Reader]):
    """Chunk class -> reader, filled on first sight of a class (bounded)."""

    def __missing__(self, cls: type) -> Reader:
        read = _choose(cls)
        if len(self) < 4096:  # classes made per call must not grow it without end
            self[cls] = read
        return read


#: The reader of each chunk class seen so far: ``READERS[type(chunk)](reader, chunk)``.
READERS = _Readers({str: _read_str, dict: _read_dict, bytes: _read_bytes})
