"""What one call of the client asks for: :class:`CallOptions`.

:class:`~steer_llm_sdk.client.SteerLLMClient`'s ``generate``, ``stream`` and
``stream_with_usage`` take the same keyword arguments; each builds one ``CallOptions`` from
them, and routing (:func:`.routing.route_call`), the attempts (:class:`.attempts.Attempts`)
and the streams (:class:`.streams.StreamRun`) read what they need from it. A new option is
a field here, read where it matters, and a keyword of the public methods.
"""

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence

from ..types import Messages


@dataclass(frozen=True, eq=False, repr=False)
class CallOptions:
    """The arguments of one call, as the caller gave them (see
    :meth:`~steer_llm_sdk.client.SteerLLMClient.generate` for their meaning). Immutable;
    its repr names no prompt (an options object may end up in a traceback's locals).

    Attributes:
        messages, model, max_tokens, temperature, response_format, provider, retries,
            tools, tool_choice: the keyword arguments of the same names.
        params: the other keyword arguments, sent as they are in the request body.
    """

    __slots__ = (
        "messages",
        "model",
        "max_tokens",
        "temperature",
        "response_format",
        "provider",
        "retries",
        "tools",
        "tool_choice",
        "params",
    )

    messages: Messages
    model: str
    max_tokens: Optional[int]
    temperature: Optional[float]
    response_format: Any
    provider: Optional[str]
    retries: Optional[int]
    tools: Optional[Sequence[Dict[str, Any]]]
    tool_choice: Any
    params: Dict[str, Any]

    @property
    def format(self) -> str:
        """The name the response format is recorded under (``text``, ``json_object``, ...)."""
        return format_name(self.response_format)

    def __repr__(self) -> str:
        return f"CallOptions(model={self.model!r}, provider={self.provider!r})"


def format_name(response_format: Any) -> str:
    """The name a response format is recorded under (``text``, ``json_object``, ...)."""
    if response_format is None:
        return "text"
    if isinstance(response_format, str):
        return response_format
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    return str(kind or "custom")
