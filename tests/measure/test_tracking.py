"""track_request on blocking calls: decorator and context manager, errors, usage, context."""

import inspect
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from steer_llm_sdk.errors import RateLimitError
from steer_llm_sdk.observability import (
    MetricsConfig,
    bind_context,
    configure,
    current_metrics,
    get_collector,
    metrics_context,
    track_request,
)
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink


def openai_response(prompt=11, completion=7, cached=3, model="gpt-4o-mini-2024-07-18"):
    return {
        "model": model,
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }


def anthropic_response():
    usage = SimpleNamespace(
        input_tokens=10,
        output_tokens=20,
        cache_read_input_tokens=100,
        cache_creation_input_tokens=5,
    )
    return SimpleNamespace(model="claude-3-5-haiku-20241022", usage=usage)


def delivered(collector, sink):
    assert collector.flush(5)
    return sink.records


def test_decorator_records_duration_usage_and_model(make_collector, sink):
    collector = make_collector([sink])

    @collector.track_request("openai")
    def ask(prompt, model="gpt-4o-mini"):
        return openai_response()

    assert ask("hi") == openai_response()
    (m,) = delivered(collector, sink)
    assert m.metric_type == "request"
    assert m.provider == "openai" and m.model == "gpt-4o-mini"
    assert m.response_model == "gpt-4o-mini-2024-07-18"
    assert (m.prompt_tokens, m.completion_tokens, m.total_tokens, m.cached_tokens) == (11, 7, 18, 3)
    assert m.success is True and m.method == "generate" and m.time_to_first_token_ms is None
    assert m.duration_ms is not None and m.duration_ms >= 0
    assert m.request_id and isinstance(m.request_id, str)


def test_anthropic_usage_follows_genai_convention(make_collector, sink):
    collector = make_collector([sink])

    @collector.track_request("anthropic", model="claude-3-5-haiku")
    def ask():
        return anthropic_response()

    ask()
    (m,) = delivered(collector, sink)
    assert m.prompt_tokens == 10 + 100 + 5
    assert m.completion_tokens == 20
    assert m.cached_tokens == 100
    assert m.total_tokens == 135


def test_model_from_keyword_position_and_default(make_collector, sink):
    collector = make_collector([sink])

    @collector.track_request("openai")
    def ask(prompt, model="default-model"):
        return None

    ask("a")
    ask("b", "positional-model")
    ask("c", model="keyword-model")
    assert [m.model for m in delivered(collector, sink)] == [
        "default-model",
        "positional-model",
        "keyword-model",
    ]


def test_custom_usage_extractor_runs_off_the_caller_thread(make_collector, sink):
    collector = make_collector([sink])
    seen = []

    def extractor(result):
        seen.append(threading.get_ident())
        return {"prompt_tokens": result[0], "completion_tokens": result[1]}

    @collector.track_request("local", model="llama", usage_extractor=extractor)
    def ask():
        return (4, 6)

    ask()
    (m,) = delivered(collector, sink)
    assert (m.prompt_tokens, m.completion_tokens, m.total_tokens) == (4, 6, 10)
    assert seen and seen[0] != threading.get_ident()


def test_failing_extractor_keeps_the_record(make_collector, sink):
    collector = make_collector([sink])

    @collector.track_request("x", usage_extractor=lambda r: 1 / 0)
    def ask():
        return {"usage": {}}

    assert ask() == {"usage": {}}
    (m,) = delivered(collector, sink)
    assert m.success and m.prompt_tokens is None


def test_exception_is_reraised_unchanged_and_recorded(make_collector, sink):
    collector = make_collector([sink])
    error = RateLimitError("slow down", status_code=429, provider="openai")

    @collector.track_request("openai", model="gpt-4o")
    def ask():
        raise error

    with pytest.raises(RateLimitError) as info:
        ask()
    assert info.value is error
    # The original frame is still in the traceback.
    frames = [f.name for f in __import__("traceback").extract_tb(info.value.__traceback__)]
    assert frames[-1] == "ask"
    request, err = delivered(collector, sink)
    assert request.success is False
    assert request.error_class == "RateLimitError"
    assert request.error_category == "rate_limit"
    assert err.metric_type == "error" and err.request_id == request.request_id
    assert err.status_code == 429 and err.retryable is True


