"""Response and message types of the client. Leaf module: no imports from the package."""

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

#: A chat message in OpenAI's shape: ``{"role": "system" | "user" | "assistant" | "tool",
#: "content": str | [parts]}``; assistant messages may carry ``tool_calls``, tool messages a
#: ``tool_call_id``. Content parts: ``{"type": "text", "text"}``, ``{"type": "image_url",
#: "image_url": {"url": "https://..." | "data:image/png;base64,..."}}``, or Anthropic-native
#: blocks (``cache_control`` kept) for Anthropic models.
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
class ToolCall:
    """A tool the model asked to call.

    Attributes:
        id: the provider's id for it (send it back in the ``role="tool"`` message).
        name: the function's name.
        arguments: the arguments decoded from JSON, or None when ``arguments_raw`` is not
            valid JSON (a model may produce that).
        arguments_raw: the arguments exactly as the model produced them.
    """

    id: str
    name: str
    arguments: Any
    arguments_raw: str

    @classmethod
    def from_raw(cls, id: Any, name: Any, raw: Any) -> "ToolCall":
        """Build from the wire: ``raw`` is the JSON text (OpenAI) or the decoded object
        (Anthropic's ``input``)."""
        if isinstance(raw, str):
            text = raw
            try:
                arguments = json.loads(raw) if raw.strip() else {}
            except ValueError:
                arguments = None
        else:
            arguments = raw if raw is not None else {}
            text = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
        return cls(str(id or ""), str(name or ""), arguments, text)

    def to_message(self) -> Dict[str, Any]:
        """This call in an assistant message's ``tool_calls`` (OpenAI's shape)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments_raw},
        }


@dataclass(frozen=True)
class Choice:
    """One of the answers of a call (OpenAI's ``n`` asks for several).

    Attributes:
        index: its position.
        text: its text (tool-call arguments are never text).
        tool_calls: the tools it asks to call, in order.
        finish_reason: ``stop``, ``length``, ``tool_calls``, ``end_turn``, ``tool_use``, ...
    """

    index: int
    text: str
    tool_calls: List[ToolCall] = field(default_factory=list)
    finish_reason: Optional[str] = None


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
        tool_calls: the tools the (first) answer asks to call.
        choices: every answer; ``text``, ``tool_calls`` and ``finish_reason`` are the
            first one's.
    """

    text: str
    model: str
    provider: str
    usage: Usage
    finish_reason: Optional[str] = None
    request_id: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)
    tool_calls: List[ToolCall] = field(default_factory=list)
    choices: List[Choice] = field(default_factory=list)

    def assistant_message(self) -> Dict[str, Any]:
        """The answer as the assistant message to send back in a conversation (with its
        tool calls), in OpenAI's shape; the client translates it for Anthropic."""
        return _assistant_message(self.text, self.tool_calls)


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
        tool_calls: the tools the (first) answer asks to call, assembled from the streamed
            fragments.
        choices: every answer, kept apart by index (``text`` is the first one's).
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
    tool_calls: List[ToolCall] = field(default_factory=list)
    choices: List[Choice] = field(default_factory=list)

    def assistant_message(self) -> Dict[str, Any]:
        """As :meth:`GenerationResponse.assistant_message`."""
        return _assistant_message(self.text, self.tool_calls)


def _assistant_message(text: str, tool_calls: List[ToolCall]) -> Dict[str, Any]:
    message: Dict[str, Any] = {"role": "assistant", "content": text or None}
    if tool_calls:
        message["tool_calls"] = [call.to_message() for call in tool_calls]
    elif message["content"] is None:
        message["content"] = ""
    return message
