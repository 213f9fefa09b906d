"""SteerLLMClient against the local LLM server: both protocols, every method, errors,
faults, connection release, concurrency, and the metrics it records."""

import threading

import pytest

from steer_llm_sdk import GenerationResponse, SteerLLMClient, StreamingResponseWithUsage, Usage
from steer_llm_sdk.client import route
from steer_llm_sdk.errors import (
    AuthenticationError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
    StreamError,
)
from steer_llm_sdk.observability import MetricsConfig, metrics_context
from steer_llm_sdk.reliability import RetryPolicy
from steer_llm_sdk.streaming.tokens import count_messages, count_text
from steer_llm_sdk.testing import Fault

KEY = "sk-test-key-that-must-never-leak-1234"
NO_RETRIES = RetryPolicy(max_attempts=1)
MODELS = ["gpt-4o-mini", "claude-3-5-haiku-20241022"]

pytestmark = pytest.mark.llm_server(reply_words=8)


@pytest.fixture
def client(server):
    with SteerLLMClient(
        MetricsConfig(batch_timeout_seconds=0.02, flush_on_exit=False, enable_cost_tracking=True),
        openai_base_url=server.openai_base_url,
        anthropic_base_url=server.anthropic_base_url,
        openai_api_key=KEY,
        anthropic_api_key=KEY,
        timeout=5,
        retry_policy=NO_RETRIES,  # one attempt: these tests are about each failure itself
    ) as steer:
        yield steer


def records(client, metric_type=None):
    assert client.metrics_collector.flush(5)
    return client.metrics_collector.sinks[0].get_metrics(metric_type=metric_type)


@pytest.mark.parametrize("model", MODELS)
def test_generate(client, server, model):
    response = client.generate("Say hi", model=model, max_tokens=50, temperature=0.2)
    assert isinstance(response, GenerationResponse)
    expected = "".join(server.reply_text("Say hi", 8))
    assert response.text == expected
    assert response.provider == ("openai" if model.startswith("gpt") else "anthropic")
    assert response.finish_reason in ("stop", "end_turn")
    assert response.usage.completion_tokens == 8
    assert response.usage.total_tokens == response.usage.prompt_tokens + 8
    assert response.request_id and response.request_id.startswith("req_local")
    (m,) = records(client, "request")
    assert (m.method, m.success, m.model, m.provider) == (
        "generate",
        True,
        model,
        response.provider,
    )
    assert (m.prompt_tokens, m.completion_tokens) == (response.usage.prompt_tokens, 8)
    assert m.cost_usd is not None and m.cost_usd > 0
    assert m.attributes["server.address"] == "127.0.0.1"
    assert m.attributes["server.port"] == server.port


@pytest.mark.parametrize("model", MODELS)
def test_stream_and_metrics(client, server, model):
    with client.stream("Tell me", model=model) as stream:
        deltas = list(stream)
    assert "".join(deltas) == "".join(server.reply_text("Tell me", 8))
    result = stream.result()
    assert result.usage.completion_tokens == 8 and result.aggregation_method == "provider"
    request = records(client, "request")[0]
    streaming = records(client, "streaming")[0]
    assert request.method == "stream" and request.success
    assert request.time_to_first_token_ms >= streaming.first_chunk_latency_ms
    assert request.completion_tokens == 8
    assert streaming.status == "completed" and streaming.total_chars == len("".join(deltas))
    assert streaming.aggregation_method == "provider"
    assert streaming.total_chunks >= 8


@pytest.mark.parametrize("model", MODELS)
def test_stream_with_usage_and_on_chunk(client, server, model):
    seen = []
    result = client.stream_with_usage("Go", model=model, on_chunk=seen.append)
    assert isinstance(result, StreamingResponseWithUsage)
    assert result.chunks == seen and result.text == "".join(seen)
    assert isinstance(result.usage, Usage) and result.usage.completion_tokens == 8
    assert result.json_objects == []


def test_json_stream_counts_and_returns_objects(client):
    result = client.stream_with_usage("Give JSON", model="gpt-4o", response_format="json_object")
    assert result.json_objects == [{"answer": result.json_objects[0]["answer"]}]
    streaming = records(client, "streaming")[0]
    assert streaming.json_objects_found == 1
    assert records(client, "request")[0].response_format == "json_object"


