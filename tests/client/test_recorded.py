"""Real provider traffic served byte for byte by the local server: the client against the
exchanges of tests/fixtures/recorded (see its NOTICE.md), text, finish reason and tokens
equal what the provider sent; and every Bedrock InvokeModel exchange of the wider corpus
(../shared/fixtures/recorded) through boto3, measured by ``instrument()``, by
``@track_request`` and by both, with the tokens the provider reported."""

import json
from typing import Any, Callable, List

import pytest
from support.cassettes import response_body, stream_chunks
from support.corpus import SDK_WARNINGS, Exchange, corpus_required, invoke_exchanges
from support.local import local_client
from support.local import recorded as records_of
from support.paths import RECORDED
from support.sdk_clients import closing

from steer_llm_sdk.errors import InvalidRequestError
from steer_llm_sdk.observability import MetricsConfig, instrument, track_request, uninstrument
from steer_llm_sdk.streaming.tokens import TOKENIZER_CONFIDENCE, count_text
from steer_llm_sdk.testing import LocalLLMServer, capture_metrics


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


# ---------------------------------------------------------------------- Bedrock InvokeModel

INVOKE = invoke_exchanges()
if not INVOKE and corpus_required():
    raise RuntimeError("the recorded corpus (../shared/fixtures/recorded) has no InvokeModel")


@pytest.fixture
def bedrock(server: LocalLLMServer) -> Any:
    """(the server, a boto3 ``bedrock-runtime`` client of it)."""
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config

    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=server.url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    with closing(client):
        yield server, client


def _invoke_call(exchange: Exchange, client: Any, got: List[Any]) -> Callable[[], Any]:
    """The recorded request sent again: a function reading what the caller reads (the
    decoded body, or the stream's events, kept in ``got``) and returning it."""
    body = json.dumps(exchange.request_body)
    if exchange.streamed:

        def events() -> Any:
            response = client.invoke_model_with_response_stream(modelId=exchange.model, body=body)
            return response["body"]

        return events

    def call() -> Any:
        response = client.invoke_model(modelId=exchange.model, body=body)
        got.append(json.loads(response["body"].read()))
        return got[-1]

    return call


@pytest.mark.parametrize("mode", ["instrument", "decorator", "both"])
@pytest.mark.parametrize(
    "exchange", INVOKE or [None], ids=lambda e: e.name if e is not None else "none"
)
@pytest.mark.timeout(30)
def test_recorded_invoke_model(exchange: Exchange, mode: str, bedrock: Any) -> None:
    """Every InvokeModel exchange replayed (without the token headers, which the replay
    leaves out, so the instrumented call reads its usage from the body as the caller reads
    it): one record, with the tokens the provider reported, and the caller reads exactly
    the recorded body."""
    if exchange is None:
        pytest.skip("the recorded corpus holds no InvokeModel exchange")
    server, client = bedrock
    server.replay(str(exchange.cassette))
    got: List[Any] = []
    call = _invoke_call(exchange, client, got)
    if mode != "instrument":
        call = track_request("bedrock", model=exchange.model, stream=exchange.streamed)(call)
    if mode != "decorator":
        instrument("bedrock")
    try:
        with capture_metrics(
            MetricsConfig(flush_on_exit=False, enable_cost_tracking=False)
        ) as sink:
            result = call()
            if exchange.streamed:
                got.extend(result)
    finally:
        uninstrument()
    (record,) = sink.get_metrics(metric_type="request")
    assert record.success, record
    usage, _ = exchange.expected()
    assert usage is not None, exchange.name
    assert (record.prompt_tokens, record.completion_tokens, record.cached_tokens) == usage
    if not exchange.streamed:
        assert got == [exchange.response_body]
        assert record.method == "generate"
    else:
        assert got and len(sink.get_metrics(metric_type="streaming")) == 1


for _mark in SDK_WARNINGS:  # boto3's own warnings, not ours to fail on
    test_recorded_invoke_model = _mark(test_recorded_invoke_model)
