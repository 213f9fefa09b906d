"""MetricsCollector: delivery, accounting, isolation of sinks, deadlines, re-entrancy."""

import logging
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.records import request_record
from support.sinks import FailingSink, HangingSink, RecordingSink
from support.waiting import Gate, wait_until

from steer_llm_sdk.observability import (
    MetricsCollector,
    MetricsConfig,
    RequestMetrics,
    configure,
    flush,
    get_collector,
    shutdown,
)
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink


def assert_balanced(collector: MetricsCollector) -> None:
    stats = collector.stats()
    for name in stats.sinks:
        assert stats.unaccounted(name) == 0, (name, stats)


def test_records_reach_sink_on_background_thread(make_collector, sink):
    collector = make_collector([sink])
    assert collector.record(request_record(1)) is True
    assert collector.flush(5)
    assert [r.request_id for r in sink.records] == ["r1"]
    assert threading.get_ident() not in sink.threads
    assert sink.flushes == 1
    stats = collector.stats()
    assert stats.recorded == 1 and stats.sinks["recording"].delivered == 1
    assert stats.pending == 0
    assert_balanced(collector)


def test_batch_timeout_delivers_without_flush(make_collector, sink):
    collector = make_collector([sink], batch_size=1000, batch_timeout_seconds=0.05)
    collector.record(request_record())
    assert sink.wait_for(1, timeout=5)


def test_full_batch_is_dispatched_before_timeout(make_collector, sink):
    collector = make_collector([sink], batch_size=10, batch_timeout_seconds=60)
    for i in range(10):
        collector.record(request_record(i))
    assert sink.wait_for(10, timeout=5)


def test_record_refuses_non_records_and_counts_them(make_collector, sink):
    collector = make_collector([sink])
    assert collector.record("not a record") is False  # type: ignore[arg-type]
    assert collector.stats().dropped["invalid"] == 1
    assert_balanced(collector)


def test_disabled_collector_accepts_nothing_and_starts_no_thread(make_collector, sink):
    collector = make_collector([sink], enabled=False)
    before = threading.active_count()
    assert collector.record(request_record()) is False
    assert threading.active_count() == before
    assert collector.stats().recorded == 0


def test_failing_sink_is_isolated_and_counted(make_collector, sink):
    failing = FailingSink()
    collector = make_collector([failing, sink])
    for i in range(25):
        collector.record(request_record(i))
    collector.flush(5)
    assert len(sink.records) == 25
    stats = collector.stats()
    assert stats.sinks["failing"].failed == 25
    assert stats.sinks["failing"].delivered == 0
    assert stats.sinks["failing"].errors >= 25  # every record, plus the failing flush()
    assert_balanced(collector)


class _Rewriting:
    """A batch sink that changes the list it is given: keeps every other record, or adds
    one."""

    nonblocking = True  # delivered on the flush thread, before the other sinks get the batch

    def __init__(self, name: str, how: str) -> None:
        self.name, self.how = name, how

    def record_batch(self, batch):
        if self.how == "filters":
            batch[:] = batch[::2]
        else:
            batch.append(batch[0])

    def record(self, metrics):
        pass

    def flush(self):
        pass


@pytest.mark.parametrize("how", ["filters", "appends"])
def test_a_sink_that_changes_its_batch_changes_neither_other_sinks_nor_counts(
    make_collector, sink, how
):
    collector = make_collector([_Rewriting("rewriting", how), sink])
    for i in range(10):
        collector.record(request_record(i))
    assert collector.flush(5)
    assert len(sink.records) == 10
    stats = collector.stats()
    assert (stats.sinks["rewriting"].received, stats.sinks["rewriting"].delivered) == (10, 10)
    assert stats.sinks["rewriting"].pending == 0
    assert_balanced(collector)


def test_hanging_sink_does_not_delay_others_and_flush_meets_deadline(make_collector, sink):
    hanging = HangingSink()
    collector = make_collector([hanging, sink], batch_timeout_seconds=0.02)
    for i in range(5):
        collector.record(request_record(i))
    assert hanging.entered.wait(5)
    assert sink.wait_for(5, timeout=1.0)  # within a batch timeout or so, not blocked
    started = time.monotonic()
    assert collector.flush(0.3) is False
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.0
    stats = collector.stats()
    assert stats.sinks["hanging"].pending >= 4
    assert stats.pending == stats.sinks["hanging"].pending
    hanging.release.set()
    assert collector.flush(5)
    assert_balanced(collector)


