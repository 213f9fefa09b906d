"""Reading token usage and text out of provider responses and stream chunks.

Pure functions: no I/O and no imports from the rest of the SDK beyond leaves, so the metrics
layer, the providers and users' own code can all share them.

Both wire shapes are accepted, as objects (the ``openai``/``anthropic`` packages' models) or as
decoded JSON dicts:

* OpenAI chat completions: ``usage.prompt_tokens``, ``usage.completion_tokens``,
  ``usage.total_tokens``, ``usage.prompt_tokens_details.cached_tokens`` (DeepSeek's answers
  without ``prompt_tokens_details`` name their cache reads ``prompt_cache_hit_tokens``) and
  ``cache_write_tokens`` (cache writes: LiteLLM's objects for Anthropic carry them there).
  OpenAI's Responses API (``input_tokens``/``output_tokens`` with ``input_tokens_details``)
  counts cached tokens inside ``input_tokens``.
* Gemini: ``usageMetadata``; the prompt of tool use (search grounding, code execution,
  ``toolUsePromptTokenCount``) is billed as input, so it counts as prompt tokens.
* Cohere v2 chat: ``usage.billed_units`` (what is billed), else ``usage.tokens``
  (see :func:`cohere_usage`).
* Anthropic messages: ``usage.input_tokens``, ``output_tokens``, ``cache_read_input_tokens``,
  ``cache_creation_input_tokens``. ``input_tokens`` excludes the cache, so prompt tokens follow
  the OpenTelemetry GenAI convention: input + cache read + cache creation, and
  ``cached_tokens`` is the cache read.
* Bedrock: Converse's ``usage`` (``inputTokens`` without the cache, like Anthropic's); and
  InvokeModel, whose body is the model family's own format (see :func:`bedrock_body_usage`),
  whose response headers carry the counts (:func:`bedrock_header_usage`) and whose streams
  end with ``amazon-bedrock-invocationMetrics`` (:func:`invocation_metrics_usage`).
"""

import json
from typing import Any, Dict, Mapping, NamedTuple, Optional


