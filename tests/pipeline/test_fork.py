"""Real os.fork(): the child exports its own records; the parent's queued ones are exported
once, by the parent; a fork while the background threads hold their locks does not deadlock
the child."""

import os
import threading

import pytest
from support.records import request_record
from support.sinks import LinesSink, written_lines
from support.waiting import reap, wait_until

from steer_llm_sdk.observability import MetricsCollector, MetricsConfig

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns that forking a threaded process may deadlock: that is the point.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


class GatedSink(LinesSink):
    """A LinesSink whose batches wait at a gate (open unless the test closes it)."""

    name = "gated"

    def __init__(self, path):
        super().__init__(path)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def record_batch(self, batch):
        self.entered.set()
        self.gate.wait(10)
        super().record_batch(batch)


def run_child(body, timeout=20.0):
    """Fork; run ``body()`` in the child (exit 0 when it returns True); return the status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            code = 0 if body() else 3
        finally:
            os._exit(code)
    code = reap(pid, timeout)
    if code is None:
        pytest.fail("child did not finish: deadlock after fork?")
    return code


def test_queued_records_are_exported_once_by_the_parent(tmp_path):
    path = str(tmp_path / "out.txt")
    sink = GatedSink(path)
    collector = MetricsCollector(
        MetricsConfig(batch_size=1000, batch_timeout_seconds=3600, flush_on_exit=False), [sink]
    )
    try:
        for i in range(5):
            collector.record(request_record(i))  # queued, not yet delivered: the timeout is an hour
        assert collector.stats().queued == 5

        def child():
            for i in range(100, 103):
                collector.record(request_record(i))
            ok = collector.flush(5)
            stats = collector.stats()
            return ok and stats.recorded == 3 and stats.sinks["gated"].delivered == 3

        assert run_child(child) == 0
        assert collector.flush(5)
        got = written_lines(path)
        parent = [rid for pid, rid in got if int(pid) == os.getpid()]
        children = [rid for pid, rid in got if int(pid) != os.getpid()]
        assert parent == ["r0", "r1", "r2", "r3", "r4"]
        assert children == ["r100", "r101", "r102"]
    finally:
        collector.shutdown(2)


def test_fork_while_background_threads_are_busy(tmp_path):
    path = str(tmp_path / "busy.txt")
    sink = GatedSink(path)
    sink.gate.clear()  # the delivery thread will sit inside record_batch
    collector = MetricsCollector(
        MetricsConfig(batch_size=1, batch_timeout_seconds=0.01, flush_on_exit=False), [sink]
    )
    try:
        collector.record(request_record(0))
        assert sink.entered.wait(5)

        # Keep the flush thread cycling (it takes the pipeline lock) while we fork.
        stop = threading.Event()

        def churn():
            i = 1
            while not stop.is_set():
                collector.record(request_record(i))
                i += 1
                stop.wait(0.0005)

        churner = threading.Thread(target=churn)
        churner.start()
        try:

            def child():
                sink.gate.set()  # the child's copy of the sink must not block its new thread
                collector.record(request_record(9999))
                return collector.flush(5) and collector.stats().recorded == 1

            for _ in range(5):
                assert run_child(child) == 0
        finally:
            stop.set()
            churner.join(5)
        sink.gate.set()
        assert collector.flush(10)
        children = [rid for pid, rid in written_lines(path) if int(pid) != os.getpid()]
        assert children == ["r9999"] * 5
        stats = collector.stats()
        assert stats.unaccounted("gated") == 0
    finally:
        sink.gate.set()
        collector.shutdown(2)


def test_in_memory_sink_starts_empty_in_child():
    from steer_llm_sdk.observability.sinks import InMemoryMetricsSink

    memory = InMemoryMetricsSink()
    memory.record(request_record(1))

    def child():
        memory.record(request_record(2))
        return [m.request_id for m in memory.get_metrics()] == ["r2"]

    assert run_child(child) == 0
    assert wait_until(lambda: len(memory) == 1)


def test_streams_open_at_a_fork_are_recorded_by_the_parent_only(tmp_path):
    import gc

    from steer_llm_sdk.observability.measure.stream import end_open_streams

    path = str(tmp_path / "out.txt")
    collector = MetricsCollector(MetricsConfig(flush_on_exit=False), [GatedSink(path)])

    @collector.track_request("openai", model="m")
    def chunks():
        yield from "abc"

    started, unstarted = chunks(), chunks()
    next(started)
    streams = [started, unstarted]
    del started, unstarted
    try:

        def child():
            # Dropping the inherited streams, and the exit drain's sweep, record nothing here.
            streams.clear()
            gc.collect()
            ended = end_open_streams()
            return ended == 0 and collector.flush(5) and collector.stats().recorded == 0

        assert run_child(child) == 0
        assert list(streams[0]) == ["b", "c"]
        streams.clear()
        gc.collect()
        assert collector.flush(5)
        got = written_lines(path)
        assert {int(pid) for pid, _ in got} == {os.getpid()}
        assert collector.stats().recorded == 4  # two streams: a request and a stream record each
    finally:
        collector.shutdown(2)
