"""OpenAI chat completions wire protocol (``POST {base}/chat/completions``).

Any OpenAI-compatible server (vLLM, Ollama, llama.cpp) speaks it too; point
``openai_base_url`` at it. Streams ask for ``stream_options.include_usage``: the usage then
arrives in a last chunk with empty ``choices``, before ``data: [DONE]``. Messages, content
parts and tools are OpenAI's own shapes and go as given; a tool may also be given as a bare
function (``{"name", "description", "parameters"}``) and a ``tool_choice`` as a tool name.

A content filter (Azure OpenAI's, or OpenAI's own) shows as ``finish_reason:
"content_filter"`` or as an error object with code ``content_filter`` in a 200 body; both
raise :class:`~steer_llm_sdk.errors.ContentFilterError` with the filter results, the text
the filtered choice has and the usage the body reports (billed though withheld).
"""

import json
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ContentFilterError, ProviderError, ServerError, StreamError
from ..streaming.sse import ServerSentEvent
from ..streaming.usage import extract_model, extract_usage, field
from ..types import Choice, ToolCall
from .base import END, Parsed

NAME = "openai"
STREAM_SHAPE = "chat"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def url(base_url: str, model: str = "") -> str:
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
    tools: Optional[List[Dict[str, Any]]] = None,
    tool_choice: Any = None,
) -> Dict[str, Any]:
    body: Dict[str, Any] = {"model": model, "messages": messages}
    if tools:
        body["tools"] = [_tool(tool) for tool in tools]
    if tool_choice is not None:
        body["tool_choice"] = _tool_choice(tool_choice)
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


def _tool(tool: Dict[str, Any]) -> Dict[str, Any]:
    if "type" not in tool and "name" in tool:  # a bare function definition
        return {"type": "function", "function": tool}
    return tool


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        return {"type": "function", "function": {"name": choice}}
    return choice


def parse_response(data: Any) -> Parsed:
    """Choices (text, tool calls, finish reason), model and usage of a chat.completion body.

    Raises:
        ContentFilterError: a choice was withheld by a content filter (with its text, if
            any, and the body's usage), or the body is an error object with code
            ``content_filter``.
        ProviderError: the body has no ``choices``.
    """
    choices = field(data, "choices")
    if not isinstance(choices, list):
        message, code = describe_error(data)
        if code and "content_filter" in code:
            raise ContentFilterError(
                f"openai: {message or 'content filtered'}",
                provider=NAME,
                filter_results=_filter_results(field(data, "error")),
                usage=extract_usage(data),
            )
        raise ProviderError("openai response has no choices", provider=NAME)
    out = []
    for position, choice in enumerate(choices):
        if not isinstance(choice, dict):
            continue
        finish = choice.get("finish_reason")
        answer = choice.get("message") or {}
        content = answer.get("content")
        if finish == "content_filter":
            raise ContentFilterError(
                "openai: the answer was withheld by the content filter",
                provider=NAME,
                filter_results=_filter_results(choice) or _filter_results(data),
                text=content if isinstance(content, str) else "",
                usage=extract_usage(data),
            )
        calls = [
            ToolCall.from_raw(
                call.get("id"),
                (call.get("function") or {}).get("name"),
                (call.get("function") or {}).get("arguments") or "",
            )
            for call in answer.get("tool_calls") or ()
            if isinstance(call, dict)
        ]
        index = choice.get("index")
        out.append(
            Choice(
                index if isinstance(index, int) else position,
                content if isinstance(content, str) else "",
                calls,
                finish,
            )
        )
    return Parsed(out or [Choice(0, "")], extract_model(data), extract_usage(data))


def _filter_results(obj: Any) -> Dict[str, Any]:
    """The content-filter results a body or choice carries (Azure's shapes), or {}."""
    if not isinstance(obj, dict):
        return {}
    out = {}
    for key in ("content_filter_results", "prompt_filter_results", "content_filter_result"):
        if obj.get(key) is not None:
            out[key] = obj[key]
    inner = obj.get("innererror")
    if isinstance(inner, dict) and inner.get("content_filter_result") is not None:
        out["content_filter_result"] = inner["content_filter_result"]
    return out


def describe_error(data: Any) -> Tuple[Optional[str], Optional[str]]:
    """(message, code) of an error body ``{"error": {"message", "type", "code"}}``."""
    error = field(data, "error")
    if not isinstance(error, dict):
        return None, None
    code = error.get("code") or error.get("type")
    return error.get("message"), code if isinstance(code, str) else None


def decode_event(event: ServerSentEvent) -> Any:
    """The decoded chunk of one event (its JSON parsed once); :data:`~.base.END` at
    ``[DONE]``.

    Raises:
        StreamError: the data is not JSON.
        ContentFilterError/ServerError: the provider sent an error object in place of a
            chunk.
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
    if type(chunk) is dict and "error" in chunk and isinstance(chunk["error"], dict):
        message, code = describe_error(chunk)
        if code and "content_filter" in code:
            raise ContentFilterError(
                f"openai: {message or 'content filtered'}",
                provider=NAME,
                filter_results=_filter_results(chunk["error"]),
            )
        raise ServerError(f"openai stream error: {message} ({code})", provider=NAME)
    return chunk


def raise_for_chunk(chunk: Any) -> None:
    """Raise for a chunk whose choice the content filter finished (the stream's reader
    finds it: ``finish_reason: "content_filter"``).

    Raises:
        ContentFilterError: with the filter results of that choice.
    """
    for choice in field(chunk, "choices") or ():
        if isinstance(choice, dict) and choice.get("finish_reason") == "content_filter":
            raise ContentFilterError(
                "openai: the answer was withheld by the content filter",
                provider=NAME,
                filter_results=_filter_results(choice),
            )