def field(obj: Any, name: str) -> Any:
    """``obj[name]`` for mappings, ``obj.name`` otherwise; None when absent."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    value = getattr(obj, name, None)
    return value


def _int(value: Any) -> Optional[int]:
    if type(value) is int:
        return value
    if value is None or isinstance(value, bool):
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


#: ``_usage(TokenUsage, six values)``: a TokenUsage without the generated ``__new__``'s
#: Python frame, for the path every chat answer takes.
_usage = tuple.__new__


def usage_from_usage_object(usage: Any) -> Optional[TokenUsage]:
    """Normalise one provider ``usage`` object or dict; None if it holds no counts."""
    if usage is None:
        return None
    # The chat shape first, read with as few calls as possible: it is every OpenAI-compatible
    # answer, read once per call (``field`` and ``_int`` below, inlined).
    if type(usage) is dict:
        get: Any = usage.get
    else:
        # A model object keeping its declared fields in ``__dict__`` (pydantic: openai's
        # usage, LiteLLM's) is read there without a Python call per field; one that does
        # not declare the details (they may sit among its extras) through ``getattr``.
        fields = getattr(usage, "__dict__", None)
        if type(fields) is dict and "prompt_tokens_details" in fields:
            get = fields.get
        else:

            def get(name: str, _of: Any = usage) -> Any:
                return getattr(_of, name, None)

    prompt = get("prompt_tokens")
    prompt = prompt if type(prompt) is int else _int(prompt)
    completion = get("completion_tokens")
    completion = completion if type(completion) is int else _int(completion)
    if prompt is not None or completion is not None:
        total = _int(get("total_tokens"))
        details = get("prompt_tokens_details")
        cached = written = None
        if details is not None:
            cached = _int(field(details, "cached_tokens"))
            written = _int(field(details, "cache_write_tokens"))
        if cached is None:
            cached = _cache_hits(usage)
        reasoning = _int(field(get("completion_tokens_details"), "reasoning_tokens"))
        if total is None and prompt is not None and completion is not None:
            total = prompt + completion
        return _usage(TokenUsage, (prompt, completion, total, cached, reasoning, written))
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


#: DeepSeek's name for the prompt tokens read from its cache.
_CACHE_HITS = "prompt_cache_hit_tokens"


def _cache_hits(usage: Any) -> Optional[int]:
    """DeepSeek's ``prompt_cache_hit_tokens``, asked for only when a chat usage has no
    ``prompt_tokens_details.cached_tokens``. An SDK model that does not declare the field
    keeps it among its extra fields: read there, so that a usage without it costs no
    attribute look-up that misses (on a pydantic model a miss raises and catches inside it,
    many times the cost of a hit)."""
    if type(usage) is dict:
        return _int(usage.get(_CACHE_HITS))
    extra = getattr(usage, "__pydantic_extra__", None)
    if type(extra) is dict:
        return _int(extra.get(_CACHE_HITS))
    return _int(getattr(usage, _CACHE_HITS, None))


def cohere_usage(usage: Any) -> Optional[TokenUsage]:
    """Cohere's ``usage`` (of a v2 chat response or a ``message-end`` event), object or dict.

    The counts are the billed ones, ``billed_units.input_tokens``/``output_tokens``: what
    Cohere charges. Its ``tokens`` count what the model processed, Cohere's own system
    prompt included (hundreds of tokens it does not bill: 496 input tokens for a one-token
    question), and are taken only when no billed units are given; ``cached_tokens``
    counts those processed tokens too, so it goes with them only (beside billed units it
    could exceed the billed prompt). None when no counts are given."""
    billed = field(usage, "billed_units")
    prompt, completion = _int(field(billed, "input_tokens")), _int(field(billed, "output_tokens"))
    cached = None
    if prompt is None and completion is None:
        tokens = field(usage, "tokens")
        prompt, completion = (
            _int(field(tokens, "input_tokens")),
            _int(field(tokens, "output_tokens")),
        )
        if prompt is None and completion is None:
            return None
        cached = _int(field(usage, "cached_tokens"))
    total = None if prompt is None or completion is None else prompt + completion
    return TokenUsage(prompt, completion, total, cached)


def gemini_usage(usage: Any) -> Optional[TokenUsage]:
    """Gemini ``usageMetadata`` (dict, camelCase) or ``usage_metadata`` (object) normalised:
    prompt includes cached content and the prompt of tool use (``toolUsePromptTokenCount``,
    billed as input); thoughts are output."""
    if type(usage) is dict:
        prompt = _int(usage.get("promptTokenCount"))
        candidates = _int(usage.get("candidatesTokenCount"))
        thoughts = _int(usage.get("thoughtsTokenCount"))
        cached = _int(usage.get("cachedContentTokenCount"))
        total = _int(usage.get("totalTokenCount"))
        tool_use = _int(usage.get("toolUsePromptTokenCount"))
    else:
        prompt = _int(getattr(usage, "prompt_token_count", None))
        candidates = _int(getattr(usage, "candidates_token_count", None))
        thoughts = _int(getattr(usage, "thoughts_token_count", None))
        cached = _int(getattr(usage, "cached_content_token_count", None))
        total = _int(getattr(usage, "total_token_count", None))
        tool_use = _int(getattr(usage, "tool_use_prompt_token_count", None))
    if tool_use:
        prompt = (prompt or 0) + tool_use
    if prompt is None and candidates is None and thoughts is None:
        return None
    completion = None
    if candidates is not None or thoughts is not None:
        completion = (candidates or 0) + (thoughts or 0)
    return TokenUsage(prompt, completion, total, cached, thoughts)


def without_cache(
    input_tokens: Optional[int],
    output: Optional[int],
    read: Optional[int] = None,
    write: Optional[int] = None,
    total: Optional[int] = None,
) -> Optional[TokenUsage]:
    """Counts whose input excludes the cache (Bedrock's, Anthropic's) in the GenAI meaning:
    prompt tokens are input + cache read + cache write, ``cached_tokens`` the cache read,
    ``cache_creation_tokens`` the write. None when neither input nor output is known."""
    if input_tokens is None and output is None:
        return None
    prompt = None if input_tokens is None else input_tokens + (read or 0) + (write or 0)
    if total is None and prompt is not None and output is not None:
        total = prompt + output
    return TokenUsage(prompt, output, total, read, None, write)


def bedrock_usage(usage: Any) -> Optional[TokenUsage]:
    """Bedrock ``usage`` with ``inputTokens``/``outputTokens`` (Converse, and Amazon Nova's
    InvokeModel body, which names its cache counts ``cacheReadInputTokenCount`` and
    ``cacheWriteInputTokenCount``): ``inputTokens`` excludes the cache."""
    if not isinstance(usage, dict):
        return None
    read = _int(usage.get("cacheReadInputTokens"))
    if read is None:
        read = _int(usage.get("cacheReadInputTokenCount"))
    write = _int(usage.get("cacheWriteInputTokens"))
    if write is None:
        write = _int(usage.get("cacheWriteInputTokenCount"))
    return without_cache(
        _int(usage.get("inputTokens")),
        _int(usage.get("outputTokens")),
        read,
        write,
        _int(usage.get("totalTokens")),
    )


#: The key of the metrics Bedrock adds to the last chunk of an InvokeModel stream.
INVOCATION_METRICS = "amazon-bedrock-invocationMetrics"


def invocation_metrics_usage(metrics: Any) -> Optional[TokenUsage]:
    """The usage in a Bedrock stream's ``amazon-bedrock-invocationMetrics``:
    ``inputTokenCount`` (without the cache), ``outputTokenCount``,
    ``cacheReadInputTokenCount``, ``cacheWriteInputTokenCount``."""
    if not isinstance(metrics, dict):
        return None
    return without_cache(
        _int(metrics.get("inputTokenCount")),
        _int(metrics.get("outputTokenCount")),
        _int(metrics.get("cacheReadInputTokenCount")),
        _int(metrics.get("cacheWriteInputTokenCount")),
    )


#: Bedrock's InvokeModel usage headers, as botocore keeps them (lower case).
_HEADER_INPUT = "x-amzn-bedrock-input-token-count"
_HEADER_OUTPUT = "x-amzn-bedrock-output-token-count"
_HEADER_READ = "x-amzn-bedrock-cache-read-input-token-count"
_HEADER_WRITE = "x-amzn-bedrock-cache-write-input-token-count"


def _header_count(headers: Mapping[str, Any], name: str) -> Optional[int]:
    value = headers.get(name)
    if isinstance(value, str):
        value = value.strip()
        return int(value) if value.isdigit() else None
    return _int(value)


def bedrock_header_usage(headers: Any) -> Optional[TokenUsage]:
    """The usage Bedrock's InvokeModel reports in its response headers (a mapping with
    lower-case names, as botocore's ``ResponseMetadata["HTTPHeaders"]``):
    ``X-Amzn-Bedrock-Input-Token-Count`` (without the cache), ``-Output-Token-Count``,
    ``-Cache-Read-Input-Token-Count``, ``-Cache-Write-Input-Token-Count``. None when the
    input and output counts are both absent."""
    if not isinstance(headers, Mapping) or (
        _HEADER_INPUT not in headers and _HEADER_OUTPUT not in headers
    ):
        return None
    return without_cache(
        _header_count(headers, _HEADER_INPUT),
        _header_count(headers, _HEADER_OUTPUT),
        _header_count(headers, _HEADER_READ),
        _header_count(headers, _HEADER_WRITE),
    )


def bedrock_body_usage(body: Any) -> Optional[TokenUsage]:
    """The usage in a Bedrock InvokeModel response: the botocore response (its headers,
    :func:`bedrock_header_usage`; the body is never read) or a decoded body of a family
    that reports usage in it. ``usage`` objects (Anthropic, Amazon Nova, AI21 Jamba, Mistral
    chat) are read by :func:`extract_usage` before this is asked; here:

    * Amazon Titan text: ``inputTextTokenCount``, ``results[].tokenCount`` (summed); Titan
      embeddings: ``inputTextTokenCount`` only;
    * Meta Llama: ``prompt_token_count``, ``generation_token_count``;
    * Cohere: ``meta.billed_units`` (else ``meta.tokens``) ``input_tokens``/``output_tokens``;
    * AI21 Jurassic-2: the lengths of ``prompt.tokens`` and ``completions[].data.tokens``;
    * a stream's last chunk: ``amazon-bedrock-invocationMetrics``.

    Mistral's ``outputs`` and Cohere's bodies without ``meta`` carry no usage: only the
    headers have it. None when nothing is found."""
    if not isinstance(body, dict):
        return None
    metadata = body.get("ResponseMetadata")
    if isinstance(metadata, dict):
        return bedrock_header_usage(metadata.get("HTTPHeaders"))
    if "inputTextTokenCount" in body:
        results = body.get("results")
        output = None
        if isinstance(results, list) and results:
            counts = [_int(r.get("tokenCount")) if isinstance(r, dict) else None for r in results]
            output = None if None in counts else sum(c for c in counts if c is not None)
        return _plain(_int(body["inputTextTokenCount"]), output)
    if "prompt_token_count" in body or "generation_token_count" in body:
        return _plain(
            _int(body.get("prompt_token_count")), _int(body.get("generation_token_count"))
        )
    meta = body.get("meta")
    if isinstance(meta, dict):
        billed = meta.get("billed_units")
        if not isinstance(billed, dict) or _int(billed.get("input_tokens")) is None:
            billed = meta.get("tokens")
        if isinstance(billed, dict):
            return _plain(_int(billed.get("input_tokens")), _int(billed.get("output_tokens")))
    if isinstance(body.get("completions"), list) and isinstance(body.get("prompt"), dict):
        return _jurassic(body)
    if INVOCATION_METRICS in body:
        return invocation_metrics_usage(body[INVOCATION_METRICS])
    return None


def _plain(prompt: Optional[int], completion: Optional[int]) -> Optional[TokenUsage]:
    if prompt is None and completion is None:
        return None
    total = None if prompt is None or completion is None else prompt + completion
    return TokenUsage(prompt, completion, total)


def _jurassic(body: Dict[str, Any]) -> Optional[TokenUsage]:
    """AI21 Jurassic-2: one token object per token, in the prompt and in each completion."""
    prompt_tokens = body["prompt"].get("tokens")
    prompt = len(prompt_tokens) if isinstance(prompt_tokens, list) else None
    completion = None
    for item in body["completions"]:
        tokens = (item.get("data") or {}).get("tokens") if isinstance(item, dict) else None
        if isinstance(tokens, list):
            completion = (completion or 0) + len(tokens)
    return _plain(prompt, completion)


def json_body(data: Any) -> Any:
    """A JSON object sent as bytes (a Bedrock InvokeModel body as read), decoded; None when
    ``data`` is not bytes holding one."""
    if not isinstance(data, (bytes, bytearray)) or data[:64].lstrip()[:1] != b"{":
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def extract_usage(response: Any) -> Optional[TokenUsage]:
    """Token usage of a whole (non-streamed) response, or None if it reports none: OpenAI
    chat completions, completions, embeddings and Responses API objects, Anthropic messages,
    Gemini ``GenerateContentResponse``, Bedrock Converse responses, and Bedrock InvokeModel
    responses (boto3's, by their headers) and bodies of every model family
    (:func:`bedrock_body_usage`), as SDK objects or decoded JSON, or a JSON body as bytes.

    Never raises: a response of an unexpected shape gives None.
    """
    try:
        if isinstance(response, (bytes, bytearray)):
            response = json_body(response)
        usage = field(response, "usage")
        if usage is not None:
            if isinstance(usage, dict) and "inputTokens" in usage:
                return bedrock_usage(usage)
            found = usage_from_usage_object(usage)
            # No OpenAI or Anthropic counts: Cohere's billed units (or processed tokens).
            return found if found is not None else cohere_usage(usage)
        if isinstance(response, dict):
            metadata = response.get("usageMetadata")
            if metadata is None:
                return bedrock_body_usage(response)
        else:
            metadata = getattr(response, "usage_metadata", None)
        return None if metadata is None else gemini_usage(metadata)
    except Exception:
        return None


def extract_model(response: Any) -> Optional[str]:
    """The model the provider says answered (``model``, Gemini's ``model_version``), or
    None."""
    try:
        if isinstance(response, (bytes, bytearray)):
            response = json_body(response)
        model = field(response, "model")
        if model is None:
            model = field(
                response, "modelVersion" if isinstance(response, dict) else "model_version"
            )
    except Exception:
        return None
    return model if isinstance(model, str) else None
