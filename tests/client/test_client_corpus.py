"""SteerLLMClient against the recorded corpus (``../shared/fixtures/recorded/``, see its
NOTICE.md): every chat-completions, Anthropic messages and OpenAI Responses API exchange
(the last through ``openai_api="responses"``; Azure's through the client's Azure
support), streamed and not,
replayed by the local server; the client's text, tool calls, finish reason and usage must
equal what the provider sent, read here straight from the recorded wire format (an oracle
independent of the client's readers and assembler). Recorded failures must raise.
"""

import json
from typing import Any, Dict, List, Optional, Tuple

import pytest
from support.corpus import (
    Exchange,
    _anthropic_usage,
    _groq_usage,
    _openai_usage,
    _responses_usage,
    cassettes,
    corpus_required,
    exchanges,
)
from support.local import local_client

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.errors import SteerLLMError
from steer_llm_sdk.testing import LocalLLMServer

pytestmark = pytest.mark.timeout(120)

Expected = Dict[str, Any]


def _client(usage: Optional[Tuple[Any, Any, Any]]) -> Optional[Tuple[Any, Any, Any]]:
    """A recorded (prompt, completion, cached) as the client's ``Usage`` reports it (cached
    0 when unreported), or None when the exchange reported no prompt tokens."""
    if usage is None or usage[0] is None:
        return None
    return usage[0], usage[1], usage[2] or 0


def _chat_expected(exchange: Exchange) -> Optional[Expected]:
    """What the client must return, or None when the body is not a chat completion (the
    corpus has such answers on purpose: the client must raise)."""
    if not exchange.streamed:
        body = exchange.response_body
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            return None
        choice = body["choices"][0]
        message = choice.get("message") or {}
        calls = [
            (c["id"], c["function"]["name"], c["function"].get("arguments") or "")
            for c in message.get("tool_calls") or ()
        ]
        content = message.get("content")
        return {
            "text": content if isinstance(content, str) else "",
            "calls": calls,
            "finish": choice.get("finish_reason"),
            "usage": _client(_openai_usage(body.get("usage"))),
        }
    text: List[str] = []
    calls: Dict[int, List[Any]] = {}
    finish, usage = None, None
    for event in exchange.events():
        reported = _groq_usage(event, exchange.name) or event.get("usage")
        if reported:
            usage = _client(_openai_usage(reported)) or usage
        for choice in event.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                text.append(delta["content"])
            for fragment in delta.get("tool_calls") or ():
                entry = calls.setdefault(fragment.get("index", len(calls)), ["", "", ""])
                function = fragment.get("function") or {}
                entry[0] = fragment.get("id") or entry[0]
                entry[1] = function.get("name") or entry[1]
                entry[2] += function.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    return {
        "text": "".join(text),
        "calls": [tuple(calls[i]) for i in sorted(calls)],
        "finish": finish,
        "usage": usage,
    }


def _messages_expected(exchange: Exchange) -> Optional[Expected]:
    if not exchange.streamed:
        body = exchange.response_body
        blocks = body.get("content") or []
        return {
            "text": "".join(b.get("text", "") for b in blocks if b.get("type") == "text"),
            "calls": [
                (b["id"], b["name"], json.dumps(b.get("input") or {}))
                for b in blocks
                if b.get("type") == "tool_use"
            ],
            "finish": body.get("stop_reason"),
            "usage": _client(_anthropic_usage(body["usage"])),
        }
    text: List[str] = []
    calls: Dict[int, List[Any]] = {}
    finish, start_usage, output = None, None, None
    for event in exchange.events():
        kind = event.get("type")
        if kind == "message_start":
            start_usage = event["message"]["usage"]
        elif kind == "content_block_start" and event["content_block"].get("type") == "tool_use":
            block = event["content_block"]
            calls[event["index"]] = [block["id"], block["name"], ""]
        elif kind == "content_block_delta":
            delta = event["delta"]
            if delta.get("type") == "text_delta":
                text.append(delta["text"])
            elif delta.get("type") == "input_json_delta" and event["index"] in calls:
                calls[event["index"]][2] += delta.get("partial_json") or ""
        elif kind == "message_delta":
            finish = (event.get("delta") or {}).get("stop_reason") or finish
            usage = event.get("usage") or {}
            output = usage.get("output_tokens", output)
            if usage.get("input_tokens") is not None:
                start_usage = {**start_usage, **usage}
    prompt, _, read = _client(_anthropic_usage(start_usage))  # type: ignore[misc]
    return {
        "text": "".join(text),
        "calls": [tuple(calls[i]) for i in sorted(calls)],
        "finish": finish,
        "usage": (prompt, output, read),
    }


