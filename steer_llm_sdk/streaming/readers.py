"""Universal readers of stream chunks: every shape the official SDKs and the wire protocols
produce, as the SDKs' objects or as decoded JSON dicts.

A :class:`StreamReader` takes one stream's chunks. ``observe(chunk)`` returns the chunk's
content and keeps what the stream reports about itself (usage, model, finish reason). The
reader of a chunk is chosen by the chunk's class the first time that class is seen and cached
(:data:`READERS`), so a stream of SDK objects pays no attribute look-up that can miss: on a
pydantic model each miss raises and catches ``AttributeError`` inside pydantic (~1 µs).

What ``observe`` returns:

* the text of the chunk, for the answer's first choice (a plain ``str``);
* otherwise, output that is not text (tool-call argument fragments, reasoning/thinking text,
  other choices of an ``n > 1`` stream) as a :class:`Content`, a ``str`` subclass: it counts
  for time to first token and characters, and is never text;
* ``""`` for a chunk with no content.

Content of a chunk beyond what it returns (a second choice in the same chunk) is added to
``extra_chars``.

Shapes understood: OpenAI chat-completion chunks (``choices`` kept apart by ``index``; usage
in a last chunk), the openai SDK's ``chat.completions.stream()`` events (read through their
``chunk`` events), OpenAI Responses API events (usage in ``response.completed``), legacy
completion chunks (``choices[].text``), Anthropic message events and the anthropic SDK's
``MessageStream`` helper events (helper-only events are skipped, as they repeat raw ones),
Gemini ``GenerateContentResponse`` chunks (``usage_metadata`` repeats; the last is the total),
Bedrock ConverseStream events (usage in ``metadata``), and LiteLLM's OpenAI-shaped objects.
Usage follows the OpenTelemetry GenAI meaning: input tokens include cached ones, cache reads
are ``cached_tokens``, reasoning/thinking tokens are output.

Pure code: no I/O, no imports from the rest of the package beyond leaves.
"""

from typing import Any, Callable, Dict, Literal, Optional

from .usage import TokenUsage, bedrock_usage, gemini_usage, usage_from_usage_object


class Content(str):
    """Output that is not the answer's text (tool-call arguments, reasoning, other choices)."""

    __slots__ = ()


_EMPTY_CONTENT = Content("")


def _int(value: Any) -> Optional[int]:
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


class StreamReader:
    """Accumulates what one stream reports about itself. Not thread-safe: one per stream.

    Attributes:
        prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens,
            cache_creation_tokens: as reported so far (see ``TokenUsage``).
        model: the model the stream says answered.
        finish_reason: the last finish/stop reason seen.
        reported: whether the stream reported any usage.
        extra_chars: content characters not returned by :meth:`observe`.
        errors: chunks that could not be read (passed through, not counted).
    """

    __slots__ = (
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "cache_creation_tokens",
        "model",
        "finish_reason",
        "reported",
        "extra_chars",
        "errors",
        "last_usage",
    )

    def __init__(self) -> None:
        self.prompt_tokens: Optional[int] = None
        self.completion_tokens: Optional[int] = None
        self.total_tokens: Optional[int] = None
        self.cached_tokens: Optional[int] = None
        self.reasoning_tokens: Optional[int] = None
        self.cache_creation_tokens: Optional[int] = None
        self.model: Optional[str] = None
        self.finish_reason: Optional[str] = None
        self.reported = False
        self.extra_chars = 0
        self.errors = 0
        self.last_usage: Any = None  # a Gemini usage report, normalised when asked for

    def observe(self, chunk: Any) -> str:
        """Take note of one chunk; return its content (see the module docstring).

        Never raises: a chunk of an unexpected shape is passed over and counted in
        ``errors``."""
        try:
            return READERS[type(chunk)](self, chunk)
        except Exception:
            self.errors += 1
            return ""

    def usage(self) -> Optional[TokenUsage]:
        """The usage seen so far, or None if the stream reported none."""
        if self.last_usage is not None:
            self.apply(gemini_usage(self.last_usage))
            self.last_usage = None
        if not self.reported:
            return None
        return TokenUsage(
            self.prompt_tokens,
            self.completion_tokens,
            self.total_tokens,
            self.cached_tokens,
            self.reasoning_tokens,
            self.cache_creation_tokens,
        )

    # ------------------------------------------------------------------ helpers for readers
    def apply(self, usage: Optional[TokenUsage]) -> None:
        """Take a usage report (later reports replace earlier counts)."""
        if usage is None:
            return
        self.reported = True
        if usage.prompt_tokens is not None:
            self.prompt_tokens = usage.prompt_tokens
        if usage.completion_tokens is not None:
            self.completion_tokens = usage.completion_tokens
        if usage.cached_tokens is not None:
            self.cached_tokens = usage.cached_tokens
        if usage.reasoning_tokens is not None:
            self.reasoning_tokens = usage.reasoning_tokens
        if usage.cache_creation_tokens is not None:
            self.cache_creation_tokens = usage.cache_creation_tokens
        if usage.total_tokens is not None:
            self.total_tokens = usage.total_tokens
        elif self.prompt_tokens is not None and self.completion_tokens is not None:
            self.total_tokens = self.prompt_tokens + self.completion_tokens


