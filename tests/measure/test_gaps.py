"""Chunk gaps: the stream meter buckets the gap between consecutive chunks as they arrive.

The meter keeps a run of gaps that fall in one bucket and switches bucket when a gap falls
outside it; checked here against bucketing gap by gap, with boundary values, long runs and
frequent switches, through a scripted clock. Also: nothing per chunk is kept, however long
the stream."""

import tracemalloc
from bisect import bisect_left

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steer_llm_sdk.observability import MetricsCollector, MetricsConfig
from steer_llm_sdk.observability.conventions import DURATION_BUCKETS
from steer_llm_sdk.observability.measure.stream import StreamMeter
from steer_llm_sdk.observability.models import ChunkGaps
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink

GAPS = st.one_of(
    st.sampled_from([0.0, *DURATION_BUCKETS, 100.0]),  # exactly on a boundary included
    st.floats(min_value=0.0, max_value=200.0, allow_nan=False),
)
# Runs of one gap value, so that streams have long runs in one bucket as well as switches.
RUNS = st.lists(st.tuples(GAPS, st.integers(1, 12)), max_size=40)


def reference(gaps):
    counts, sums = [0] * 15, [0.0] * 15
    for gap in gaps:
        i = bisect_left(DURATION_BUCKETS, gap)  # upper-inclusive buckets
        counts[i] += 1
        sums[i] += gap
    return counts, sums


def metered(gaps, start=5.0):
    """Run a StreamMeter over ``len(gaps) + 1`` chunks arriving ``gaps`` apart (a scripted
    clock: one reading per chunk, one at the end); return the meter and the stamps."""
    stamps = [start]
    for gap in gaps:
        stamps.append(stamps[-1] + gap)
    readings = iter([*stamps, stamps[-1] + 1.0])
    meter = StreamMeter()
    chunks = list(meter.measure(iter(["x"] * len(stamps)), clock=readings.__next__))
    assert len(chunks) == len(stamps)
    return meter, stamps


@settings(max_examples=300, deadline=None)
@given(runs=RUNS)
def test_the_meter_buckets_like_gap_by_gap(runs):
    gaps = [gap for gap, times in runs for _ in range(times)]
    meter, stamps = metered(gaps)
    actual = [later - earlier for earlier, later in zip(stamps, stamps[1:])]  # as rounded
    counts, sums = reference(actual)
    histogram = meter.gaps.histogram()
    assert list(histogram.counts) == counts
    assert histogram.sums == pytest.approx(sums, abs=1e-9)
    assert histogram.gap_count == len(actual)
    assert histogram.minimum == (min(actual) if actual else float("inf"))
    assert histogram.maximum == (max(actual) if actual else float("-inf"))
    assert meter.first == stamps[0] and meter.chunks == len(stamps)
    assert meter.gaps.histogram() is histogram  # built once

    one_by_one = ChunkGaps()
    for gap in actual:
        one_by_one.add(gap)
    assert one_by_one.histogram().counts == histogram.counts
    assert one_by_one.histogram().minimum == histogram.minimum
    assert one_by_one.histogram().maximum == histogram.maximum


@pytest.mark.parametrize("i", range(1, len(DURATION_BUCKETS)))
def test_a_gap_on_a_boundary_of_the_running_bucket(i):
    # Readings around 0.0 make each gap exactly a boundary (sums of the boundaries are not
    # exact in binary). A run in bucket i, then a gap equal to its lower bound (it belongs
    # to bucket i - 1) or to its upper bound (it stays in bucket i).
    bound, lower = DURATION_BUCKETS[i], DURATION_BUCKETS[i - 1]
    for second, bucket in ((lower, i - 1), (bound, i)):
        readings = iter([-bound, 0.0, second, second + 1.0])
        meter = StreamMeter()
        assert len(list(meter.measure(iter("abc"), clock=readings.__next__))) == 3
        counts = meter.gaps.histogram().counts
        assert counts[i] == (2 if bucket == i else 1)
        assert counts[bucket] == (2 if bucket == i else 1)
        assert sum(counts) == 2


def test_a_run_is_counted_when_the_stream_ends_early():
    # The current run lives in the meter until the bucket changes or the stream ends:
    # a stream closed in the middle of a run still counts it.
    stamps = [1.0, 1.005, 1.01, 1.015]
    readings = iter([*stamps, 2.0])
    meter = StreamMeter()
    gen = meter.measure(iter(["x"] * 10), clock=readings.__next__)
    for _ in range(4):
        next(gen)
    gen.close()
    histogram = meter.gaps.histogram()
    assert histogram.counts[0] == 3 and histogram.gap_count == 3
    assert histogram.gap_sum == pytest.approx(0.015)
    assert meter.status == "cancelled" and meter.end == 2.0


def test_nothing_per_chunk_is_kept():
    def chunks(n):
        for _ in range(n):
            yield "x"

    meter = StreamMeter()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in meter.measure(chunks(200_000)):
            pass
        grown = sum(
            stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename")
        )
    finally:
        tracemalloc.stop()
    # A float kept per chunk would be ~6 MB here.
    assert grown < 64 * 1024
    assert meter.gaps.histogram().gap_count == 199_999


@pytest.mark.timeout(30)
def test_a_delivered_record_carries_the_gaps():
    memory = InMemoryMetricsSink()
    collector = MetricsCollector(MetricsConfig(flush_on_exit=False), [memory])

    @collector.track_request("openai", model="m")
    def stream():
        yield from ["x"] * 5_000

    assert len(list(stream())) == 5_000
    assert collector.flush(5)
    (record,) = memory.get_metrics(metric_type="streaming")
    assert record.chunk_gaps.gap_count == 4_999
    assert record.chunk_gaps.gap_sum <= record.chunk_gaps.maximum * 4_999
    collector.shutdown(5)
