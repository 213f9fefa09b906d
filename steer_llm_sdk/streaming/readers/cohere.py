"""Cohere v2 chat stream events: the cohere SDK's ``V2ChatStreamResponse`` objects (one class
per event ``type``, hyphenated: ``content-delta``, ``message-end``, ...) and their decoded
JSON.

Text comes in ``content-start``/``content-delta`` (``delta.message.content.text``); the
model's reasoning (``content.thinking``), its tool plan (``tool-plan-delta``) and the
argument fragments of its tool calls (``tool-call-start``/``-delta``) are
:class:`Content`. ``message-end`` carries the finish reason and the usage
(:func:`cohere_usage`). No event names the model.
"""

from typing import TYPE_CHECKING, Any, Dict, Literal, Optional

from ..usage import cohere_usage
from ._base import Content, Reader, _g, _read_nothing

if TYPE_CHECKING:
    from .stream_reader import StreamReader


def _message(event: Any) -> Any:
    return _g(_g(event, "delta"), "message")


def _content(reader: "StreamReader", event: Any) -> str:
    """``content-start``/``content-delta``: text, or reasoning as Content."""
    content = _g(_message(event), "content")
    text = _g(content, "text")
    if type(text) is str and text:
        return text
    thinking = _g(content, "thinking")
    return Content(thinking) if type(thinking) is str and thinking else ""


def _content_delta_object(reader: "StreamReader", event: Any) -> str:
    """An SDK ``content-delta`` event: its text on a short path of attribute reads."""
    delta = event.delta
    message = None if delta is None else delta.message
    content = None if message is None else message.content
    text = None if content is None else content.text
    if type(text) is str and text:
        return text
    return _content(reader, event)


def _tool_plan(reader: "StreamReader", event: Any) -> str:
    plan = _g(_message(event), "tool_plan")
    return Content(plan) if type(plan) is str and plan else ""


def _tool_call(reader: "StreamReader", event: Any) -> str:
    """``tool-call-start``/``-delta``: the fragment of the call's arguments, as Content."""
    calls = _g(_message(event), "tool_calls")
    total = ""
    for call in calls if isinstance(calls, list) else (calls,):
        arguments = _g(_g(call, "function"), "arguments")
        if type(arguments) is str:
            total += arguments
    return Content(total) if total else ""


def _message_end(reader: "StreamReader", event: Any) -> str:
    delta = _g(event, "delta")
    reason = _g(delta, "finish_reason")
    if isinstance(reason, str) and reason:
        reader.finish_reason = reason
    usage = _g(delta, "usage")
    if usage is not None:
        reader.apply(cohere_usage(usage))
    return ""


#: The reader of each event type read (objects or dicts); the other types (``message-start``,
#: ``content-end``, ``tool-call-end``, ``citation-*``, ``debug``) carry nothing we read.
EVENTS: Dict[str, Reader] = {
    "content-start": _content,
    "content-delta": _content,
    "tool-plan-delta": _tool_plan,
    "tool-call-start": _tool_call,
    "tool-call-delta": _tool_call,
    "message-end": _message_end,
}

#: Event types whose SDK classes get a reader of their own (attribute reads only).
EVENT_OBJECTS: Dict[str, Reader] = {"content-delta": _content_delta_object}

#: Every v2 chat stream event type (those read and those that carry nothing we read).
COHERE_TYPES = frozenset(EVENTS) | {
    "message-start",
    "content-end",
    "tool-call-end",
    "citation-start",
    "citation-end",
    "debug",
}


def _read_cohere_event(reader: "StreamReader", event: Any) -> str:
    """A Cohere v2 stream event, told apart by its ``type``."""
    kind = _g(event, "type")
    handler = EVENTS.get(kind) if type(kind) is str else None
    return "" if handler is None else handler(reader, event)


def _cohere_event_reader(fields: Any) -> Optional[Reader]:
    """For an SDK event class whose ``type`` is one fixed Cohere v2 stream type (a
    ``Literal``), the reader of that type (:func:`._base._read_nothing` for a type that
    carries nothing we read); None for any other class."""
    annotation = getattr(fields.get("type"), "annotation", None)
    values: Any = getattr(annotation, "__args__", ())
    if len(values) != 1 or getattr(annotation, "__origin__", None) is not Literal:
        return None
    kind = values[0]
    if kind not in COHERE_TYPES:
        return None
    return EVENT_OBJECTS.get(kind) or EVENTS.get(kind) or _read_nothing