def test_shutdown_meets_deadline_with_hanging_sink(make_collector):
    hanging = HangingSink()
    collector = make_collector([hanging])
    collector.record(request_record())
    assert hanging.entered.wait(5)
    started = time.monotonic()
    assert collector.shutdown(0.3) is False
    assert time.monotonic() - started < 1.0
    assert collector.stats().pending == 1


def test_overload_main_queue_drops_exact_counts(make_collector, sink):
    gate = threading.Event()

    def hold(metrics):  # keeps the flush thread busy while the queue fills
        if metrics.request_id == "r0":
            gate.wait(10)
        return metrics

    collector = make_collector(
        [sink],
        max_queue_size=50,
        sink_queue_size=1000,
        batch_size=1,
        batch_timeout_seconds=0.01,
        filters=[hold],
    )
    collector.record(request_record(0))
    assert wait_until(lambda: len(collector._pipeline.queue) == 0)  # taken, held in filter
    accepted = [collector.record(request_record(i)) for i in range(1, 81)]
    assert accepted == [True] * 50 + [False] * 30
    assert collector.stats().dropped["queue_full"] == 30
    gate.set()
    assert collector.flush(5)
    assert len(sink.records) == 51
    assert_balanced(collector)


def test_overload_sink_backlog_drops_exact_counts(make_collector):
    hanging = HangingSink()
    collector = make_collector(
        [hanging], batch_size=1, batch_timeout_seconds=0.01, sink_queue_size=10
    )
    collector.record(request_record(0))
    assert hanging.entered.wait(5)  # the sink is stuck on record 0, which stays pending
    for i in range(1, 16):
        collector.record(request_record(i))
    assert wait_until(lambda: collector.stats().queued == 0)
    stats = collector.stats().sinks["hanging"]
    assert (stats.pending, stats.dropped, stats.received) == (10, 6, 16)
    hanging.release.set()
    assert collector.flush(5)
    assert hanging.received == 10
    assert_balanced(collector)


def test_after_shutdown_records_are_counted(make_collector, sink):
    collector = make_collector([sink])
    collector.record(request_record(1))
    assert collector.shutdown(5)
    assert collector.record(request_record(2)) is False
    stats = collector.stats()
    assert stats.dropped["after_shutdown"] == 1
    assert [r.request_id for r in sink.records] == ["r1"]
    assert sink.closes == 1
    assert_balanced(collector)
    assert collector.shutdown(1)  # idempotent


def test_a_record_queued_while_shutdown_ran_is_counted_after_shutdown(make_collector, sink):
    """A thread already inside ``record()`` when ``shutdown()`` closes the collector (here
    held in the validation of its record, whose model's ``str()`` waits) queues its record
    after the flush thread's last pass: it is counted as ``after_shutdown``, not left
    queued forever, and ``flush()`` does not wait for it."""
    gate = Gate()

    class SlowModel:
        def __str__(self) -> str:
            return gate("gpt-4o-mini")

    collector = make_collector([sink])
    collector.record(request_record(1))
    record = RequestMetrics(time.time(), "r-late", "openai", SlowModel())
    late = threading.Thread(target=collector.record, args=(record,))
    late.start()
    try:
        assert gate.entered.wait(5)
        assert collector.shutdown(5)
    finally:
        gate.release.set()
        late.join(5)
    stats = collector.stats()
    assert (stats.queued, stats.dropped["after_shutdown"]) == (0, 1)
    assert [r.request_id for r in sink.records] == ["r1"]
    assert_balanced(collector)
    assert collector.flush(1)


def test_a_batch_finished_after_the_shutdown_deadline_is_counted_dropped(make_collector):
    """``shutdown()`` gives up while a filter still holds the flush thread's batch; the
    batch it finishes later meets sinks already closed: counted as their ``dropped``, not
    left pending for ever."""
    gate = Gate()
    sink = RecordingSink()
    collector = make_collector([sink], filters=(gate,), batch_size=5)
    for i in range(5):
        collector.record(request_record(i))
    assert gate.entered.wait(5)
    try:
        assert collector.shutdown(0.2) is False
    finally:
        gate.release.set()

    def settled():
        counts = collector.stats().sinks["recording"]
        return counts.dropped == 5 and counts.pending == 0

    assert wait_until(settled, 5), collector.stats()
    assert sink.records == []
    assert_balanced(collector)


