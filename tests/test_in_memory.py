"""InMemoryMetricsSink: ring buffer, TTL, queries, summaries, thread-safety."""

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from steer_llm_sdk.observability import ErrorMetrics, RequestMetrics, StreamingMetrics
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def rec(ts, i=0, provider="openai", model="gpt", method="generate", duration=10.0):
    m = RequestMetrics(ts, f"r{i}", provider, model, None, 1.0, None, duration)
    m.method = method
    return m


@given(st.integers(1, 50), st.lists(st.integers(1, 30), max_size=30))
def test_ring_buffer_keeps_the_newest_max_size(max_size, batches):
    clock = Clock()
    sink = InMemoryMetricsSink(max_size=max_size, clock=clock)
    counter = 0
    for size in batches:
        sink.record_batch([rec(clock.now, counter + k) for k in range(size)])
        counter += size
    assert len(sink) == min(counter, max_size)
    kept = [m.request_id for m in sink.get_metrics()]
    assert kept == [f"r{i}" for i in range(max(0, counter - max_size), counter)]
    assert sink.evicted == counter - len(sink)


def test_ttl_evicts_and_hides_old_records():
    clock = Clock()
    sink = InMemoryMetricsSink(ttl_seconds=60, clock=clock)
    sink.record(rec(clock.now - 120, 1))
    sink.record(rec(clock.now - 30, 2))
    assert [m.request_id for m in sink.get_metrics()] == ["r2"]
    clock.now += 40
    assert sink.get_metrics() == []
    sink.record(rec(clock.now, 3))
    assert len(sink) == 1


def test_queries_filter_on_every_criterion():
    clock = Clock()
    sink = InMemoryMetricsSink(clock=clock)
    sink.record_batch(
        [
            rec(990, 1, "openai", "gpt", "generate"),
            rec(995, 2, "anthropic", "claude", "stream"),
            rec(999, 3, "openai", "gpt", "stream"),
            StreamingMetrics(timestamp=999, request_id="r3", provider="openai", model="gpt"),
            ErrorMetrics(timestamp=999, request_id="r4", provider="openai", model="gpt"),
        ]
    )
    ids = lambda **kw: [m.request_id for m in sink.get_metrics(**kw)]  # noqa: E731
    assert ids(provider="openai", metric_type="request") == ["r1", "r3"]
    assert ids(model="claude") == ["r2"]
    assert ids(method="stream") == ["r2", "r3"]
    assert ids(metric_type=StreamingMetrics) == ["r3"]
    assert ids(metric_type="error") == ["r4"]
    assert ids(start_time=995, end_time=995) == ["r2"]
    assert ids(limit=2) == ["r3", "r4"]
    assert ids(limit=0) == []


def test_summary_window_and_filters():
    clock = Clock()
    sink = InMemoryMetricsSink(clock=clock)
    sink.record_batch(
        [rec(clock.now - 500, 1, duration=1000.0)]
        + [rec(clock.now - 10, i, duration=float(i)) for i in range(2, 12)]
        + [rec(clock.now - 10, 99, provider="anthropic", duration=5.0)]
    )
    summary = sink.get_summary(window_seconds=300)
    assert summary.total_requests == 11
    assert summary.by_model.keys() == {"openai/gpt", "anthropic/gpt"}
    only = sink.get_summary(window_seconds=300, provider="openai")
    assert only.total_requests == 10 and only.p50_latency_ms == 6.5
    assert sink.get_summary(window_seconds=600).total_requests == 12


def test_clear_and_validation():
    sink = InMemoryMetricsSink()
    sink.record(rec(1e12))
    sink.clear()
    assert len(sink) == 0
    with pytest.raises(ValueError):
        InMemoryMetricsSink(max_size=0)
    with pytest.raises(ValueError):
        InMemoryMetricsSink(ttl_seconds=0)


def test_concurrent_writers_and_readers():
    clock = Clock(1e12)
    sink = InMemoryMetricsSink(max_size=1000, clock=clock)
    errors = []

    def write(base):
        for i in range(500):
            sink.record(rec(clock.now, base + i))

    def read():
        try:
            for _ in range(50):
                sink.get_summary()
                sink.get_metrics(provider="openai", limit=10)
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n * 1000,)) for n in range(4)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(sink) == 1000 and sink.evicted == 1000
