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
    """Token counts as the provider reported them (None where it said nothing).

    In the OpenTelemetry GenAI meaning: ``prompt_tokens`` include cache reads and writes,
    ``completion_tokens`` include reasoning (thinking) tokens. ``cached_tokens`` are the
    prompt tokens read from a cache, ``cache_creation_tokens`` those written to it (billed
    apart by Anthropic and Bedrock), ``reasoning_tokens`` the part of the completion spent
    reasoning, when the provider says (OpenAI, Gemini).
    """

    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    total_tokens: Optional[int] = None
    cached_tokens: Optional[int] = None
    reasoning_tokens: Optional[int] = None
    cache_creation_tokens: Optional[int] = None


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
        reasoning = _int(field(field(usage, "completion_tokens_details"), "reasoning_tokens"))
        if total is None and prompt is not None and completion is not None:
            total = prompt + completion
        return TokenUsage(prompt, completion, total, cached, reasoning)
    input_tokens = _int(field(usage, "input_tokens"))
    output_tokens = _int(field(usage, "output_tokens"))
    if input_tokens is None and output_tokens is None:
        return None
    responses_details = field(usage, "input_tokens_details")
    reasoning = cache_creation = None
    if responses_details is not None:
        # OpenAI Responses API: input_tokens already includes the cached part.
        cached = _int(field(responses_details, "cached_tokens"))
        prompt = input_tokens
        reasoning = _int(field(field(usage, "output_tokens_details"), "reasoning_tokens"))
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
    return TokenUsage(prompt, output_tokens, total, cached, reasoning, cache_creation)


def gemini_usage(usage: Any) -> Optional[TokenUsage]:
    """Gemini ``usageMetadata`` (dict, camelCase) or ``usage_metadata`` (object) normalised:
    prompt includes cached content; thoughts are output."""
    if type(usage) is dict:
        prompt = _int(usage.get("promptTokenCount"))
        candidates = _int(usage.get("candidatesTokenCount"))
        thoughts = _int(usage.get("thoughtsTokenCount"))
        cached = _int(usage.get("cachedContentTokenCount"))
        total = _int(usage.get("totalTokenCount"))
    else:
        prompt = _int(getattr(usage, "prompt_token_count", None))
        candidates = _int(getattr(usage, "candidates_token_count", None))
        thoughts = _int(getattr(usage, "thoughts_token_count", None))
        cached = _int(getattr(usage, "cached_content_token_count", None))
        total = _int(getattr(usage, "total_token_count", None))
    if prompt is None and candidates is None and thoughts is None:
        return None
    completion = None
    if candidates is not None or thoughts is not None:
        completion = (candidates or 0) + (thoughts or 0)
    return TokenUsage(prompt, completion, total, cached, thoughts)


def bedrock_usage(usage: Any) -> Optional[TokenUsage]:
    """Bedrock Converse ``usage``: ``inputTokens`` excludes the cache, so prompt tokens are
    input + cache read + cache write; ``cached_tokens`` is the cache read."""
    if not isinstance(usage, dict):
        return None
    input_tokens = _int(usage.get("inputTokens"))
    output = _int(usage.get("outputTokens"))
    if input_tokens is None and output is None:
        return None
    read = _int(usage.get("cacheReadInputTokens"))
    write = _int(usage.get("cacheWriteInputTokens"))
    prompt = None if input_tokens is None else input_tokens + (read or 0) + (write or 0)
    total = _int(usage.get("totalTokens"))
    if total is None and prompt is not None and output is not None:
        total = prompt + output
    return TokenUsage(prompt, output, total, read, None, write)


def extract_usage(response: Any) -> Optional[TokenUsage]:
    """Token usage of a whole (non-streamed) response, or None if it reports none: OpenAI
    chat completions, completions, embeddings and Responses API objects, Anthropic messages,
    Gemini ``GenerateContentResponse`` and Bedrock Converse responses, as SDK objects or
    decoded JSON.

    Never raises: a response of an unexpected shape gives None.
    """
    try:
        usage = field(response, "usage")
        if usage is not None:
            if isinstance(usage, dict) and "inputTokens" in usage:
                return bedrock_usage(usage)
            return usage_from_usage_object(usage)
        if isinstance(response, dict):
            metadata = response.get("usageMetadata")
        else:
            metadata = getattr(response, "usage_metadata", None)
        return None if metadata is None else gemini_usage(metadata)
    except Exception:
        return None


def extract_model(response: Any) -> Optional[str]:
    """The model the provider says answered (``model``, Gemini's ``model_version``), or
    None."""
    try:
        model = field(response, "model")
        if model is None:
            model = field(
                response, "modelVersion" if isinstance(response, dict) else "model_version"
            )
    except Exception:
        return None
    return model if isinstance(model, str) else None
