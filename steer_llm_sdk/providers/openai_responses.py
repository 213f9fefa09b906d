"""OpenAI Responses API wire protocol (``POST {base}/responses``), for
``SteerLLMClient(openai_api="responses")``.

The client speaks chat-completions shapes; they are translated here. System messages become
``instructions``; messages become input items (``input_text``/``input_image`` parts, an
assistant's ``output_text``); an assistant's ``tool_calls`` become ``function_call`` items
and ``role="tool"`` messages ``function_call_output`` items; function tools are flattened
(``{"type": "function", "name", "description", "parameters"}``); ``max_tokens`` is sent as
``max_output_tokens`` and a JSON ``response_format`` as ``text.format``.

Answers come back in the chat-completions vocabulary the rest of the client uses: the text
of the ``message`` output items, ``function_call`` items as tool calls, and a finish reason
derived from the status: ``tool_calls`` when it calls tools, ``stop`` when completed,
``length`` when cut at ``max_output_tokens``. A response withheld by the content filter
raises :class:`~steer_llm_sdk.errors.ContentFilterError` (with the text it has and the
usage it reports, billed though withheld). Streams are named events; the
stream ends with ``response.completed`` (or ``.incomplete``/``.failed``), which the stream's
reader (:class:`~steer_llm_sdk.streaming.assemble.Assembler`) knows.
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
from ..streaming.assemble import responses_finish_reason
from ..streaming.sse import ServerSentEvent
from ..streaming.usage import extract_model, extract_usage, field
from ..types import Choice, ToolCall
from . import openai
from .base import Parsed

NAME = "openai"
STREAM_SHAPE = "responses"
DEFAULT_BASE_URL = openai.DEFAULT_BASE_URL
headers = openai.headers
describe_error = openai.describe_error


def url(base_url: str, model: str = "") -> str:
    return base_url.rstrip("/") + "/responses"


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
    instructions = [m.get("content") for m in messages if m.get("role") == "system"]
    body: Dict[str, Any] = {"model": model, "input": _items(messages)}
    if instructions:
        texts = [i for i in instructions if isinstance(i, str)]
        if len(texts) != len(instructions):
            raise InvalidRequestError("the Responses API takes system messages as text")
        body["instructions"] = "\n\n".join(texts)
    if max_tokens is not None:
        body["max_output_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
    if response_format is not None:
        body["text"] = {"format": _format(response_format)}
    if tools:
        body["tools"] = [_tool(tool) for tool in tools]
    if tool_choice is not None:
        body["tool_choice"] = _tool_choice(tool_choice)
    if stream:
        body["stream"] = True
    body.update(params)
    return body


def _format(response_format: Any) -> Dict[str, Any]:
    if isinstance(response_format, str):
        return {"type": response_format}
    if response_format.get("type") == "json_schema" and "json_schema" in response_format:
        return {"type": "json_schema", **response_format["json_schema"]}
    return dict(response_format)


def _items(messages: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    items: List[Dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "system":
            continue
        if role == "tool":
            content = message.get("content")
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message.get("tool_call_id"),
                    "output": content if isinstance(content, str) else json.dumps(content),
                }
            )
            continue
        content = message.get("content")
        if content not in (None, ""):
            items.append({"role": role, "content": _parts(content, role)})
        for call in message.get("tool_calls") or () if role == "assistant" else ():
            function = call.get("function") or {}
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": function.get("arguments") or "{}",
                }
            )
    return items


def _parts(content: Any, role: Any) -> Any:
    if isinstance(content, str):
        return content
    text_type = "output_text" if role == "assistant" else "input_text"
    out = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            out.append({"type": text_type, "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            out.append(
                {
                    "type": "input_image",
                    "image_url": image.get("url") if isinstance(image, dict) else image,
                }
            )
        elif isinstance(part, dict):
            out.append(part)  # already a Responses part
        else:
            raise InvalidRequestError("a content part must be a mapping")
    return out


def _tool(tool: Dict[str, Any]) -> Dict[str, Any]:
    if tool.get("type") == "function" and isinstance(tool.get("function"), dict):
        return {"type": "function", **tool["function"]}
    if "type" not in tool and "name" in tool:
        return {"type": "function", **tool}
    return tool


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function" and "function" in choice:
        return {"type": "function", "name": choice["function"].get("name")}
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        return {"type": "function", "name": choice}
    return choice


def read_output(response: Any) -> Tuple[str, List[ToolCall]]:
    """(text, tool calls) of a response's output items."""
    text: List[str] = []
    calls: List[ToolCall] = []
    for item in field(response, "output") or ():
        kind = field(item, "type")
        if kind == "message":
            for part in field(item, "content") or ():
                if field(part, "type") == "output_text":
                    text.append(field(part, "text") or "")
        elif kind == "function_call":
            calls.append(
                ToolCall.from_raw(
                    field(item, "call_id"), field(item, "name"), field(item, "arguments") or ""
                )
            )
    return "".join(text), calls


def parse_response(data: Any) -> Parsed:
    """The one choice, model and usage of a ``response`` body.

    Raises:
        ContentFilterError: the response was cut by the content filter.
        ProviderError: the body is not a response, or the response failed.
    """
    if field(data, "object") != "response" and field(data, "output") is None:
        raise ProviderError("openai response has no output", provider=NAME)
    _raise_for(data)
    text, calls = read_output(data)
    choice = Choice(0, text, calls, responses_finish_reason(data, bool(calls)))
    return Parsed([choice], extract_model(data), extract_usage(data))


def _raise_for(response: Any) -> None:
    reason = field(field(response, "incomplete_details"), "reason")
    if reason == "content_filter":
        raise ContentFilterError(
            "openai: the response was cut by the content filter",
            provider=NAME,
            text=read_output(response)[0],
            usage=extract_usage(response),
        )
    if field(response, "status") == "failed":
        error = field(response, "error") or {}
        message = field(error, "message") or "the response failed"
        raise ServerError(f"openai: {message} ({field(error, 'code')})", provider=NAME)


def decode_event(event: ServerSentEvent) -> Any:
    """The decoded event (its JSON parsed once).

    Raises:
        StreamError: the data is not JSON.
        ServerError: an event named ``error``.
    """
    try:
        data = json.loads(event.data)
    except ValueError as exc:
        raise StreamError(
            f"malformed event from openai: {event.data[:80]!r}", provider=NAME, retryable=False
        ) from exc
    if event.event == "error":
        _raise_error(data)
    return data


def raise_for_chunk(chunk: Any) -> None:
    """Raise for an event the stream's reader marks: an ``error`` event, a failed
    response, or one the content filter cut short; return for a response that is merely
    incomplete (cut at ``max_output_tokens``).

    Raises:
        ServerError: an ``error`` event, or a failed response.
        ContentFilterError: a response cut by the content filter.
    """
    if field(chunk, "type") == "error":
        _raise_error(chunk)
    _raise_for(field(chunk, "response"))


def _raise_error(data: Any) -> None:
    raise ServerError(
        f"openai stream error: {field(data, 'message')} ({field(data, 'code')})", provider=NAME
    )
