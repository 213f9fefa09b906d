"""The client against real provider traffic (tests/fixtures/recorded, see its NOTICE.md),
served byte for byte by the local server: text, finish reason and tokens equal what the
provider sent."""

import json

import pytest
from support.cassettes import response_body, stream_chunks
from support.local import local_client
from support.local import recorded as records_of
from support.paths import RECORDED

from steer_llm_sdk.errors import InvalidRequestError
from steer_llm_sdk.streaming.tokens import TOKENIZER_CONFIDENCE, count_text
from steer_llm_sdk.testing import LocalLLMServer


@pytest.fixture
def pair():
    with LocalLLMServer() as server, local_client(server) as client:
        yield server, client


def test_openai_nonstream(pair):
    server, client = pair
    server.replay(str(RECORDED / "openai_chat_nonstream.yaml"))
    recorded = json.loads(response_body("openai_chat_nonstream.yaml"))
    response = client.generate("Say this is a test", model="gpt-4o-mini")
    assert response.text == recorded["choices"][0]["message"]["content"]
    assert response.finish_reason == recorded["choices"][0]["finish_reason"]
    assert response.model == recorded["model"]
    usage = recorded["usage"]
    assert response.usage.prompt_tokens == usage["prompt_tokens"]
    assert response.usage.completion_tokens == usage["completion_tokens"]
    assert response.usage.total_tokens == usage["total_tokens"]
    assert response.usage.cached_tokens == usage["prompt_tokens_details"]["cached_tokens"]
    (m,) = records_of(client, "request")
    assert (m.prompt_tokens, m.completion_tokens, m.response_model) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        recorded["model"],
    )


def test_openai_stream_with_usage(pair):
    server, client = pair
    server.replay(str(RECORDED / "openai_chat_stream_include_usage.yaml"))
    chunks = stream_chunks("openai_chat_stream_include_usage.yaml")
    result = client.stream_with_usage("Say this is a test", model="gpt-4")
    expected = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
    )
    assert result.text == expected
    assert result.finish_reason == "stop"
    usage = chunks[-1]["usage"]
    assert (
        result.usage.prompt_tokens,
        result.usage.completion_tokens,
        result.usage.total_tokens,
    ) == (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"])
    assert result.aggregation_method == "provider"
    request = records_of(client, "request")[0]
    streaming = records_of(client, "streaming")[0]
    assert request.completion_tokens == usage["completion_tokens"]
    assert request.response_model == chunks[0]["model"]
    assert streaming.total_chunks == len(chunks)  # every event but [DONE]
    assert streaming.total_chars == len(expected)
    # The role-only first chunk is not a token.
    assert request.time_to_first_token_ms >= streaming.first_chunk_latency_ms


def test_openai_stream_without_usage_falls_back_to_the_tokenizer(pair):
    server, client = pair
    server.replay(str(RECORDED / "openai_chat_stream_no_usage.yaml"))
    result = client.stream_with_usage("Say this is a test", model="gpt-4")
    assert result.aggregation_method == "tokenizer"
    assert result.aggregation_confidence == TOKENIZER_CONFIDENCE
    assert result.usage.completion_tokens == count_text(result.text, "gpt-4").tokens
    streaming = records_of(client, "streaming")[0]
    assert (streaming.aggregation_method, streaming.aggregation_confidence) == (
        "tokenizer",
        TOKENIZER_CONFIDENCE,
    )


def test_anthropic_stream(pair):
    server, client = pair
    server.replay(str(RECORDED / "anthropic_messages_stream.yaml"))
    events = stream_chunks("anthropic_messages_stream.yaml")
    start = [e for e in events if e["type"] == "message_start"][0]["message"]
    final = [e for e in events if e["type"] == "message_delta"][-1]
    result = client.stream_with_usage("hi", model="claude-3-5-haiku-20241022")
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert result.text == text
    assert result.finish_reason == final["delta"]["stop_reason"]
    u = start["usage"]
    prompt = (
        u["input_tokens"]
        + (u.get("cache_read_input_tokens") or 0)
        + (u.get("cache_creation_input_tokens") or 0)
    )
    assert result.usage.prompt_tokens == prompt
    assert result.usage.completion_tokens == final["usage"]["output_tokens"]
    assert result.model == start["model"]


def test_openai_404_unknown_model(pair):
    server, client = pair
    server.replay(str(RECORDED / "openai_chat_404_unknown_model.yaml"))
    recorded = json.loads(response_body("openai_chat_404_unknown_model.yaml"))
    with pytest.raises(InvalidRequestError) as info:
        client.generate("hi", model="gpt-4-unknown")
    assert info.value.status_code == 404
    assert recorded["error"]["message"] in str(info.value)
    (err,) = records_of(client, "error")
    assert err.status_code == 404 and err.error_category == "invalid_request"
