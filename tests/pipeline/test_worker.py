"""The pipeline on its own: batching by size and by age (driven by a manual clock), flush
markers, enrichment, admission, channels and accounting, without a collector around it."""

import threading
import time
from typing import List

import pytest
from support.sinks import HangingSink, RecordingSink
from support.waiting import Gate, wait_until

from steer_llm_sdk.observability.models import RequestMetrics
from steer_llm_sdk.observability.pipeline import Drop, Pipeline
from steer_llm_sdk.observability.pipeline.accounting import Accounting
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink


class ManualClock:
    """Stands in for ``Event.wait(timeout)`` in the flush thread: time passes only when the
    test calls :meth:`advance`; a set event still wakes the thread at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.cond = threading.Condition()
        self.waits = 0

    def wait(self, event: threading.Event, timeout: float) -> bool:
        with self.cond:
            deadline = self.now + timeout
            self.waits += 1
            self.cond.notify_all()
            while not event.is_set() and self.now < deadline:
                self.cond.wait(0.005)  # the event cannot notify this condition: look again
        return event.is_set()

    def advance(self, seconds: float) -> None:
        with self.cond:
            self.now += seconds
            self.cond.notify_all()

    def wait_for_waits(self, count: int) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.waits >= count, 5)


def make_pipeline(sinks, clock=None, **overrides) -> Pipeline:
    options = dict(
        batch_size=100,
        batch_timeout=10.0,
        max_queue_size=1000,
        sink_queue_size=1000,
        filters=(),
        max_attributes=8,
        max_attribute_length=64,
    )
    options.update(overrides)
    if clock is not None:
        options["wait"] = clock.wait
    return Pipeline(sinks, **options)


def records(n: int) -> List[RequestMetrics]:
    out = []
    for i in range(n):
        record = RequestMetrics(time.time(), i + 1, "openai", "gpt-4o-mini")
        record._trusted = True
        out.append(record)
    return out


@pytest.fixture
def pipelines():
    made: List[Pipeline] = []
    yield made
    for pipeline in made:
        pipeline.stop(2)


def test_a_partial_batch_waits_exactly_the_batch_timeout(pipelines):
    clock, sink = ManualClock(), RecordingSink()
    pipeline = make_pipeline([sink], clock)
    pipelines.append(pipeline)
    admit = pipeline.admission(True, None)
    for record in records(3):
        assert admit(record)
    assert clock.wait_for_waits(1)
    clock.advance(9.9)
    assert not sink.wait_for(1, timeout=0.1)  # not yet due
    clock.advance(0.1)
    assert sink.wait_for(3)
    assert [r.request_id.rsplit("-", 1)[1] for r in sink.records] == ["1", "2", "3"]


def test_a_full_batch_is_taken_without_waiting_for_the_timeout(pipelines):
    clock, sink = ManualClock(), RecordingSink()
    pipeline = make_pipeline([sink], clock, batch_size=5)
    pipelines.append(pipeline)
    admit = pipeline.admission(True, None)
    for record in records(5):
        admit(record)
    assert sink.wait_for(5)
    assert clock.now == 0.0


def test_flush_delivers_what_was_accepted_before_it(pipelines):
    clock, sink = ManualClock(), RecordingSink()
    pipeline = make_pipeline([sink], clock)
    pipelines.append(pipeline)
    admit = pipeline.admission(True, None)
    for record in records(7):
        admit(record)
    assert pipeline.flush(5)
    assert len(sink.records) == 7 and sink.flushes == 1
    snapshot = pipeline.snapshot()
    assert snapshot["recorded"] == 7 and snapshot["queued"] == 0
    assert snapshot["sinks"]["recording"]["delivered"] == 7


def test_enrichment_formats_ids_and_reads_usage_from_the_response(pipelines):
    sink = RecordingSink()
    pipeline = make_pipeline([sink])
    pipelines.append(pipeline)
    record = records(1)[0]
    record.set_response(
        {"model": "gpt-4o-mini-2024", "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    )
    pipeline.admission(True, None)(record)
    assert pipeline.flush(5)
    got = sink.records[0]
    assert isinstance(got.request_id, str) and got.request_id.endswith("-1")
    assert (got.prompt_tokens, got.completion_tokens, got.total_tokens) == (3, 4, 7)
    assert got.response_model == "gpt-4o-mini-2024" and got._response is None


def test_filters_and_their_failures_are_counted(pipelines):
    sink = RecordingSink()

    def odd_only(record):
        n = int(record.request_id.rsplit("-", 1)[1], 16)
        if n == 4:
            raise ValueError("bad filter")
        return record if n % 2 else None

    pipeline = make_pipeline([sink], filters=[odd_only])
    pipelines.append(pipeline)
    admit = pipeline.admission(True, None)
    for record in records(5):
        admit(record)
    assert pipeline.flush(5)
    snapshot = pipeline.snapshot()
    assert len(sink.records) == 3
    assert snapshot["filtered"] == 1 and snapshot["dropped"]["filter_error"] == 1


def test_a_full_queue_refuses_and_counts(pipelines):
    hold = Gate()
    sink = RecordingSink()
    pipeline = make_pipeline([sink], batch_timeout=0.01, max_queue_size=2, filters=[hold])
    pipelines.append(pipeline)
    admit = pipeline.admission(True, None)
    batch = records(4)
    assert admit(batch[0])
    assert hold.entered.wait(5)
    assert admit(batch[1]) and admit(batch[2])
    assert not admit(batch[3])
    hold.release.set()
    assert pipeline.flush(5)
    snapshot = pipeline.snapshot()
    assert snapshot["dropped"]["queue_full"] == 1
    assert snapshot["recorded"] == 4 and snapshot["sinks"]["recording"]["delivered"] == 3


def test_each_sink_has_its_own_bounded_backlog(pipelines):
    fast, slow = InMemoryMetricsSink(), HangingSink()
    pipeline = make_pipeline([fast, slow], batch_size=1, sink_queue_size=2)
    pipelines.append(pipeline)
    admit = pipeline.admission(True, None)
    for record in records(6):
        admit(record)
    assert wait_until(lambda: len(fast) == 6)  # the hanging sink holds nobody else back
    assert wait_until(lambda: pipeline.snapshot()["sinks"]["hanging"]["dropped"] >= 3)
    slow.release.set()
    assert pipeline.flush(5)
    counters = pipeline.snapshot()["sinks"]["hanging"]
    assert counters["received"] == 6
    assert counters["delivered"] + counters["dropped"] == 6 and counters["pending"] == 0


def test_closed_pipelines_choose_a_refusing_admission():
    pipeline = make_pipeline([RecordingSink()])
    pipeline.stop(2)
    admit = pipeline.admission(True, None)
    assert not admit(records(1)[0])
    assert pipeline.snapshot()["dropped"]["after_shutdown"] == 1
    assert pipeline.admission(False, None)(records(1)[0]) is False
    assert pipeline.snapshot()["dropped"]["after_shutdown"] == 1  # disabled: not counted


def test_drop_reasons_become_strings_only_in_snapshots():
    accounting = Accounting()
    accounting.lost(Drop.FORK, 3)
    snapshot = accounting.snapshot(0, 0, ())
    assert snapshot["dropped"]["fork"] == 3
    assert set(snapshot["dropped"]) == {reason.value for reason in Drop}
    assert snapshot["recorded"] == 3