def _responses_expected(exchange: Exchange) -> Optional[Expected]:
    if exchange.streamed:
        finals = [
            e["response"]
            for e in exchange.events()
            if e.get("type") in ("response.completed", "response.incomplete", "response.failed")
        ]
        body = finals[-1] if finals else None
    else:
        body = exchange.response_body
    if not isinstance(body, dict) or body.get("status") == "failed":
        return None
    details = body.get("incomplete_details") or {}
    if details.get("reason") == "content_filter":
        return None
    text, calls = [], []
    for item in body.get("output") or ():
        if item.get("type") == "message":
            text += [
                p.get("text", "")
                for p in item.get("content") or ()
                if p.get("type") == "output_text"
            ]
        elif item.get("type") == "function_call":
            calls.append((item["call_id"], item["name"], item.get("arguments") or ""))
    if body.get("status") == "incomplete":
        reason = details.get("reason")
        finish = "length" if reason == "max_output_tokens" else reason
    else:
        finish = (
            "tool_calls"
            if calls
            else ("stop" if body.get("status") == "completed" else body.get("status"))
        )
    usage = _client(_responses_usage(body.get("usage")))
    return {"text": "".join(text), "calls": calls, "finish": finish, "usage": usage}


READERS = {"chat": _chat_expected, "messages": _messages_expected, "responses": _responses_expected}


def _arguments(raw: str) -> Any:
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        return None


def _covered(cassette: Any) -> List[Exchange]:
    return [e for e in exchanges(cassette) if e.shape in READERS]


ALL = [c for c in cassettes() if _covered(c)]
if not ALL and corpus_required():
    raise RuntimeError("the recorded corpus (../shared/fixtures/recorded) is missing")


def _call(clients: Dict[str, SteerLLMClient], exchange: Exchange) -> Any:
    azure = exchange.host.endswith(".openai.azure.com")
    if exchange.shape == "responses":
        client = clients["azure_responses" if azure else "responses"]
    else:
        client = clients["chat"]
    provider = "anthropic" if exchange.shape == "messages" else "azure" if azure else "openai"
    model = exchange.model or "model"
    if exchange.streamed:
        return client.stream_with_usage("hi", model=model, provider=provider, retries=0)
    return client.generate("hi", model=model, provider=provider, retries=0)


@pytest.mark.parametrize("cassette", ALL, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_client_reads_recorded_traffic_exactly(cassette):
    with LocalLLMServer() as server:
        clients = {
            "chat": local_client(server),
            "responses": local_client(server, openai_api="responses"),
            "azure_responses": local_client(
                server,
                openai_api="responses",
                azure_endpoint=server.url,
                azure_api_key="test",
                api_version="v1",
            ),
        }
        try:
            server.replay(str(cassette))
            for exchange in _covered(cassette):
                _check(clients, exchange)
        finally:
            for client in clients.values():
                client.close()


def _check(clients: Dict[str, SteerLLMClient], exchange: Exchange) -> None:
    expected = None if exchange.fails else READERS[exchange.shape](exchange)
    if expected is None:
        with pytest.raises(SteerLLMError):
            _call(clients, exchange)
        return
    result = _call(clients, exchange)
    got_calls = [(c.id, c.name, c.arguments) for c in result.tool_calls]
    want_calls = [(i, n, _arguments(raw)) for i, n, raw in expected["calls"]]
    assert result.text == expected["text"], exchange.name
    assert got_calls == want_calls, exchange.name
    assert result.finish_reason == expected["finish"], exchange.name
    if expected["usage"] is not None:
        usage = result.usage
        got = (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
        assert got == expected["usage"], (exchange.name, got, expected["usage"])