Reader = Callable[[StreamReader, Any], str]


def _g(obj: Any, name: str) -> Any:
    """``obj[name]`` for dicts, ``obj.name`` otherwise (only for names the class has)."""
    if type(obj) is dict:
        return obj.get(name)
    return getattr(obj, name, None)


# ---------------------------------------------------------------------- OpenAI chat chunks


def _read_chat(reader: StreamReader, chunk: Any) -> str:
    """An OpenAI chat-completion chunk (object or dict), or a legacy completion chunk."""
    usage = _g(chunk, "usage")
    if usage is not None:
        reader.apply(usage_from_usage_object(usage))
    if reader.model is None:
        model = _g(chunk, "model")
        if type(model) is str and model:
            reader.model = model
    choices = _g(chunk, "choices")
    if not choices:
        return ""
    if len(choices) == 1:
        return _read_choice(reader, choices[0])
    first, extra = "", 0
    for choice in choices:
        content = _read_choice(reader, choice)
        if content:
            if not first:
                first = content
            else:
                extra += len(content)
    reader.extra_chars += extra
    return first


def _read_choice(reader: StreamReader, choice: Any) -> str:
    reason = _g(choice, "finish_reason")
    index = _g(choice, "index") or 0
    if reason and index == 0:
        reader.finish_reason = reason
    delta = _g(choice, "delta")
    if delta is None:  # a legacy completion chunk: the text is on the choice
        text = _g(choice, "text")
        content = text if type(text) is str else ""
    else:
        content = _delta_content(delta)
    if not content or (index == 0 and type(content) is str):
        return content
    return Content(content)


def _delta_content(delta: Any) -> str:
    text = _g(delta, "content")
    if type(text) is str and text:
        return text
    calls = _g(delta, "tool_calls")
    if calls:
        total = "".join(
            args
            for args in (_g(_g(call, "function"), "arguments") for call in calls)
            if type(args) is str
        )
        return Content(total) if total else ""
    reasoning = _g(delta, "reasoning_content") or _g(delta, "reasoning")
    if type(reasoning) is str and reasoning:
        return Content(reasoning)
    refusal = _g(delta, "refusal")
    return refusal if type(refusal) is str else ""


def _read_chat_object(reader: StreamReader, chunk: Any) -> str:
    """An SDK chat-completion chunk object whose choices have a ``delta`` (openai, LiteLLM):
    the common chunk (first choice's text, no usage, model known) on a short path of
    attribute reads, anything else read in full. On a pydantic model every attribute read
    costs ~30 ns (its class defines ``__getattr__``), so the short path reads five."""
    if chunk.usage is None and reader.model is not None:
        choices = chunk.choices
        if len(choices) == 1:
            choice = choices[0]
            if not choice.index:
                text = choice.delta.content
                # A finish reason comes in a chunk without text: nothing else to read.
                if type(text) is str and text:
                    return text
    return _read_chat(reader, chunk)


def _has_delta(fields: Any) -> bool:
    """Whether the ``choices`` field of a pydantic model holds items with a ``delta``."""
    annotation = getattr(fields.get("choices"), "annotation", None)
    for item in getattr(annotation, "__args__", ()):
        item_fields = _fields_of(item) if isinstance(item, type) else None
        if item_fields is not None and not callable(item_fields) and "delta" in item_fields:
            return True
    return False


# ---------------------------------------------------------------------- typed events


def _read_event(reader: StreamReader, event: Any) -> str:
    """Events with a ``type``: Anthropic (raw and helper), OpenAI Responses, openai helper."""
    kind = _g(event, "type")
    handler = _EVENTS.get(kind) if type(kind) is str else None
    return "" if handler is None else handler(reader, event)


def _text_delta_object(reader: StreamReader, event: Any) -> str:
    """An anthropic ``content_block_delta`` object: text on the short path."""
    delta = event.delta
    if delta.type == "text_delta":
        return delta.text
    return _anthropic_delta(reader, event)


def _responses_text_object(reader: StreamReader, event: Any) -> str:
    delta = event.delta
    return delta if type(delta) is str else ""


#: Event types whose SDK classes get a reader of their own (attribute reads only).
_EVENT_OBJECTS: Dict[str, Reader] = {
    "content_block_delta": _text_delta_object,
    "response.output_text.delta": _responses_text_object,
}


def _anthropic_delta(reader: StreamReader, event: Any) -> str:
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


def _anthropic_start(reader: StreamReader, event: Any) -> str:
    message = _g(event, "message")
    if reader.model is None:
        model = _g(message, "model")
        reader.model = model if type(model) is str else None
    reader.apply(usage_from_usage_object(_g(message, "usage")))
    return ""


def _anthropic_message_delta(reader: StreamReader, event: Any) -> str:
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