def test_usage_counted_locally_when_the_provider_sends_none(server, client):
    server.report_usage = False
    result = client.stream_with_usage("count me", model="gpt-4o-mini")
    assert result.aggregation_method == "tokenizer"
    assert result.aggregation_confidence == pytest.approx(0.95)
    assert result.usage.completion_tokens == count_text(result.text, "gpt-4o-mini").tokens == 8
    assert (
        result.usage.prompt_tokens
        == count_messages([{"role": "user", "content": "count me"}], "gpt-4o-mini").tokens
    )
    streaming = records(client, "streaming")[0]
    assert streaming.aggregation_method == "tokenizer"


def test_system_messages_go_where_each_protocol_wants(client, server):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    client.generate(messages, model="gpt-4o-mini")
    client.generate(messages, model="claude-3-5-haiku-latest")
    openai_body = server.requests[0].body
    anthropic_body = server.requests[1].body
    assert openai_body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert anthropic_body["system"] == "Be brief."
    assert anthropic_body["messages"] == [{"role": "user", "content": "Hi"}]
    assert anthropic_body["max_tokens"] == 1024
    assert server.requests[1].headers["anthropic-version"] == "2023-06-01"
    assert server.requests[1].headers["x-api-key"] == KEY
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_stream_asks_for_usage(client, server):
    client.stream_with_usage("x", model="gpt-4o")
    assert server.requests[0].body["stream_options"] == {"include_usage": True}


def test_routing():
    assert route("gpt-4o") == ("openai", "gpt-4o")
    assert route("o3-mini") == ("openai", "o3-mini")
    assert route("chatgpt-4o-latest") == ("openai", "chatgpt-4o-latest")
    assert route("claude-3-5-haiku") == ("anthropic", "claude-3-5-haiku")
    assert route("openai:llama3.1") == ("openai", "llama3.1")
    assert route("llama3.1", provider="openai") == ("openai", "llama3.1")
    with pytest.raises(InvalidRequestError, match="cannot tell the provider"):
        route("llama3.1")
    with pytest.raises(InvalidRequestError, match="unknown provider"):
        route("x", provider="cohere")


def test_any_openai_compatible_model_by_provider(client, server):
    response = client.generate("hi", model="llama3.1:8b", provider="openai")
    assert response.model == "llama3.1:8b" and server.requests[0].body["model"] == "llama3.1:8b"


@pytest.mark.parametrize(
    "status,error,category",
    [
        (400, InvalidRequestError, "invalid_request"),
        (401, AuthenticationError, "authentication"),
        (429, RateLimitError, "rate_limit"),
        (500, ServerError, "server_error"),
        (502, ServerError, "server_error"),
        (503, ServerError, "server_error"),
        (529, ServerError, "server_error"),
    ],
)
@pytest.mark.parametrize("model", MODELS)
def test_error_statuses(client, server, status, error, category, model):
    server.script(Fault(status=status, retry_after=3 if status == 429 else None))
    with pytest.raises(error) as info:
        client.generate("x", model=model)
    exc = info.value
    assert exc.status_code == status and exc.category == category
    assert exc.provider in ("openai", "anthropic")
    assert str(status) in str(exc) and len(str(exc)) > len(f"{status}")
    assert exc.request_id and exc.request_id.startswith("req_local")
    if status == 429:
        assert exc.retry_after == 3.0
    assert KEY not in str(exc) and KEY not in repr(exc)
    request = records(client, "request")[0]
    err = records(client, "error")[0]
    assert request.success is False and request.error_category == category
    assert err.status_code == status and KEY not in (err.message or "")


def test_stream_error_status_raises_at_start_and_is_recorded(client, server):
    server.script(Fault(status=503))
    with pytest.raises(ServerError):
        client.stream("x", model="gpt-4o")
    streaming = records(client, "streaming")[0]
    assert streaming.status == "error" and streaming.total_chunks == 0


class Interrupted(BaseException):
    """Stands in for what a signal handler or a framework raises through the call
    (``gevent.Timeout`` and ``KeyboardInterrupt`` are BaseExceptions)."""


