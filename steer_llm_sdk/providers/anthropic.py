"""Anthropic messages wire protocol (``POST {base}/v1/messages``).

System messages move to the top-level ``system`` field; ``max_tokens`` is required (1024
unless given). Streams are ``event:`` + ``data:`` pairs: ``message_start`` carries input and
cache usage, ``content_block_delta`` the text, ``message_delta`` the running total of output
tokens (taken, not added), ``message_stop`` the end. Anthropic has no JSON response format
parameter: ``response_format`` is recorded in metrics but not sent.
"""

import json
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ProviderError, ServerError, StreamError
from ..streaming.sse import ServerSentEvent
from ..streaming.usage import TokenUsage, extract_model, extract_usage, field
from .base import SKIP

NAME = "anthropic"
DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024


def url(base_url: str) -> str:
    return base_url.rstrip("/") + "/v1/messages"


def headers(api_key: Optional[str], version: str = DEFAULT_VERSION) -> Dict[str, str]:
    out = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "anthropic-version": version or DEFAULT_VERSION,
    }
    if api_key:
        out["x-api-key"] = api_key
    return out


def request_body(
    messages: List[Dict[str, Any]],
    model: str,
    *,
    max_tokens: Optional[int],
    temperature: Optional[float],
    response_format: Any,
    stream: bool,
    params: Dict[str, Any],
) -> Dict[str, Any]:
    system = [m["content"] for m in messages if m.get("role") == "system"]
    body: Dict[str, Any] = {
        "model": model,
        "messages": [m for m in messages if m.get("role") != "system"],
        "max_tokens": max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS,
    }
    if system:
        body["system"] = "\n\n".join(str(s) for s in system)
    if temperature is not None:
        body["temperature"] = temperature
    if stream:
        body["stream"] = True
    body.update(params)
    return body


def parse_response(data: Any) -> Tuple[str, Optional[str], Optional[str], Optional[TokenUsage]]:
    """(text, model, stop_reason, usage) of a message body."""
    content = field(data, "content")
    if not isinstance(content, list):
        raise ProviderError("anthropic response has no content", provider=NAME)
    text = "".join(
        block.get("text", "")
        for block in content
        if isinstance(block, dict) and block.get("type") == "text"
    )
    return text, extract_model(data), field(data, "stop_reason"), extract_usage(data)


def describe_error(data: Any) -> Tuple[Optional[str], Optional[str]]:
    """(message, type) of ``{"type": "error", "error": {"type", "message"}}``."""
    error = field(data, "error")
    if not isinstance(error, dict):
        return None, None
    kind = error.get("type")
    return error.get("message"), kind if isinstance(kind, str) else None


def decode_event(event: ServerSentEvent) -> Any:
    """The decoded event; :data:`SKIP` for pings.

    Raises:
        StreamError: the data is not JSON.
        ServerError: an ``error`` event (``overloaded_error`` and the like).
    """
    if event.event == "ping":
        return SKIP
    try:
        data = json.loads(event.data)
    except ValueError as exc:
        raise StreamError(
            f"malformed event from anthropic: {event.data[:80]!r}", provider=NAME, retryable=False
        ) from exc
    if event.event == "error" or (isinstance(data, dict) and data.get("type") == "error"):
        message, kind = describe_error(data)
        status = 529 if kind == "overloaded_error" else None
        raise ServerError(
            f"anthropic stream error: {message} ({kind})", provider=NAME, status_code=status
        )
    return data


def is_end(chunk: Any) -> bool:
    return isinstance(chunk, dict) and chunk.get("type") == "message_stop"
