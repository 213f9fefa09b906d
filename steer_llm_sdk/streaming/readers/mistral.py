"""Mistral chat-completion stream events: the mistralai SDK's ``CompletionEvent`` objects,
whose ``data`` is an OpenAI-shaped chunk (``choices[].delta``, ``usage`` in the last one).

Where Mistral's chunks differ from OpenAI's: a delta's ``content`` is text or a list of
content chunks, ``text`` ones being the answer's text and ``thinking`` ones (Magistral
models' reasoning, a list of text chunks) :class:`Content`; a tool call's ``arguments`` may
be a JSON object instead of its text; and a field a chunk leaves out is the SDK's falsy
``UNSET``, not None. Choices are kept apart by ``index`` as in :mod:`.openai_chat`.
"""

import json
from typing import TYPE_CHECKING, Any

from ..usage import usage_from_usage_object
from ._base import Content, _fields_of, _g

if TYPE_CHECKING:
    from .stream_reader import StreamReader


def wraps_chat_chunk(fields: Any) -> bool:
    """Whether a pydantic model's declared ``fields`` make it an event wrapping a chat
    chunk: a ``data`` field whose model declares ``choices`` (mistralai's
    ``CompletionEvent``)."""
    annotation = getattr(fields.get("data"), "annotation", None)
    inner = _fields_of(annotation) if isinstance(annotation, type) else None
    return inner is not None and not callable(inner) and "choices" in inner


def _read_mistral_event(reader: "StreamReader", event: Any) -> str:
    """A mistralai ``CompletionEvent``: the common chunk (one choice of text, no usage,
    model known) on a short path of attribute reads, anything else read in full."""
    chunk = event.data
    if chunk.usage is None and reader.model is not None:
        choices = chunk.choices
        if len(choices) == 1:
            choice = choices[0]
            text = choice.delta.content
            if type(text) is str and text and not choice.index:
                return text
    return _read_mistral_chunk(reader, chunk)


def _read_mistral_chunk(reader: "StreamReader", chunk: Any) -> str:
    """One Mistral chat chunk (an SDK ``CompletionChunk``): usage, model, each choice."""
    usage = _g(chunk, "usage")
    if usage:  # None or UNSET when absent
        reader.apply(usage_from_usage_object(usage))
    if reader.model is None:
        model = _g(chunk, "model")
        if type(model) is str and model:
            reader.model = model
    first, extra = "", 0
    for choice in _g(chunk, "choices") or ():
        content = _read_choice(reader, choice)
        if content:
            if not first:
                first = content
            else:
                extra += len(content)
    reader.extra_chars += extra
    return first


def _read_choice(reader: "StreamReader", choice: Any) -> str:
    index = _g(choice, "index") or 0
    reason = _g(choice, "finish_reason")
    if reason and isinstance(reason, str) and index == 0:
        reader.finish_reason = reason
    delta = _g(choice, "delta")
    content = _g(delta, "content")
    if type(content) is str:
        text: str = content
    elif content:
        text = _parts(reader, content)
    else:
        text = ""
    if not text:
        text = _tool_arguments(_g(delta, "tool_calls"))
    if not text or (index == 0 and type(text) is str):
        return text
    return Content(text)


def _parts(reader: "StreamReader", parts: Any) -> str:
    """A list of content chunks: its text (its reasoning then counted in ``extra_chars``),
    or, without text, its reasoning as Content."""
    text, thinking = "", ""
    for part in parts:
        kind = _g(part, "type")
        if kind == "text":
            piece = _g(part, "text")
            text += piece if type(piece) is str else ""
        elif kind == "thinking":
            for inner in _g(part, "thinking") or ():
                if _g(inner, "type") == "text":
                    piece = _g(inner, "text")
                    thinking += piece if type(piece) is str else ""
    if text:
        reader.extra_chars += len(thinking)
        return text
    return Content(thinking) if thinking else ""


def _tool_arguments(calls: Any) -> str:
    """The argument text of tool-call fragments, as Content (a JSON object's arguments as
    compact JSON)."""
    if not calls:
        return ""
    total = ""
    for call in calls:
        arguments = _g(_g(call, "function"), "arguments")
        if type(arguments) is str:
            total += arguments
        elif arguments is not None:
            try:
                total += json.dumps(arguments, separators=(",", ":"))
            except (TypeError, ValueError):
                pass
    return Content(total) if total else ""
