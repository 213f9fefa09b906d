"""Events told apart by their ``type``: Anthropic's (raw and helper), OpenAI Responses API's,
and the ``chunk`` events of openai's ``chat.completions.stream()`` helper.

Each family lists the types it reads (its ``EVENTS``); an event of any other type carries
nothing we read. An SDK event class whose ``type`` is one fixed value gets that type's
reader once, when the class is first seen (:func:`_event_reader`), so its events are not
dispatched one by one.
"""

from typing import TYPE_CHECKING, Any, Dict, Literal

from . import anthropic, openai_responses
from ._base import Reader, _g, _read_nothing
from .openai_chat import _openai_helper_chunk

if TYPE_CHECKING:
    from .stream_reader import StreamReader

#: The reader of each event type, whatever the event's class.
_EVENTS: Dict[str, Reader] = {
    **anthropic.EVENTS,
    **openai_responses.EVENTS,
    "chunk": _openai_helper_chunk,
}

#: Event types whose SDK classes get a reader of their own (attribute reads only).
_EVENT_OBJECTS: Dict[str, Reader] = {
    **anthropic.EVENT_OBJECTS,
    **openai_responses.EVENT_OBJECTS,
}


def _read_event(reader: "StreamReader", event: Any) -> str:
    """Events with a ``type``: Anthropic (raw and helper), OpenAI Responses, openai helper."""
    kind = _g(event, "type")
    handler = _EVENTS.get(kind) if type(kind) is str else None
    return "" if handler is None else handler(reader, event)


def _event_reader(fields: Any) -> Reader:
    """For an SDK event class whose ``type`` is one fixed value (a ``Literal``), the handler
    of that type, found once; otherwise the reader that looks at ``type`` per event."""
    annotation = getattr(fields.get("type"), "annotation", None)
    values: Any = getattr(annotation, "__args__", ())
    if len(values) == 1 and getattr(annotation, "__origin__", None) is Literal:
        kind = values[0]
        handler = _EVENT_OBJECTS.get(kind) or _EVENTS.get(kind)
        return handler if handler is not None else _read_nothing
    return _read_event
