"""Response and message types of the client. Leaf module: no imports from the package."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

#: A chat message: ``{"role": "system" | "user" | "assistant", "content": "..."}``.
Message = Mapping[str, Any]
#: What ``generate``/``stream`` accept: one user message as a string, or a list of messages.
Messages = Union[str, Sequence[Message]]


@dataclass(frozen=True)
class Usage:
    """Token counts of one call.

    ``prompt_tokens`` follows the OpenTelemetry GenAI convention: for Anthropic it is input +
    cache read + cache creation. ``cached_tokens`` are prompt tokens read from a cache,
    ``cache_creation_tokens`` those written to it (Anthropic). ``completion_tokens`` include
    ``reasoning_tokens`` (None when the provider does not say how many; OpenAI's reasoning
    models and Gemini do).
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: Optional[int] = None
    cache_creation_tokens: int = 0


@dataclass(frozen=True)
class GenerationResponse:
    """The result of ``SteerLLMClient.generate``.

    Attributes:
        text: the generated text.
        model: the model as the provider answered (e.g. a dated snapshot).
        provider: ``"openai"`` or ``"anthropic"``.
        usage: token counts as the provider reported them.
        finish_reason: ``stop``, ``length``, ``end_turn``, ``tool_calls``, ...
        request_id: the provider's request id (response header), when sent.
        raw: the decoded JSON body.
    """

    text: str
    model: str
    provider: str
    usage: Usage
    finish_reason: Optional[str] = None
    request_id: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class StreamingResponseWithUsage:
    """The result of ``SteerLLMClient.stream_with_usage``: a consumed stream.

    Attributes:
        text: the whole generated text.
        usage: token counts; see ``aggregation_method`` for where they came from.
        chunks: the text deltas in arrival order.
        finish_reason, model, provider, request_id: as for :class:`GenerationResponse`.
        json_objects: complete top-level JSON values in the text, when a JSON response
            format was asked for (empty otherwise).
        aggregation_method: ``provider`` (reported by the provider), ``tokenizer`` (counted
            locally with a BPE tokenizer) or ``heuristic`` (characters / 4).
        aggregation_confidence: 1.0 for ``provider``; lower for local counts.
    """

    text: str
    usage: Usage
    chunks: List[str]
    finish_reason: Optional[str]
    model: Optional[str]
    provider: str
    request_id: Optional[str] = None
    json_objects: List[Any] = field(default_factory=list)
    aggregation_method: str = "provider"
    aggregation_confidence: float = 1.0
