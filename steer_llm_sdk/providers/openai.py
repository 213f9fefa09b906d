"""OpenAI chat completions wire protocol (``POST {base}/chat/completions``).

Any OpenAI-compatible server (vLLM, Ollama, llama.cpp) speaks it too; point
``openai_base_url`` at it. Streams ask for ``stream_options.include_usage``: the usage then
arrives in a last chunk with empty ``choices``, before ``data: [DONE]``.
"""

import json
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ProviderError, ServerError, StreamError
from ..streaming.sse import ServerSentEvent
from ..streaming.usage import TokenUsage, extract_model, extract_usage, field
from .base import END

NAME = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def url(base_url: str) -> str:
    return base_url.rstrip("/") + "/chat/completions"


def headers(api_key: Optional[str], version: str = "") -> Dict[str, str]:
    out = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        out["Authorization"] = f"Bearer {api_key}"
    return out


def _uses_completion_tokens(model: str) -> bool:
    # Reasoning models reject max_tokens; everything OpenAI-compatible accepts it otherwise.
    return model.startswith(("o1", "o3", "o4", "gpt-5"))


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
    body: Dict[str, Any] = {"model": model, "messages": messages}
    if max_tokens is not None:
        body["max_completion_tokens" if _uses_completion_tokens(model) else "max_tokens"] = (
            max_tokens
        )
    if temperature is not None:
        body["temperature"] = temperature
    if response_format is not None:
        body["response_format"] = (
            {"type": response_format} if isinstance(response_format, str) else response_format
        )
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    body.update(params)
    return body


def parse_response(data: Any) -> Tuple[str, Optional[str], Optional[str], Optional[TokenUsage]]:
    """(text, model, finish_reason, usage) of a chat.completion body."""
    choices = field(data, "choices")
    if not isinstance(choices, list):
        raise ProviderError("openai response has no choices", provider=NAME)
    text = ""
    finish = None
    if choices:
        message = field(choices[0], "message") or {}
        content = field(message, "content")
        text = content if isinstance(content, str) else ""
        finish = field(choices[0], "finish_reason")
    return text, extract_model(data), finish, extract_usage(data)


def describe_error(data: Any) -> Tuple[Optional[str], Optional[str]]:
    """(message, code) of an error body ``{"error": {"message", "type", "code"}}``."""
    error = field(data, "error")
    if not isinstance(error, dict):
        return None, None
    code = error.get("code") or error.get("type")
    return error.get("message"), code if isinstance(code, str) else None


def decode_event(event: ServerSentEvent) -> Any:
    """The decoded chunk of one event; :data:`~.base.END` at ``[DONE]``.

    Raises:
        StreamError: the data is not JSON.
        ServerError/ProviderError: the provider sent an error object mid-stream.
    """
    data = event.data
    if data == "[DONE]":
        return END
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise StreamError(
            f"malformed event from openai: {data[:80]!r}", provider=NAME, retryable=False
        ) from exc
    if isinstance(chunk, dict) and isinstance(chunk.get("error"), dict):
        message, code = describe_error(chunk)
        raise ServerError(f"openai stream error: {message} ({code})", provider=NAME)
    return chunk


def is_end(chunk: Any) -> bool:
    return False  # [DONE] ends the stream as END, not as a chunk
