"""Percentiles and summaries (pure math), property-tested against statistics.quantiles."""

import statistics
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.records import request_record

from steer_llm_sdk.observability import ReliabilityMetrics, RequestMetrics
from steer_llm_sdk.observability.summary import percentile, summarize

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@given(st.lists(finite, min_size=2, max_size=300), st.integers(1, 99))
def test_percentile_matches_statistics_quantiles_inclusive(values, p):
    reference = statistics.quantiles(values, n=100, method="inclusive")[p - 1]
    assert percentile(sorted(values), p) == pytest.approx(reference, rel=1e-9, abs=1e-6)


@given(st.lists(finite, min_size=1, max_size=100))
def test_percentile_bounds_and_monotonic(values):
    ordered = sorted(values)
    assert percentile(ordered, 0) == ordered[0]
    assert percentile(ordered, 100) == ordered[-1]
    results = [percentile(ordered, p) for p in (1, 25, 50, 75, 95, 99)]
    assert results == sorted(results)


def test_percentile_edge_cases():
    assert percentile([], 50) is None
    assert percentile([4.0], 99) == 4.0
    with pytest.raises(ValueError):
        percentile([1.0], 101)


#: ``_request(model, duration_ms=...)``: a call started at t=1.0, 10 tokens in, 5 out.
_request = partial(request_record, "r", timestamp=1.0, usage=(10, 5))


def test_summarize_totals_and_breakdown():
    requests = [
        _request("a", duration_ms=100.0, cost_usd=0.01),
        _request("a", duration_ms=300.0, success=False, error_category="rate_limit"),
        _request(
            "b", duration_ms=200.0, time_to_first_token_ms=50.0, method="stream", cost_usd=0.02
        ),
    ]
    reliability = [
        ReliabilityMetrics(
            provider="openai",
            model="a",
            retry_attempts=2,
            retry_succeeded=True,
            circuit_breaker_state="CLOSED",
        ),
        ReliabilityMetrics(
            provider="openai", model="a", retry_attempts=0, circuit_breaker_state="OPEN"
        ),
    ]
    s = summarize(requests, reliability, window_seconds=60)
    assert s.total_requests == 3 and s.error_count == 1
    assert s.error_rate == pytest.approx(1 / 3)
    assert s.avg_latency_ms == pytest.approx(200.0)
    assert s.p50_latency_ms == 200.0
    assert s.p99_latency_ms == pytest.approx(298.0)
    assert s.avg_ttft_ms == 50.0 and s.streamed_requests == 1
    assert (s.prompt_tokens, s.completion_tokens, s.total_tokens) == (30, 15, 45)
    assert s.total_cost_usd == pytest.approx(0.03)
    # All three start at t=1.0; the slowest ends 0.3 s later: the data covers 0.3 s.
    assert s.span_seconds == pytest.approx(0.3)
    assert s.requests_per_second == pytest.approx(3 / 0.3)
    assert (s.retry_attempts, s.retried_requests, s.retry_succeeded) == (2, 1, 1)
    assert s.circuit_breaker_states == {"openai/a": "OPEN"}
    assert s.errors_by_category == {"rate_limit": 1}
    assert set(s.by_model) == {"openai/a", "openai/b"}
    a = s.by_model["openai/a"]
    assert a.total_requests == 2 and a.error_rate == 0.5 and a.total_cost_usd == 0.01
    data = s.to_dict()
    assert data["by_model"]["openai/b"]["avg_ttft_ms"] == 50.0
    assert data["p50_latency_ms"] == 200.0


def test_empty_summary():
    s = summarize([], [], 300)
    assert s.total_requests == 0 and s.error_rate == 0.0 and s.p95_latency_ms is None
    assert s.total_cost_usd is None and s.by_model == {}


@given(st.lists(st.tuples(st.sampled_from("xyz"), st.floats(0, 1e5)), min_size=1, max_size=200))
def test_merged_percentiles_equal_direct_computation(rows):
    requests = [_request(model, duration_ms=duration) for model, duration in rows]
    s = summarize(requests, [], 300)
    direct = sorted(duration for _, duration in rows)
    assert s.p95_latency_ms == pytest.approx(percentile(direct, 95))
    assert sum(part.total_requests for part in s.by_model.values()) == len(rows)


def test_rate_is_over_the_span_of_the_data_not_the_window():
    calls = []
    for start in (100.0, 110.0, 120.0):
        m = RequestMetrics(start, "r", "openai", "m", None, 1.0, None, 1000.0)
        calls.append(m)
    s = summarize(calls, [], window_seconds=300)
    assert s.span_seconds == pytest.approx(21.0)  # 100.0 .. 121.0
    assert s.requests_per_second == pytest.approx(3 / 21.0)
    assert summarize([], [], 300).requests_per_second == 0.0
    long = summarize(calls, [], window_seconds=5)
    assert long.span_seconds == 5 and long.requests_per_second == pytest.approx(3 / 5)
