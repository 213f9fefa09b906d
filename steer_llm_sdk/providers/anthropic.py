"""Anthropic messages wire protocol (``POST {base}/v1/messages``).

System messages move to the top-level ``system`` field; ``max_tokens`` is required (1024
unless given). Streams are ``event:`` + ``data:`` pairs: ``message_start`` carries input and
cache usage, ``content_block_delta`` the text, ``message_delta`` the running total of output
tokens (taken, not added), ``message_stop`` the end (the stream's reader,
:class:`~steer_llm_sdk.streaming.assemble.Assembler`, knows it). Anthropic has no JSON
response format parameter: ``response_format`` is recorded in metrics but not sent.

An answer that stops with ``stop_reason: "refusal"`` (Anthropic's classifiers stopped it)
raises :class:`~steer_llm_sdk.errors.ContentFilterError`, as a content filter does on
OpenAI: with the text so far, the usage (billed up to the refusal) and ``stop_details``
as its ``filter_results``.

The client speaks OpenAI's shapes; they are translated here:

* content parts: ``text`` stays a text block, ``image_url`` becomes an ``image`` block (a
  ``data:`` URL as base64, else by URL); Anthropic-native blocks (``image``, ``document``,
  ``tool_result``, ``thinking``, ...) pass through, ``cache_control`` kept, on the system
  prompt too (a system prompt of blocks stays blocks, so prompt caching works);
* an assistant message's ``tool_calls`` become ``tool_use`` blocks, ``role="tool"`` messages
  ``tool_result`` blocks of one user turn;
* tools given as OpenAI functions become ``{"name", "description", "input_schema"}``
  (Anthropic-native tools pass through); ``tool_choice`` ``auto``/``required``/``none``/a
  name becomes ``{"type": "auto" | "any" | "none" | "tool"}``.
"""

import json
from typing import Any, Dict, List, Optional, Tuple

from ..errors import (
    ContentFilterError,
    InvalidRequestError,
    ProviderError,
    ServerError,
    StreamError,
)
from ..streaming.sse import ServerSentEvent
from ..streaming.usage import extract_model, extract_usage, field
from ..types import Choice, ToolCall
from .base import SKIP, Parsed

NAME = "anthropic"
STREAM_SHAPE = "anthropic"
DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024


def url(base_url: str, model: str = "") -> str:
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
    tools: Optional[List[Dict[str, Any]]] = None,
    tool_choice: Any = None,
) -> Dict[str, Any]:
    system = [m.get("content") for m in messages if m.get("role") == "system"]
    body: Dict[str, Any] = {
        "model": model,
        "messages": _messages([m for m in messages if m.get("role") != "system"]),
        "max_tokens": max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS,
    }
    if system:
        body["system"] = _system(system)
    if temperature is not None:
        body["temperature"] = temperature
    if tools:
        body["tools"] = [_tool(tool) for tool in tools]
    if tool_choice is not None:
        body["tool_choice"] = _tool_choice(tool_choice)
    if stream:
        body["stream"] = True
    body.update(params)
    return body


def _system(contents: List[Any]) -> Any:
    """One string when every system message is text, else a list of blocks."""
    if all(isinstance(c, str) for c in contents):
        return "\n\n".join(contents)
    blocks: List[Dict[str, Any]] = []
    for content in contents:
        blocks.extend(_blocks(content))
    return blocks


