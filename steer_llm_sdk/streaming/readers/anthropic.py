"""Anthropic message events: the raw stream events (objects or decoded JSON) and those of the
anthropic SDK's ``MessageStream`` helper.

Only the raw events are read: the helper's own events (text, input_json, thinking, citation,
signature) repeat them. Usage: ``message_start`` carries the input side;
``message_delta.usage.output_tokens`` is a running total for the whole message.
"""

from typing import TYPE_CHECKING, Any, Dict, Optional

from ..usage import usage_from_usage_object
from ._base import Content, Reader, _g

if TYPE_CHECKING:
    from .stream_reader import StreamReader


def _int(value: Any) -> Optional[int]:
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _text_delta_object(reader: "StreamReader", event: Any) -> str:
    """An anthropic ``content_block_delta`` object: text on the short path."""
    delta = event.delta
    if delta.type == "text_delta":
        return delta.text
    return _anthropic_delta(reader, event)


def _anthropic_delta(reader: "StreamReader", event: Any) -> str:
    delta = _g(event, "delta")
    kind = _g(delta, "type")
    if kind == "text_delta":
        text = _g(delta, "text")
        return text if type(text) is str else ""
    if kind == "input_json_delta":
        return Content(_g(delta, "partial_json") or "")
    if kind == "thinking_delta":
        return Content(_g(delta, "thinking") or "")
    return ""


def _anthropic_start(reader: "StreamReader", event: Any) -> str:
    message = _g(event, "message")
    if reader.model is None:
        model = _g(message, "model")
        reader.model = model if type(model) is str else None
    reader.apply(usage_from_usage_object(_g(message, "usage")))
    return ""


def _anthropic_message_delta(reader: "StreamReader", event: Any) -> str:
    reason = _g(_g(event, "delta"), "stop_reason")
    if reason:
        reader.finish_reason = reason
    usage = _g(event, "usage")
    output = _int(_g(usage, "output_tokens"))
    if output is not None:
        reader.reported = True
        reader.completion_tokens = output  # a running total: taken, never added
    if _int(_g(usage, "input_tokens")) is not None:  # newer API versions repeat input here
        update = usage_from_usage_object(usage)
        if update is not None and update.prompt_tokens is not None:
            reader.prompt_tokens = update.prompt_tokens
            reader.cached_tokens = update.cached_tokens
            reader.cache_creation_tokens = update.cache_creation_tokens
    if reader.prompt_tokens is not None and reader.completion_tokens is not None:
        reader.total_tokens = reader.prompt_tokens + reader.completion_tokens
    return ""


#: The reader of each event type read (objects or dicts).
EVENTS: Dict[str, Reader] = {
    "content_block_delta": _anthropic_delta,
    "message_start": _anthropic_start,
    "message_delta": _anthropic_message_delta,
}

#: Event types whose SDK classes get a reader of their own (attribute reads only).
EVENT_OBJECTS: Dict[str, Reader] = {"content_block_delta": _text_delta_object}
