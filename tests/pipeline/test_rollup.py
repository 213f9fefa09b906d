"""Usage roll-ups: MetricsConfig(usage_rollup_seconds=...) sends UsageMetrics to every sink,
and InMemoryMetricsSink.get_usage() answers the same from stored requests."""

import gc
import time
from functools import partial

import pytest
from support.records import request_record
from support.sinks import RecordingSink

from steer_llm_sdk.observability import MetricsCollector, MetricsConfig
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink

pytestmark = pytest.mark.timeout(30)


#: ``request(timestamp=..., model=...)``: a call of 100 ms costing 0.5, 10 tokens in (2 of
#: them cached), 5 out; fields override.
request = partial(request_record, duration_ms=100.0, usage=(10, 5, None, 2), cost_usd=0.5)


def test_ended_windows_reach_every_sink_with_exact_sums():
    sink, memory = RecordingSink("list"), InMemoryMetricsSink(ttl_seconds=10**10)
    collector = MetricsCollector(
        MetricsConfig(usage_rollup_seconds=60, batch_timeout_seconds=0.02, flush_on_exit=False),
        [sink, memory],
    )
    # Two ended windows (timestamps long past), two models, one failure.
    for ts in (1200.0, 1210.0, 1259.0):
        collector.record(request(timestamp=ts, model="a"))
    collector.record(request(timestamp=1230.0, model="b", success=False, cost_usd=None))
    collector.record(request(timestamp=1300.0, model="a"))
    with sink.arrived:
        assert sink.arrived.wait_for(
            lambda: len([r for r in sink.records if r.metric_type == "usage"]) == 3, 10
        )
    usage = {(u.window_start, u.model): u for u in sink.of_type("usage")}
    a = usage[(1200.0, "a")]
    assert (a.request_count, a.error_count, a.prompt_tokens, a.completion_tokens) == (3, 0, 30, 15)
    assert (a.total_tokens, a.cached_tokens, a.window_end) == (45, 6, 1260.0)
    assert a.cost_usd == pytest.approx(1.5)
    b = usage[(1200.0, "b")]
    assert (b.request_count, b.error_count, b.cost_usd) == (1, 1, None)
    assert usage[(1260.0, "a")].request_count == 1
    assert collector.flush(5)
    # Roll-ups are records: they count in the accounting, and the numbers add up.
    stats = collector.stats()
    assert stats.recorded == 5 + 3 == stats.sinks["list"].delivered
    # The in-memory sink got them too, and answers the same from its requests.
    assert len(memory.get_metrics(metric_type="usage")) == 3
    collector.shutdown(5)


def test_open_windows_are_sent_at_shutdown():
    sink = RecordingSink("list")
    collector = MetricsCollector(
        MetricsConfig(usage_rollup_seconds=3600, batch_timeout_seconds=0.02, flush_on_exit=False),
        [sink],
    )
    now = time.time()
    for i in range(4):
        collector.record(request(timestamp=now, model="m", usage=(i, 5, None, 2)))
    assert collector.flush(5)
    assert sink.of_type("usage") == []  # the hour has not ended
    assert collector.shutdown(5)
    (usage,) = sink.of_type("usage")
    assert usage.request_count == 4 and usage.prompt_tokens == 0 + 1 + 2 + 3
    # Made by the flush thread at the end, the roll-up is counted like any record.
    stats = collector.stats()
    assert stats.recorded == 4 + 1 == stats.sinks["list"].delivered
    assert stats.unaccounted("list") == 0


def test_open_windows_of_a_dropped_collector_are_delivered():
    # A collector dropped without shutdown() stops on its own threads; the open windows are
    # rolled up there too, before the sinks close.
    sink = RecordingSink("list")
    collector = MetricsCollector(
        MetricsConfig(usage_rollup_seconds=3600, batch_timeout_seconds=0.02, flush_on_exit=False),
        [sink],
    )
    for _ in range(3):
        collector.record(request(timestamp=time.time(), model="m"))
    assert collector.flush(5)
    del collector
    gc.collect()
    with sink.arrived:
        assert sink.arrived.wait_for(lambda: sink.of_type("usage"), 10)
    (usage,) = sink.of_type("usage")
    assert usage.request_count == 3


def test_off_by_default():
    sink = RecordingSink("list")
    collector = MetricsCollector(
        MetricsConfig(batch_timeout_seconds=0.02, flush_on_exit=False), [sink]
    )
    collector.record(request(timestamp=1000.0, model="m"))
    assert collector.shutdown(5)
    assert sink.of_type("usage") == []


def test_in_memory_get_usage_buckets_and_filters():
    now = 10_000.0
    memory = InMemoryMetricsSink(clock=lambda: now)
    memory.record_batch(
        [
            request(timestamp=now - 50, model="a"),
            request(timestamp=now - 40, model="a"),
            request(timestamp=now - 5, model="a", success=False),
            request(timestamp=now - 5, model="b", provider="anthropic"),
            request(timestamp=now - 5000, model="a"),  # outside the window
        ]
    )
    usage = memory.get_usage(window_seconds=120, bucket_seconds=30)
    rows = [(u.window_start, u.provider, u.model, u.request_count, u.error_count) for u in usage]
    assert rows == [
        (9930.0, "openai", "a", 1, 0),
        (9960.0, "openai", "a", 1, 0),
        (9990.0, "anthropic", "b", 1, 0),
        (9990.0, "openai", "a", 1, 1),
    ]
    assert [u.model for u in memory.get_usage(120, 30, provider="anthropic")] == ["b"]
    assert sum(u.request_count for u in memory.get_usage(120, 30, model="a")) == 3
    with pytest.raises(ValueError):
        memory.get_usage(0, 30)
