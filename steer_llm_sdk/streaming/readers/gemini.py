"""Gemini ``GenerateContentResponse`` chunks: google-genai's objects (snake_case fields) and
the REST API's JSON (camelCase).

``usage_metadata`` repeats in every chunk and the last one is the total, so each chunk only
keeps it and it is read once, when the stream's usage is asked for
(:meth:`StreamReader.token_usage`). Thought parts and function calls are :class:`Content`.
"""

import json
from typing import TYPE_CHECKING, Any

from ._base import Content, _g

if TYPE_CHECKING:
    from .stream_reader import StreamReader


def _read_gemini(reader: "StreamReader", chunk: Any) -> str:
    """A Gemini ``GenerateContentResponse`` (google-genai object, snake_case) or its JSON
    (camelCase). ``usage_metadata`` repeats in every chunk; the last one is the total."""
    usage = _g(chunk, "usage_metadata") if type(chunk) is not dict else chunk.get("usageMetadata")
    if usage is not None:
        reader.last_usage = usage  # repeated in every chunk: read only the last, at the end
    if reader.model is None:
        model = _g(chunk, "model_version") if type(chunk) is not dict else chunk.get("modelVersion")
        reader.model = model if type(model) is str else None
    candidates = _g(chunk, "candidates")
    if not candidates:
        return ""
    candidate = candidates[0]
    reason = candidate.get("finishReason") if type(candidate) is dict else candidate.finish_reason
    if reason:
        reader.finish_reason = str(getattr(reason, "value", reason))
    parts: Any = _g(_g(candidate, "content"), "parts") or ()
    if len(parts) == 1 and type(candidate) is not dict:
        part = parts[0]
        piece = part.text
        if type(piece) is str and not part.thought:
            return piece
    text, other = "", ""
    for part in parts:
        piece = _g(part, "text")
        if type(piece) is str:
            if _g(part, "thought"):
                other += piece
            else:
                text += piece
        else:
            call = _g(part, "function_call") if type(part) is not dict else part.get("functionCall")
            if call is not None:
                other += _json_len_text(_g(call, "args"))
    if text:
        reader.extra_chars += len(other)
        return text
    return Content(other) if other else ""


def _read_gemini_object(reader: "StreamReader", chunk: Any) -> str:
    """A google-genai ``GenerateContentResponse``: attribute reads only, the common
    one-text-part chunk on a short path."""
    usage = chunk.usage_metadata
    if usage is not None:
        reader.last_usage = usage  # repeated in every chunk: read only the last, at the end
    candidates = chunk.candidates
    if reader.model is not None and candidates and len(candidates) == 1:
        candidate = candidates[0]
        content = candidate.content
        parts = None if content is None else content.parts
        if parts and len(parts) == 1 and candidate.finish_reason is None:
            part = parts[0]
            piece = part.text
            if type(piece) is str and not part.thought:
                return piece
    return _read_gemini(reader, chunk)


def _json_len_text(args: Any) -> str:
    """A function call's arguments as compact JSON: what counts as its characters."""
    try:
        return json.dumps(args, separators=(",", ":")) if args is not None else ""
    except (TypeError, ValueError):
        return ""
