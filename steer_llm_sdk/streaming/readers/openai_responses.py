"""OpenAI Responses API events (objects or decoded JSON).

Text comes in ``response.output_text.delta`` (and refusals); tool-call arguments and
reasoning are :class:`Content`. Usage comes only with the response's end
(``response.completed``, ``incomplete`` or ``failed``); ``input_tokens`` already includes
the cached ones.
"""

from typing import TYPE_CHECKING, Any, Dict

from ..usage import usage_from_usage_object
from ._base import Content, Reader, _g

if TYPE_CHECKING:
    from .stream_reader import StreamReader


def _responses_text_object(reader: "StreamReader", event: Any) -> str:
    delta = event.delta
    return delta if type(delta) is str else ""


def _responses_text(reader: "StreamReader", event: Any) -> str:
    delta = _g(event, "delta")
    return delta if type(delta) is str else ""


def _responses_content(reader: "StreamReader", event: Any) -> str:
    delta = _g(event, "delta")
    return Content(delta) if type(delta) is str else ""


def _responses_created(reader: "StreamReader", event: Any) -> str:
    model = _g(_g(event, "response"), "model")
    if type(model) is str and reader.model is None:
        reader.model = model
    return ""


def _responses_done(reader: "StreamReader", event: Any) -> str:
    response = _g(event, "response")
    model = _g(response, "model")
    if type(model) is str:
        reader.model = model
    status = _g(response, "status")
    if type(status) is str:
        reader.finish_reason = status
    reader.apply(usage_from_usage_object(_g(response, "usage")))
    return ""


#: The reader of each event type read (objects or dicts).
EVENTS: Dict[str, Reader] = {
    "response.output_text.delta": _responses_text,
    "response.refusal.delta": _responses_text,
    "response.function_call_arguments.delta": _responses_content,
    "response.custom_tool_call_input.delta": _responses_content,
    "response.reasoning_summary_text.delta": _responses_content,
    "response.reasoning_text.delta": _responses_content,
    "response.created": _responses_created,
    "response.completed": _responses_done,
    "response.incomplete": _responses_done,
    "response.failed": _responses_done,
}

#: Event types whose SDK classes get a reader of their own (attribute reads only).
EVENT_OBJECTS: Dict[str, Reader] = {"response.output_text.delta": _responses_text_object}