def _responses_text(reader: StreamReader, event: Any) -> str:
    delta = _g(event, "delta")
    return delta if type(delta) is str else ""


def _responses_content(reader: StreamReader, event: Any) -> str:
    delta = _g(event, "delta")
    return Content(delta) if type(delta) is str else ""


def _responses_created(reader: StreamReader, event: Any) -> str:
    model = _g(_g(event, "response"), "model")
    if type(model) is str and reader.model is None:
        reader.model = model
    return ""


def _responses_done(reader: StreamReader, event: Any) -> str:
    response = _g(event, "response")
    model = _g(response, "model")
    if type(model) is str:
        reader.model = model
    status = _g(response, "status")
    if type(status) is str:
        reader.finish_reason = status
    reader.apply(usage_from_usage_object(_g(response, "usage")))
    return ""


def _openai_helper_chunk(reader: StreamReader, event: Any) -> str:
    return reader.observe(_g(event, "chunk"))


_EVENTS: Dict[str, Reader] = {
    # Anthropic messages (raw events; MessageStream's text/input_json/thinking/citation/
    # signature events repeat them and are not read)
    "content_block_delta": _anthropic_delta,
    "message_start": _anthropic_start,
    "message_delta": _anthropic_message_delta,
    # OpenAI Responses API
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
    # openai's chat.completions.stream() helper: its "chunk" events carry the raw chunks
    "chunk": _openai_helper_chunk,
}


# ---------------------------------------------------------------------- Gemini


def _read_gemini(reader: StreamReader, chunk: Any) -> str:
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


def _read_gemini_object(reader: StreamReader, chunk: Any) -> str:
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
    import json

    try:
        return json.dumps(args, separators=(",", ":")) if args is not None else ""
    except (TypeError, ValueError):
        return ""


# ---------------------------------------------------------------------- Bedrock


def _read_bedrock(reader: StreamReader, event: Dict[str, Any]) -> str:
    """A Bedrock ConverseStream event as boto3 yields it: a dict with one key."""
    delta = event.get("contentBlockDelta")
    if delta is not None:
        delta = delta.get("delta") or {}
        text = delta.get("text")
        if type(text) is str:
            return text
        tool = delta.get("toolUse")
        if tool is not None:
            return Content(tool.get("input") or "")
        reasoning = delta.get("reasoningContent")
        if reasoning is not None:
            return Content(reasoning.get("text") or "")
        return ""
    metadata = event.get("metadata")
    if metadata is not None:
        reader.apply(bedrock_usage(metadata.get("usage")))
        return ""
    stop = event.get("messageStop")
    if stop is not None:
        reader.finish_reason = stop.get("stopReason")
    return ""


# ---------------------------------------------------------------------- choosing


def _read_str(reader: StreamReader, chunk: str) -> str:
    return chunk


def _read_bytes(reader: StreamReader, chunk: bytes) -> str:
    return chunk.decode("utf-8", "replace")


def _read_dict(reader: StreamReader, chunk: Dict[str, Any]) -> str:
    """Decoded JSON: told apart by its keys (all dicts share one class)."""
    if "choices" in chunk:
        return _read_chat(reader, chunk)
    if "type" in chunk:
        return _read_event(reader, chunk)
    if "candidates" in chunk or "usageMetadata" in chunk:
        return _read_gemini(reader, chunk)
    if len(chunk) == 1 or "contentBlockDelta" in chunk or "metadata" in chunk:
        return _read_bedrock(reader, chunk)
    return ""


def _read_nothing(reader: StreamReader, chunk: Any) -> str:
    return ""


def _fields_of(cls: type) -> Any:
    """The declared fields of a pydantic model class (v2 or v1), else None."""
    fields = getattr(cls, "model_fields", None)
    if fields is None:
        fields = getattr(cls, "__fields__", None)
    return fields


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


def _read_by_instance(reader: StreamReader, chunk: Any) -> str:
    """A chunk of a class that declares no fields (not a pydantic model): its reader is
    decided by the attributes of each instance, the slow way."""
    names = {n for n in ("choices", "type", "candidates", "usage_metadata") if hasattr(chunk, n)}
    if "choices" in names:
        return _read_chat(reader, chunk)
    if "candidates" in names or "usage_metadata" in names:
        return _read_gemini(reader, chunk)
    if "type" in names:
        return _read_event(reader, chunk)
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
        return _read_chat_object if _has_delta(fields) else _read_chat
    if "candidates" in fields or "usage_metadata" in fields:
        return _read_gemini_object
    if "type" in fields:
        return _event_reader(fields)
    return _read_nothing


class _Readers(Dict[type, Reader]):
    """Chunk class -> reader, filled on first sight of a class (bounded)."""

    def __missing__(self, cls: type) -> Reader:
        read = _choose(cls)
        if len(self) < 4096:
            self[cls] = read
        return read


#: The reader of each chunk class seen so far: ``READERS[type(chunk)](reader, chunk)``.
READERS = _Readers({str: _read_str, dict: _read_dict, bytes: _read_bytes})
