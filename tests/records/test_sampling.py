"""Deterministic per-request sampling: rates, grouping of a request's records, errors."""

import math
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from steer_llm_sdk.observability import (
    ErrorMetrics,
    ReliabilityMetrics,
    RequestMetrics,
    StreamingMetrics,
    new_request_id,
)
from steer_llm_sdk.observability.sampling import Sampler, keep, request_fraction


@settings(max_examples=30, deadline=None)
@given(rate=st.floats(0.02, 0.98))
def test_kept_share_is_within_statistical_bounds(rate):
    n = 20_000
    kept = sum(keep(new_request_id(), rate) for _ in range(n))
    sigma = math.sqrt(n * rate * (1 - rate))
    assert abs(kept - n * rate) < 5 * sigma + 1


def test_fraction_is_deterministic_and_in_range():
    ids = [new_request_id() for _ in range(1000)]
    fractions = [request_fraction(i) for i in ids]
    assert fractions == [request_fraction(i) for i in ids]
    assert all(0.0 <= f < 1.0 for f in fractions)
    assert keep("anything", 1.0) and not keep("anything", 0.0)


def test_records_of_one_request_are_kept_or_dropped_together():
    sampler = Sampler(0.3, 0.3, 1.0)
    for _ in range(2000):
        rid = new_request_id()
        request = RequestMetrics(time.time(), rid, "openai", method="stream")
        streaming = StreamingMetrics(request_id=rid)
        reliability = ReliabilityMetrics(request_id=rid, method="stream")
        decisions = {
            sampler.sample(request),
            sampler.sample(streaming),
            sampler.sample(reliability),
        }
        assert len(decisions) == 1


def test_failed_requests_use_the_error_rate():
    sampler = Sampler(0.1, 0.1, 1.0)
    failed = [RequestMetrics(1.0, new_request_id(), "openai", success=False) for _ in range(500)]
    assert all(sampler.sample(m) for m in failed)
    assert all(sampler.sample(ErrorMetrics(request_id=m.request_id)) for m in failed)
    ok = [RequestMetrics(1.0, new_request_id(), "openai") for _ in range(2000)]
    kept = [m for m in ok if sampler.sample(m)]
    assert 100 < len(kept) < 300
    assert all(m.sample_rate == 0.1 for m in kept)


def test_inactive_when_all_rates_are_one():
    assert not Sampler(1.0, 1.0, 1.0).active
    assert Sampler(1.0, 0.5, 1.0).active


def test_collector_counts_sampled_out(make_collector, sink):
    collector = make_collector([sink], request_sampling_rate=0.0, error_sampling_rate=1.0)
    for _ in range(10):
        collector.record(RequestMetrics(time.time(), new_request_id(), "openai"))
    collector.record(RequestMetrics(time.time(), new_request_id(), "openai", success=False))
    assert collector.flush(5)
    stats = collector.stats()
    assert stats.sampled_out == 10 and len(sink.records) == 1
    assert stats.unaccounted("recording") == 0