def test_a_foreign_exception_while_a_stream_opens_is_recorded(server):
    def token() -> str:
        raise Interrupted()

    with SteerLLMClient(
        MetricsConfig(flush_on_exit=False),
        azure_endpoint=server.url,
        azure_ad_token_provider=token,
        retry_policy=NO_RETRIES,
    ) as client:
        with pytest.raises(Interrupted):
            client.stream("x", model="gpt-4o", provider="azure")
        (request,) = records(client, "request")
        assert request.success is False and request.error_class == "Interrupted"
        assert records(client, "streaming")[0].status == "error"


@pytest.mark.parametrize("model", MODELS)
def test_connection_dropped_mid_stream(client, server, model):
    server.script(Fault(drop_after=5))
    got = []
    with pytest.raises(StreamError):
        for delta in client.stream("x", model=model):
            got.append(delta)
    assert 0 < len(got) < 8
    streaming = records(client, "streaming")[0]
    assert streaming.status == "error"
    assert records(client, "request")[0].error_category == "connection"


def test_malformed_event_is_a_clear_error(client, server):
    server.script(Fault(malformed_after=3))
    stream = client.stream("x", model="gpt-4o")
    with pytest.raises(StreamError, match="malformed event"):
        list(stream)
    assert stream._run.response.raw.closed


def test_stall_times_out(server):
    with SteerLLMClient(
        MetricsConfig(flush_on_exit=False),
        openai_base_url=server.openai_base_url,
        openai_api_key=KEY,
        timeout=0.2,
        retry_policy=NO_RETRIES,
    ) as steer:
        server.script(Fault(stall=3))
        with pytest.raises(ProviderTimeoutError):
            steer.generate("x", model="gpt-4o")
        server.script(Fault(stall=3, stall_after=4))
        with pytest.raises(ProviderTimeoutError):
            list(steer.stream("x", model="gpt-4o"))


def test_connection_refused():
    with SteerLLMClient(
        MetricsConfig(flush_on_exit=False),
        openai_api_key=KEY,
        openai_base_url="http://127.0.0.1:9/v1",
        timeout=2,
        retry_policy=NO_RETRIES,
    ) as steer:
        with pytest.raises(ProviderConnectionError) as info:
            steer.generate("x", model="gpt-4o")
        assert info.value.retryable


@pytest.mark.parametrize("how", ["close", "break", "with", "never_iterated"])
def test_early_end_releases_connection_and_records_once(client, server, how):
    import gc

    stream = client.stream("x", model="claude-3-5-haiku-latest")
    raw = stream._run.response.raw
    if how == "close":
        next(stream)
        stream.close()
    elif how == "break":
        for _ in stream:
            break
        del stream
        gc.collect()
    elif how == "with":
        with stream:
            next(stream)
    else:
        del stream
        gc.collect()
    assert raw.closed
    streaming = records(client, "streaming")
    assert len(streaming) == 1 and streaming[0].status == "cancelled"
    # The pool still works: the released connection did not leak.
    assert client.generate("again", model="gpt-4o").text


def test_result_before_completion_is_an_error(client):
    stream = client.stream("x", model="gpt-4o")
    with pytest.raises(StreamError, match="not completed"):
        stream.result()
    stream.close()


def test_sixteen_threads_share_one_client(client, server):
    errors = []
    barrier = threading.Barrier(16)

    def work(n):
        try:
            barrier.wait(5)
            model = MODELS[n % 2]
            with metrics_context(worker=n):
                client.generate(f"q{n}", model=model)
                result = client.stream_with_usage(f"s{n}", model=model)
            assert result.usage.completion_tokens == 8
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    requests = records(client, "request")
    assert len(requests) == 32 and all(r.success for r in requests)
    assert sorted(r.attributes["worker"] for r in requests) == sorted(list(range(16)) * 2)
    assert len(server.requests) == 32
    stats = client.metrics_collector.stats()
    assert stats.unaccounted("in_memory") == 0


def test_repr_and_errors_never_show_keys(client):
    assert KEY not in repr(client)
    assert "<set>" in repr(client)


def test_owned_collector_is_shut_down_on_close(server):
    steer = SteerLLMClient(
        MetricsConfig(flush_on_exit=False),
        openai_base_url=server.openai_base_url,
        openai_api_key=KEY,
    )
    steer.generate("x", model="gpt-4o")
    steer.close()
    assert steer.metrics_collector.is_shutdown
    sink = steer.metrics_collector.sinks[0]
    assert len(sink.get_metrics(metric_type="request")) == 1
