"""InMemoryMetricsSink: ring buffer, TTL, queries, summaries, thread-safety."""

import threading
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.clocks import Clock
from support.records import request_record

from steer_llm_sdk.observability import ErrorMetrics, StreamingMetrics
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink

#: ``rec(i, timestamp=...)``: a call of 10 ms to the model "gpt"; fields override.
rec = partial(request_record, model="gpt", duration_ms=10.0)


@given(st.integers(1, 50), st.lists(st.integers(1, 30), max_size=30))
def test_ring_buffer_keeps_the_newest_max_size(max_size, batches):
    clock = Clock()
    sink = InMemoryMetricsSink(max_size=max_size, clock=clock)
    counter = 0
    for size in batches:
        sink.record_batch([rec(counter + k, timestamp=clock.now) for k in range(size)])
        counter += size
    assert len(sink) == min(counter, max_size)
    kept = [m.request_id for m in sink.get_metrics()]
    assert kept == [f"r{i}" for i in range(max(0, counter - max_size), counter)]
    assert sink.evicted == counter - len(sink)


def test_ttl_evicts_and_hides_old_records():
    clock = Clock()
    sink = InMemoryMetricsSink(ttl_seconds=60, clock=clock)
    sink.record(rec(1, timestamp=clock.now - 120))
    sink.record(rec(2, timestamp=clock.now - 30))
    assert [m.request_id for m in sink.get_metrics()] == ["r2"]
    clock.now += 40
    assert sink.get_metrics() == []
    sink.record(rec(3, timestamp=clock.now))
    assert len(sink) == 1


def test_queries_filter_on_every_criterion():
    clock = Clock()
    sink = InMemoryMetricsSink(clock=clock)
    sink.record_batch(
        [
            rec(1, timestamp=990),
            rec(2, timestamp=995, provider="anthropic", model="claude", method="stream"),
            rec(3, timestamp=999, method="stream"),
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
        [rec(1, timestamp=clock.now - 500, duration_ms=1000.0)]
        + [rec(i, timestamp=clock.now - 10, duration_ms=float(i)) for i in range(2, 12)]
        + [rec(99, timestamp=clock.now - 10, provider="anthropic", duration_ms=5.0)]
    )
    summary = sink.get_summary(window_seconds=300)
    assert summary.total_requests == 11
    assert summary.by_model.keys() == {"openai/gpt", "anthropic/gpt"}
    only = sink.get_summary(window_seconds=300, provider="openai")
    assert only.total_requests == 10 and only.p50_latency_ms == 6.5
    assert sink.get_summary(window_seconds=600).total_requests == 12


def test_clear_and_validation():
    sink = InMemoryMetricsSink()
    sink.record(rec(timestamp=1e12))
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
            sink.record(rec(base + i, timestamp=clock.now))

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