class _Holding(logging.Handler):
    """Holds the thread that writes a "not keeping up" warning until released."""

    def __init__(self) -> None:
        super().__init__()
        self.inside, self.release = threading.Event(), threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "not keeping up" in record.getMessage():
            self.inside.set()
            self.release.wait(10)


def test_recording_never_waits_for_the_logging_of_a_full_sink_backlog(make_collector):
    """The flush thread warns that a sink's backlog is full through the application's
    logging handlers, which may be slow: meanwhile a record on the caller's thread (the
    first of a batch, which checks the threads) does not wait for them."""
    sink = HangingSink()
    sink.name = "hanging-while-logged"  # a warning key of its own: the log is rate-limited
    collector = make_collector([sink], batch_size=5, sink_queue_size=1)
    handler = _Holding()
    logger = logging.getLogger("steer_llm_sdk")
    logger.addHandler(handler)
    recorder = threading.Thread(target=collector.record, args=(request_record(5),))
    try:
        for i in range(5):
            collector.record(request_record(i))
        assert handler.inside.wait(5)  # the flush thread is in the warning
        recorder.start()
        recorder.join(2)
        assert not recorder.is_alive(), "record() waited for a logging handler"
    finally:
        handler.release.set()
        sink.release.set()
        logger.removeHandler(handler)
        if recorder.ident is not None:
            recorder.join(5)
    assert collector.flush(5)
    assert_balanced(collector)


def test_flush_from_inside_sink_returns_without_deadlock(make_collector):
    results = []

    class ReentrantSink(RecordingSink):
        def record(self, metrics):
            super().record(metrics)
            if metrics.request_id == "r0":
                collector.record(request_record(99))  # record from inside a sink
                results.append(collector.flush(10))  # must not wait for itself

    reentrant = ReentrantSink()
    collector = make_collector([reentrant])
    collector.record(request_record(0))
    assert reentrant.wait_for(2, timeout=5)
    assert results == [False]
    assert collector.flush(5)
    assert_balanced(collector)


def test_flush_and_record_from_inside_filter(make_collector, sink):
    results = []

    def reentrant_filter(metrics):
        if metrics.request_id == "r0":
            collector.record(request_record(5))
            results.append(collector.flush(10))
        return metrics

    collector = make_collector([sink], filters=[reentrant_filter])
    collector.record(request_record(0))
    assert collector.flush(5)
    assert sink.wait_for(2)
    assert results == [False]
    assert_balanced(collector)


def test_flush_from_tracked_function(make_collector, sink):
    collector = make_collector([sink])

    @collector.track_request("openai", model="gpt-4o")
    def call():
        collector.record(request_record(1))
        return collector.flush(5)

    assert call() is True
    collector.flush(5)
    assert len(sink.records) == 2


def test_add_and_remove_sink(make_collector, sink):
    collector = make_collector([sink])
    second = RecordingSink("second")
    collector.add_sink(second)
    collector.record(request_record(1))
    collector.flush(5)
    assert len(second.records) == 1
    assert collector.remove_sink(second, timeout=5)
    assert second.closes == 1
    collector.record(request_record(2))
    collector.flush(5)
    assert len(second.records) == 1 and len(sink.records) == 2
    assert set(collector.stats().sinks) == {"recording"}


def test_duplicate_sink_names_are_distinguished(make_collector):
    a, b = RecordingSink(), RecordingSink()
    collector = make_collector([a, b])
    assert set(collector.stats().sinks) == {"recording", "recording#2"}


def test_rejects_non_sink_and_bad_config():
    with pytest.raises(TypeError, match="MetricsSink"):
        MetricsCollector(MetricsConfig(), [object()])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="MetricsConfig"):
        MetricsCollector({"enabled": True})  # type: ignore[arg-type]


@pytest.mark.allow_internal_errors
def test_record_never_raises_even_when_internals_fail(make_collector, sink):
    collector = make_collector([sink])

    class Hostile(RequestMetrics):
        __slots__ = ()

        def _failed(self):
            raise RuntimeError("boom")

    collector2 = make_collector([sink], request_sampling_rate=0.5)
    assert collector2.record(Hostile(time.time(), "x", "openai")) is False
    assert collector2.stats().internal_errors == 1
    assert collector.record(request_record()) is True