def _blocks(content: Any) -> List[Dict[str, Any]]:
    """Content (a string or OpenAI/Anthropic parts) as Anthropic content blocks."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise InvalidRequestError("message content must be a string or a list of parts")
    return [_block(part) for part in content]


def _block(part: Any) -> Dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, dict):
        raise InvalidRequestError(f"a content part must be a mapping, got {type(part).__name__}")
    if part.get("type") != "image_url":
        return dict(part)  # text (cache_control kept) and Anthropic-native blocks
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise InvalidRequestError("an image_url part needs a url")
    block: Dict[str, Any]
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";", 1)[0] or "image/png"
        block = {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    else:
        block = {"type": "image", "source": {"type": "url", "url": url}}
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _messages(messages: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            result: Dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id"),
                "content": message.get("content")
                if isinstance(message.get("content"), str)
                else _blocks(message.get("content") or []),
            }
            if message.get("is_error"):
                result["is_error"] = True
            last = out[-1] if out else None
            if last is not None and last["role"] == "user" and last.get("_tool_results"):
                last["content"].append(result)  # one user turn answers every tool call
            else:
                out.append({"role": "user", "content": [result], "_tool_results": True})
            continue
        content = message.get("content")
        calls = message.get("tool_calls") if role == "assistant" else None
        translated: Dict[str, Any] = {k: v for k, v in message.items() if k != "tool_calls"}
        if calls:
            blocks = [] if content in (None, "") else _blocks(content)
            for call in calls:
                parsed = ToolCall.from_raw(
                    call.get("id"),
                    (call.get("function") or {}).get("name"),
                    (call.get("function") or {}).get("arguments") or "",
                )
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": parsed.id,
                        "name": parsed.name,
                        "input": parsed.arguments if isinstance(parsed.arguments, dict) else {},
                    }
                )
            translated["content"] = blocks
        elif isinstance(content, list):
            translated["content"] = _blocks(content)
        out.append(translated)
    for message in out:
        message.pop("_tool_results", None)
    return out


def _tool(tool: Dict[str, Any]) -> Dict[str, Any]:
    function = tool.get("function") if tool.get("type") == "function" else None
    if function is None and "type" not in tool and "parameters" in tool:
        function = tool  # a bare function definition
    if function is None:
        return tool  # Anthropic-native (input_schema, or a server tool type)
    out = {
        "name": function.get("name"),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
        return choice  # Anthropic-native
    mapped = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}
    return mapped.get(choice, {"type": "tool", "name": choice})


def parse_response(data: Any) -> Parsed:
    """The one choice (text, tool calls, stop reason), model and usage of a message body.

    Raises:
        ContentFilterError: the answer was refused (``stop_reason: "refusal"``), with its
            text so far and the body's usage.
        ProviderError: the body has no ``content``.
    """
    content = field(data, "content")
    if not isinstance(content, list):
        raise ProviderError("anthropic response has no content", provider=NAME)
    text = "".join(
        block.get("text", "")
        for block in content
        if isinstance(block, dict) and block.get("type") == "text"
    )
    calls = [
        ToolCall.from_raw(block.get("id"), block.get("name"), block.get("input"))
        for block in content
        if isinstance(block, dict) and block.get("type") == "tool_use"
    ]
    stop = field(data, "stop_reason")
    if stop == REFUSAL:
        raise _refused(data, text, extract_usage(data))
    choice = Choice(0, text, calls, stop)
    return Parsed([choice], extract_model(data), extract_usage(data))


#: The stop reason of an answer Anthropic's classifiers stopped.
REFUSAL = "refusal"


def _refused(carrier: Any, text: str = "", usage: Any = None) -> ContentFilterError:
    """The error of a refused answer; ``carrier`` (the message, or a stream's
    ``message_delta``) may hold ``stop_details`` (its category and explanation)."""
    details = field(carrier, "stop_details")
    if details is None:
        details = field(field(carrier, "delta"), "stop_details")
    return ContentFilterError(
        "anthropic: the answer was refused",
        provider=NAME,
        filter_results={"stop_details": details} if isinstance(details, dict) else None,
        text=text,
        usage=usage,
    )


def describe_error(data: Any) -> Tuple[Optional[str], Optional[str]]:
    """(message, type) of ``{"type": "error", "error": {"type", "message"}}``."""
    error = field(data, "error")
    if not isinstance(error, dict):
        return None, None
    kind = error.get("type")
    return error.get("message"), kind if isinstance(kind, str) else None


def decode_event(event: ServerSentEvent) -> Any:
    """The decoded event (its JSON parsed once); :data:`SKIP` for pings.

    Raises:
        StreamError: the data is not JSON.
        ServerError: an event named ``error`` (``overloaded_error`` and the like).
    """
    if event.event == "ping":
        return SKIP
    try:
        data = json.loads(event.data)
    except ValueError as exc:
        raise StreamError(
            f"malformed event from anthropic: {event.data[:80]!r}", provider=NAME, retryable=False
        ) from exc
    if event.event == "error":
        raise_for_chunk(data)
    return data


def raise_for_chunk(chunk: Any) -> None:
    """Raise for an ``error`` event (the stream's reader finds one by its ``type`` when
    the event is not named so), or a ``message_delta`` whose stop reason is ``refusal``
    (the stream's reader holds that error until the stream ends, and puts the text and
    usage on it).

    Raises:
        ContentFilterError: a refused answer.
        ServerError: an error event; status 529 for ``overloaded_error``.
    """
    if field(chunk, "type") == "message_delta":
        if field(field(chunk, "delta"), "stop_reason") == REFUSAL:
            raise _refused(chunk)
        return
    message, kind = describe_error(chunk)
    status = 529 if kind == "overloaded_error" else None
    raise ServerError(
        f"anthropic stream error: {message} ({kind})", provider=NAME, status_code=status
    )