def test_error_messages_are_redacted_and_truncated(make_collector, sink):
    collector = make_collector([sink])

    @collector.track_request("openai", model="gpt-4o")
    def ask():
        raise ValueError("Incorrect API key provided: sk-proj-abcdefghijklmnop1234 " + "x" * 2000)

    with pytest.raises(ValueError):
        ask()
    err = [r for r in delivered(collector, sink) if r.metric_type == "error"][0]
    assert "sk-proj" not in err.message
    assert "[REDACTED]" in err.message
    assert len(err.message) <= 500


def test_foreign_exception_categories(make_collector, sink):
    collector = make_collector([sink])

    class APITimeoutError(Exception):
        pass

    @collector.track_request("openai", model="m")
    def ask():
        raise APITimeoutError("timed out")

    with pytest.raises(APITimeoutError):
        ask()
    assert delivered(collector, sink)[0].error_category == "timeout"


def test_keyboard_interrupt_passes_through(make_collector, sink):
    collector = make_collector([sink])

    @collector.track_request("openai", model="m")
    def ask():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ask()
    assert delivered(collector, sink)[0].error_class == "KeyboardInterrupt"


def test_context_manager_yields_record_to_fill(make_collector, sink):
    collector = make_collector([sink])
    with collector.track_request("anthropic", model="claude-3-5-haiku") as metrics:
        assert current_metrics() is metrics
        metrics.set_response(anthropic_response())
        metrics.attributes["tenant"] = "acme"
    assert current_metrics() is None
    (m,) = delivered(collector, sink)
    assert m.completion_tokens == 20 and m.attributes == {"tenant": "acme"}


def test_context_manager_records_error_and_propagates(make_collector, sink):
    collector = make_collector([sink])
    with pytest.raises(ZeroDivisionError), collector.track_request("openai", model="m"):
        raise ZeroDivisionError("division by zero")
    request, error = delivered(collector, sink)
    assert request.success is False and error.error_class == "ZeroDivisionError"


def test_nested_calls_carry_parent_request_id(make_collector, sink):
    collector = make_collector([sink])

    @collector.track_request("openai", model="inner")
    def inner():
        return current_metrics().request_id

    @collector.track_request("openai", model="outer")
    def outer():
        outer_id = current_metrics().request_id
        return outer_id, inner()

    outer_id, inner_id = outer()
    records = {m.model: m for m in delivered(collector, sink)}
    assert records["outer"].request_id == outer_id
    assert records["inner"].request_id == inner_id
    assert records["inner"].parent_request_id == outer_id
    assert records["outer"].parent_request_id is None


def test_metrics_context_attributes_and_cleanup_after_error(make_collector, sink):
    collector = make_collector([sink])

    @collector.track_request("openai", model="m", feature="chat")
    def ask():
        return None

    with pytest.raises(RuntimeError), metrics_context(**{"http.route": "/chat"}):
        with metrics_context(tenant="acme"):
            ask()
        raise RuntimeError
    ask()
    first, second = delivered(collector, sink)
    assert first.attributes == {"http.route": "/chat", "tenant": "acme", "feature": "chat"}
    assert second.attributes == {"feature": "chat"}


def test_bind_context_carries_attributes_and_parent_to_pool_threads(make_collector, sink):
    collector = make_collector([sink])

    @collector.track_request("openai", model="worker")
    def work():
        return threading.get_ident()

    @collector.track_request("openai", model="outer")
    def outer():
        with metrics_context(**{"http.route": "/fanout"}), ThreadPoolExecutor(2) as pool:
            return [pool.submit(bind_context(work)).result() for _ in range(2)]

    idents = outer()
    assert threading.get_ident() not in idents
    records = delivered(collector, sink)
    outer_record = [m for m in records if m.model == "outer"][0]
    workers = [m for m in records if m.model == "worker"]
    assert len(workers) == 2
    for m in workers:
        assert m.attributes == {"http.route": "/fanout"}
        assert m.parent_request_id == outer_record.request_id


