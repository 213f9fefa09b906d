"""Reading token usage and text out of provider responses and stream chunks.

Pure functions: no I/O and no imports from the rest of the SDK beyond leaves, so the metrics
layer, the providers and users' own code can all share them.

Both wire shapes are accepted, as objects (the ``openai``/``anthropic`` packages' models) or as
decoded JSON dicts:

* OpenAI chat completions: ``usage.prompt_tokens``, ``usage.completion_tokens``,
  ``usage.total_tokens``, ``usage.prompt_tokens_details.cached_tokens``. OpenAI's Responses API
  (``input_tokens``/``output_tokens`` with ``input_tokens_details``) counts cached tokens
  inside ``input_tokens``.
* Anthropic messages: ``usage.input_tokens``, ``output_tokens``, ``cache_read_input_tokens``,
  ``cache_creation_input_tokens``. ``input_tokens`` excludes the cache, so prompt tokens follow
  the OpenTelemetry GenAI convention: input + cache read + cache creation, and
  ``cached_tokens`` is the cache read.
"""

from typing import Any, NamedTuple, Optional


def field(obj: Any, name: str) -> Any:
    """``obj[name]`` for mappings, ``obj.name`` otherwise; None when absent."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    value = getattr(obj, name, None)
    return value


def _int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


class TokenUsage(NamedTuple):
    """Token counts as the provider reported them (None where it said nothing)."""

    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    total_tokens: Optional[int] = None
    cached_tokens: Optional[int] = None


def usage_from_usage_object(usage: Any) -> Optional[TokenUsage]:
    """Normalise one provider ``usage`` object or dict; None if it holds no counts."""
    if usage is None:
        return None
    prompt = _int(field(usage, "prompt_tokens"))
    completion = _int(field(usage, "completion_tokens"))
    if prompt is not None or completion is not None:
        total = _int(field(usage, "total_tokens"))
        details = field(usage, "prompt_tokens_details")
        cached = _int(field(details, "cached_tokens"))
        if total is None and prompt is not None and completion is not None:
            total = prompt + completion
        return TokenUsage(prompt, completion, total, cached)
    input_tokens = _int(field(usage, "input_tokens"))
    output_tokens = _int(field(usage, "output_tokens"))
    if input_tokens is None and output_tokens is None:
        return None
    responses_details = field(usage, "input_tokens_details")
    if responses_details is not None:
        # OpenAI Responses API: input_tokens already includes the cached part.
        cached = _int(field(responses_details, "cached_tokens"))
        prompt = input_tokens
    else:
        cache_read = _int(field(usage, "cache_read_input_tokens"))
        cache_creation = _int(field(usage, "cache_creation_input_tokens"))
        cached = cache_read
        prompt = None
        if input_tokens is not None:
            prompt = input_tokens + (cache_read or 0) + (cache_creation or 0)
    total = _int(field(usage, "total_tokens"))
    if total is None and prompt is not None and output_tokens is not None:
        total = prompt + output_tokens
    return TokenUsage(prompt, output_tokens, total, cached)


def extract_usage(response: Any) -> Optional[TokenUsage]:
    """Token usage of a whole (non-streamed) response, or None if it reports none.

    Never raises: a response of an unexpected shape gives None.
    """
    try:
        return usage_from_usage_object(field(response, "usage"))
    except Exception:
        return None


def extract_model(response: Any) -> Optional[str]:
    """The model the provider says answered (``response.model``), or None."""
    try:
        model = field(response, "model")
    except Exception:
        return None
    return model if isinstance(model, str) else None


class StreamUsage:
    """Accumulates what a stream reports about itself, one chunk at a time.

    Understands OpenAI chat-completion chunks (usage in a final chunk, usually with empty
    ``choices``) and Anthropic message events (``message_start`` carries input and cache usage;
    ``message_delta.usage.output_tokens`` is the running total for the whole message, so it is
    taken, not added). Strings and bytes count as text. Not thread-safe: one per stream.
    """

    __slots__ = (
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cached_tokens",
        "model",
        "finish_reason",
        "reported",
    )

    def __init__(self) -> None:
        self.prompt_tokens: Optional[int] = None
        self.completion_tokens: Optional[int] = None
        self.total_tokens: Optional[int] = None
        self.cached_tokens: Optional[int] = None
        self.model: Optional[str] = None
        self.finish_reason: Optional[str] = None
        self.reported = False

    def observe(self, chunk: Any) -> str:
        """Take note of one chunk; return the text it carries ("" if none)."""
        if isinstance(chunk, str):
            return chunk
        if isinstance(chunk, (bytes, bytearray)):
            return chunk.decode("utf-8", "replace")
        kind = field(chunk, "type")
        if isinstance(kind, str) and field(chunk, "choices") is None:
            return self._observe_anthropic(kind, chunk)
        return self._observe_openai(chunk)

    def _observe_openai(self, chunk: Any) -> str:
        if self.model is None:
            self.model = extract_model(chunk)
        usage = field(chunk, "usage")
        if usage is not None:
            self._apply(usage_from_usage_object(usage))
        choices = field(chunk, "choices")
        if not choices:
            return ""
        choice = choices[0]
        reason = field(choice, "finish_reason")
        if reason:
            self.finish_reason = reason
        delta = field(choice, "delta")
        text = field(delta, "content")
        if isinstance(text, str):
            return text
        # Tool-call argument fragments are output too: they count as content.
        calls = field(delta, "tool_calls")
        if calls:
            fn = field(calls[0], "function")
            args = field(fn, "arguments")
            return args if isinstance(args, str) else ""
        return ""

    def _observe_anthropic(self, kind: str, event: Any) -> str:
        if kind == "content_block_delta":
            delta = field(event, "delta")
            text = field(delta, "text")
            if not isinstance(text, str):
                text = field(delta, "partial_json")
            return text if isinstance(text, str) else ""
        if kind == "message_start":
            message = field(event, "message")
            if self.model is None:
                self.model = extract_model(message)
            self._apply(usage_from_usage_object(field(message, "usage")))
        elif kind == "message_delta":
            reason = field(field(event, "delta"), "stop_reason")
            if reason:
                self.finish_reason = reason
            usage = field(event, "usage")
            output = _int(field(usage, "output_tokens"))
            if output is not None:
                self.reported = True
                self.completion_tokens = output  # running total: take it, never add it
            # Newer API versions repeat input/cache counts here; take them when present.
            if _int(field(usage, "input_tokens")) is not None:
                update = usage_from_usage_object(usage)
                if update is not None and update.prompt_tokens is not None:
                    self.prompt_tokens = update.prompt_tokens
                    self.cached_tokens = update.cached_tokens
            self._fill_total()
        return ""

    def _apply(self, usage: Optional[TokenUsage]) -> None:
        if usage is None:
            return
        self.reported = True
        if usage.prompt_tokens is not None:
            self.prompt_tokens = usage.prompt_tokens
        if usage.completion_tokens is not None:
            self.completion_tokens = usage.completion_tokens
        if usage.cached_tokens is not None:
            self.cached_tokens = usage.cached_tokens
        if usage.total_tokens is not None:
            self.total_tokens = usage.total_tokens
        self._fill_total()

    def _fill_total(self) -> None:
        if self.prompt_tokens is not None and self.completion_tokens is not None:
            self.total_tokens = self.prompt_tokens + self.completion_tokens

    def usage(self) -> Optional[TokenUsage]:
        """The usage seen so far, or None if the stream reported none."""
        if not self.reported:
            return None
        return TokenUsage(
            self.prompt_tokens, self.completion_tokens, self.total_tokens, self.cached_tokens
        )
