"""Usage roll-ups: MetricsConfig(usage_rollup_seconds=...) sends UsageMetrics to every sink,
and InMemoryMetricsSink.get_usage() answers the same from stored requests."""

import threading
import time

import pytest

from steer_llm_sdk.observability import MetricsCollector, MetricsConfig, RequestMetrics
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink

pytestmark = pytest.mark.timeout(30)


class ListSink:
    name = "list"

    def __init__(self):
        self.records = []
        self.arrived = threading.Condition()

    def record(self, metrics):
        with self.arrived:
            self.records.append(metrics)
            self.arrived.notify_all()

    def flush(self):
        pass

    def usage(self):
        with self.arrived:
            return [r for r in self.records if r.metric_type == "usage"]


def request(ts, model, success=True, prompt=10, completion=5, cost=0.5, provider="openai"):
    m = RequestMetrics(ts, f"r{ts}{model}", provider, model, None, 1.0, None, 100.0)
    m.set_usage(prompt, completion, None, 2)
    m.success = success
    m.cost_usd = cost
    return m


def test_ended_windows_reach_every_sink_with_exact_sums():
    sink, memory = ListSink(), InMemoryMetricsSink(ttl_seconds=10**10)
    collector = MetricsCollector(
        MetricsConfig(usage_rollup_seconds=60, batch_timeout_seconds=0.02, flush_on_exit=False),
        [sink, memory],
    )
    # Two ended windows (timestamps long past), two models, one failure.
    for ts in (1200.0, 1210.0, 1259.0):
        collector.record(request(ts, "a"))
    collector.record(request(1230.0, "b", success=False, cost=None))
    collector.record(request(1300.0, "a"))
    with sink.arrived:
        assert sink.arrived.wait_for(
            lambda: len([r for r in sink.records if r.metric_type == "usage"]) == 3, 10
        )
    usage = {(u.window_start, u.model): u for u in sink.usage()}
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
    sink = ListSink()
    collector = MetricsCollector(
        MetricsConfig(usage_rollup_seconds=3600, batch_timeout_seconds=0.02, flush_on_exit=False),
        [sink],
    )
    now = time.time()
    for i in range(4):
        collector.record(request(now, "m", prompt=i))
    assert collector.flush(5)
    assert sink.usage() == []  # the hour has not ended
    assert collector.shutdown(5)
    (usage,) = sink.usage()
    assert usage.request_count == 4 and usage.prompt_tokens == 0 + 1 + 2 + 3


def test_off_by_default():
    sink = ListSink()
    collector = MetricsCollector(
        MetricsConfig(batch_timeout_seconds=0.02, flush_on_exit=False), [sink]
    )
    collector.record(request(1000.0, "m"))
    assert collector.shutdown(5)
    assert sink.usage() == []


def test_in_memory_get_usage_buckets_and_filters():
    now = 10_000.0
    memory = InMemoryMetricsSink(clock=lambda: now)
    memory.record_batch(
        [
            request(now - 50, "a"),
            request(now - 40, "a"),
            request(now - 5, "a", success=False),
            request(now - 5, "b", provider="anthropic"),
            request(now - 5000, "a"),  # outside the window
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