def test_thread_isolation_of_context(make_collector, sink):
    collector = make_collector([sink])
    seen = {}

    def other():
        seen["metrics"] = current_metrics()
        with collector.track_request("x", model="other") as m:
            seen["attrs"] = dict(m.attributes)

    with metrics_context(tenant="main"), collector.track_request("x", model="main"):
        t = threading.Thread(target=other)
        t.start()
        t.join(5)
    assert seen == {"metrics": None, "attrs": {}}


class Service:
    def __init__(self, collector):
        self.collector = collector
        self.calls = 0

    def ask(self, prompt, model="gpt-4o-mini"):
        """Ask something."""
        self.calls += 1
        return openai_response()


def test_methods_classmethods_staticmethods_keep_metadata(make_collector, sink):
    collector = make_collector([sink])
    tracked = collector.track_request("openai")

    class Client:
        @tracked
        def method(self, prompt: str, model: str = "gpt-4o") -> str:
            """Docstring kept."""
            return prompt

        @tracked
        @classmethod
        def klass(cls, model="claude-3-5-haiku"):
            return cls.__name__

        @tracked
        @staticmethod
        def static(model="o3-mini"):
            return "static"

    client = Client()
    assert client.method("p") == "p"
    assert Client.klass() == "Client"
    assert Client.static() == "static" and client.static() == "static"
    assert Client.method.__name__ == "method"
    assert Client.method.__doc__ == "Docstring kept."
    assert inspect.signature(Client.method) == inspect.signature(Client.method.__wrapped__)
    assert (
        str(inspect.signature(Client.method)) == "(self, prompt: str, model: str = 'gpt-4o') -> str"
    )
    models = [m.model for m in delivered(collector, sink)]
    assert models == ["gpt-4o", "claude-3-5-haiku", "o3-mini", "o3-mini"]


def test_module_level_track_request_resolves_default_at_call_time():
    @track_request("openai", model="gpt-4o")
    def ask():
        return openai_response()

    memory = InMemoryMetricsSink()
    collector = configure(MetricsConfig(batch_timeout_seconds=0.05, flush_on_exit=False), [memory])
    try:
        ask()
        assert collector.flush(5)
        assert len(memory) == 1
        assert get_collector() is collector
    finally:
        collector.shutdown(5)
        configure(MetricsConfig(flush_on_exit=False))


def test_disabled_collector_calls_through(make_collector, sink):
    collector = make_collector([sink], enabled=False)

    @collector.track_request("openai", model="m")
    def ask(x):
        return x * 2

    assert ask(21) == 42
    with collector.track_request("openai") as m:
        m.prompt_tokens = 3
    assert collector.stats().recorded == 0 and sink.records == []


def test_invalid_tracker_arguments():
    with pytest.raises(TypeError):
        track_request(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        track_request("openai", usage_extractor="nope")
    with pytest.raises(TypeError):
        track_request("openai")(42)


def test_values_set_through_current_metrics_are_validated(make_collector, sink):
    collector = make_collector([sink])

    @collector.track_request("openai", model="m")
    def ask():
        current_metrics().prompt_tokens = "many"  # type: ignore[assignment]

    ask()
    (m,) = delivered(collector, sink)
    assert m.prompt_tokens is None
    assert collector.stats().sanitized == 1


def test_request_ids_are_unique_across_threads(make_collector, sink):
    collector = make_collector([sink])

    @collector.track_request("x", model="m")
    def ask():
        return None

    def run():
        for _ in range(500):
            ask()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    ids = [m.request_id for m in delivered(collector, sink)]
    assert len(ids) == 2000 == len(set(ids))