def test_sanitized_values_are_counted_and_clamped(make_collector, sink):
    collector = make_collector([sink], max_attributes=2, max_attribute_length=8)
    bad = request_record(1, prompt_tokens=-5, duration_ms=float("nan"))
    bad.attributes = {"a": "x" * 20, "b": [1, 2], "c": 3}
    bad.model = "m" * 50
    collector.record(bad)
    collector.flush(5)
    got = sink.records[0]
    assert got.prompt_tokens == 0 and got.duration_ms is None
    assert got.attributes == {"a": "x" * 8, "b": "[1, 2]"}
    assert got.model == "m" * 8
    assert collector.stats().sanitized == 1


def test_default_collector_helpers():
    previous = get_collector()
    collector = configure(MetricsConfig(batch_timeout_seconds=0.05, flush_on_exit=False))
    try:
        assert get_collector() is collector
        assert previous.is_shutdown
        (memory,) = collector.sinks
        assert isinstance(memory, InMemoryMetricsSink)
        collector.record(request_record(1))
        assert flush(5)
        assert len(memory) == 1
    finally:
        assert shutdown(5)
        configure(MetricsConfig(flush_on_exit=False))


# ---------------------------------------------------------------------------- accounting
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("record"), st.booleans()),
        st.tuples(st.just("flush"), st.just(None)),
        st.tuples(st.just("burst"), st.integers(1, 40)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=_ops,
    rate=st.sampled_from([1.0, 0.5, 0.0]),
    queue=st.integers(5, 60),
    filter_mod=st.integers(2, 5),
)
def test_accounting_invariant_under_random_interleavings(ops, rate, queue, filter_mod):
    """recorded == sampled_out + filtered + dropped + delivered + failed, per sink, once idle,
    whatever mix of successes, failures, filters, bursts and flushes happened."""

    def flt(metrics):
        number = int(metrics.request_id[1:])
        if number % (filter_mod * 7) == 0:
            raise ValueError("filter broke")
        return None if number % filter_mod == 0 else metrics

    good, failing = RecordingSink(), FailingSink()
    collector = MetricsCollector(
        MetricsConfig(
            request_sampling_rate=rate,
            error_sampling_rate=1.0,
            max_queue_size=queue,
            batch_size=7,
            batch_timeout_seconds=0.01,
            filters=[flt],
            flush_on_exit=False,
        ),
        [good, failing],
    )
    counter = 0
    try:
        for op, arg in ops:
            if op == "flush":
                collector.flush(5)
                continue
            for _ in range(arg if op == "burst" else 1):
                counter += 1
                collector.record(
                    request_record(counter, success=bool(arg) if op == "record" else True)
                )
        # The failing sink's flush() raises too, so flush() reports False; it still waits
        # until everything went through.
        assert collector.flush(10) is False
        stats = collector.stats()
        assert stats.pending == 0
        assert stats.recorded == counter
        assert stats.pending == 0
        for name in ("recording", "failing"):
            assert stats.unaccounted(name) == 0, stats
        assert stats.sinks["recording"].delivered == len(good.records)
    finally:
        collector.shutdown(2)


def test_accounting_holds_with_eight_producer_threads(make_collector, sink):
    collector = make_collector([sink], max_queue_size=500, batch_size=50)
    go = threading.Event()

    def produce(base):
        go.wait()
        for i in range(2000):
            collector.record(request_record(base + i))

    threads = [threading.Thread(target=produce, args=(n * 10_000,)) for n in range(8)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(30)
    assert collector.flush(10)
    stats = collector.stats()
    assert stats.recorded == 16_000
    sink_stats = stats.sinks["recording"]
    assert sink_stats.delivered == len(sink.records)
    assert sink_stats.delivered + sink_stats.dropped + stats.dropped["queue_full"] == 16_000
    assert_balanced(collector)


class InlineSink(RecordingSink):
    nonblocking = True


class InlineFailingSink(FailingSink):
    nonblocking = True
    name = "inline_failing"


def test_nonblocking_sinks_run_on_the_flush_thread_and_are_isolated(make_collector):
    inline, failing, threaded = InlineSink("inline"), InlineFailingSink(), RecordingSink()
    collector = make_collector([inline, failing, threaded])
    for i in range(30):
        collector.record(request_record(i))
    assert collector.flush(5) is False  # the failing sink's flush() raised: reported
    assert len(inline.records) == 30 == len(threaded.records)
    assert inline.flushes == 1 and threaded.flushes == 1
    assert threading.get_ident() not in inline.threads
    assert inline.threads == {collector._pipeline.threads.worker.ident}
    stats = collector.stats()
    assert stats.sinks["inline_failing"].failed == 30
    assert_balanced(collector)
    assert collector.shutdown(5) is False  # its final flush failed again
    assert inline.closes == 1
