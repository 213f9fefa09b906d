"""The shape every wire protocol has, checked by mypy: :class:`WireProtocol`.

A protocol is a module (``openai``, ``anthropic``) providing the names below. Decoding a
streamed event gives a chunk, :data:`SKIP` (an event to count but not to read, such as a
ping) or :data:`END` (the stream's end marker, not a chunk).
"""

from typing import Any, Dict, List, NamedTuple, Optional, Protocol, Tuple

from ..streaming.sse import ServerSentEvent
from ..streaming.usage import TokenUsage
from ..types import Choice


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: ``decode_event``'s answer for an event that is counted but carries nothing to read.
SKIP: Any = _Marker("SKIP")
#: ``decode_event``'s answer for the end-of-stream marker.
END: Any = _Marker("END")


class Parsed(NamedTuple):
    """A whole (non-streamed) response, read.

    Attributes:
        choices: every answer (at least one), by index.
        model: the model the provider says answered.
        usage: as reported, or None.
    """

    choices: List[Choice]
    model: Optional[str]
    usage: Optional[TokenUsage]


class WireProtocol(Protocol):
    """One wire protocol: how to ask, and how to read answers and errors."""

    NAME: str
    DEFAULT_BASE_URL: str
    #: The shape of its streamed chunks, read once each by the stream's reader (``chat``,
    #: ``anthropic``, ``responses``; see :class:`~steer_llm_sdk.streaming.assemble.Assembler`),
    #: which also says where the stream ends.
    STREAM_SHAPE: str

    def url(self, base_url: str, model: str = "") -> str:
        """The endpoint for a base URL (and the model, where the URL names it)."""

    def headers(self, api_key: Optional[str], version: str = "") -> Dict[str, str]:
        """Request headers, credentials included."""

    def request_body(
        self,
        messages: List[Dict[str, Any]],
        model: str,
        *,
        max_tokens: Optional[int],
        temperature: Optional[float],
        response_format: Any,
        stream: bool,
        params: Dict[str, Any],
        tools: Optional[List[Dict[str, Any]]] = None,
        tool_choice: Any = None,
    ) -> Dict[str, Any]:
        """The JSON body of a request: OpenAI-shaped messages, tools and tool choice,
        translated to the protocol's own shape."""

    def parse_response(self, data: Any) -> Parsed:
        """Read a whole (non-streamed) response body.

        Raises:
            ContentFilterError: the provider withheld the answer (content filter).
            ProviderError: the body is not a response of this protocol.
        """

    def describe_error(self, data: Any) -> Tuple[Optional[str], Optional[str]]:
        """(message, code) of an error body."""

    def decode_event(self, event: ServerSentEvent) -> Any:
        """One streamed event: its chunk (the JSON decoded, once), :data:`SKIP` or
        :data:`END`. Reads no field of the chunk beyond what says it is an error in place
        of a chunk (the event's name, OpenAI's ``error`` object): the chunk's fields are
        read once, by the stream's reader (see :attr:`STREAM_SHAPE`).

        Raises:
            StreamError: the data is not JSON.
            SteerLLMError: the provider's error, for an event that is one.
        """

    def raise_for_chunk(self, chunk: Any) -> None:
        """Raise the provider's error for a chunk that the stream's reader marks as
        carrying one (an ``error`` event, a failed or filtered response, a choice the
        content filter finished); return when it carries none (a response cut at its token
        limit).

        Raises:
            SteerLLMError: the provider's error the chunk carries.
        """
