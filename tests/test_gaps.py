"""Chunk gaps: the stream meter's per-chunk stamps, folded into the conventions' buckets.

The fold sorts and cuts (C-level work); checked here against bucketing gap by gap, with
boundary values and folds in the middle of a stream, and for bounded memory: a record a
sink keeps holds no stamp per chunk."""

from bisect import bisect_left

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steer_llm_sdk.observability import MetricsCollector, MetricsConfig
from steer_llm_sdk.observability.conventions import DURATION_BUCKETS
from steer_llm_sdk.observability.models import ChunkGaps
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink
from steer_llm_sdk.observability.streams import StreamMeter

GAPS = st.one_of(
    st.sampled_from([0.0, *DURATION_BUCKETS, 100.0]),  # exactly on a boundary included
    st.floats(min_value=0.0, max_value=200.0, allow_nan=False),
)


def reference(stamps):
    counts, sums = [0] * 15, [0.0] * 15
    for a, b in zip(stamps, stamps[1:]):
        i = bisect_left(DURATION_BUCKETS, b - a)  # upper-inclusive buckets
        counts[i] += 1
        sums[i] += b - a
    return counts, sums


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(GAPS, max_size=300), fold_every=st.integers(1, 50))
def test_fold_matches_bucketing_gap_by_gap(gaps, fold_every):
    stamps, t = [], 5.0
    for gap in gaps:
        stamps.append(t)
        t += gap
    chunk_gaps = ChunkGaps()
    for i, stamp in enumerate(stamps):
        chunk_gaps.stamps.append(stamp)
        if (i + 1) % fold_every == 0:
            chunk_gaps.fold()
    histogram = chunk_gaps.histogram()
    counts, sums = reference(stamps)
    assert list(histogram.counts) == counts
    assert histogram.sums == pytest.approx(sums, abs=1e-9)
    assert histogram.gap_count == max(0, len(stamps) - 1)
    assert chunk_gaps.first_stamp() == (stamps[0] if stamps else None)
    assert chunk_gaps.histogram() is histogram  # computed once


def test_the_meter_keeps_at_most_one_fold_of_stamps():
    meter = StreamMeter()
    longest = 0
    for _ in meter.measure(iter(["x"] * 10_000)):
        longest = max(longest, len(meter.gaps.stamps))
    assert 0 < longest <= ChunkGaps.FOLD_EVERY
    assert meter.gaps.histogram().gap_count == 9_999


@pytest.mark.timeout(30)
def test_kept_records_hold_no_stamps():
    memory = InMemoryMetricsSink()
    collector = MetricsCollector(MetricsConfig(flush_on_exit=False), [memory])

    @collector.track_request("openai", model="m")
    def stream():
        yield from ["x"] * 5_000

    assert len(list(stream())) == 5_000
    assert collector.flush(5)
    (record,) = memory.get_metrics(metric_type="streaming")
    assert record._gaps.stamps == []  # folded on the flush thread before delivery
    assert record.chunk_gaps.gap_count == 4_999
    collector.shutdown(5)
