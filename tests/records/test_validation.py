"""Records touched by user code are validated, and no record costs another (issue 19, item 6).

A record the user can set (``with track_request() as m``, a ``RequestMetrics`` built by
hand) may hold anything: ``-5``, ``"12"``, ``10**400``, NaN, a model that is no string, huge
attributes. Every such value is clamped, replaced or dropped before a sink sees it, the
record is counted as ``sanitized``, and what reaches a sink is valid for every exporter
(counts fit int64, JSON without NaN). On the flush thread a record whose enrichment,
pricing, sanitising or roll-up fails is counted, and the rest of its batch is delivered.
Throughout, ``stats()`` adds up exactly.
"""

import json
import math
import time
from typing import Any, Dict, List

import pytest

from steer_llm_sdk.observability import MetricsCollector, RequestMetrics
from steer_llm_sdk.observability._sanitize import MAX_COUNT
from steer_llm_sdk.observability.models import BaseMetrics, UsageMetrics
from steer_llm_sdk.observability.pipeline import admit as admit_module
from steer_llm_sdk.observability.pipeline import intake as intake_module
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink

MAX_LENGTH = 64  # max_attribute_length of the collectors below
MAX_ATTRIBUTES = 8


def collector_with(make_collector: Any, **config: Any) -> "tuple[MetricsCollector, Any]":
    sink = InMemoryMetricsSink(ttl_seconds=1e12)  # keeps records with timestamp 0 too
    config.setdefault("max_attribute_length", MAX_LENGTH)
    config.setdefault("max_attributes", MAX_ATTRIBUTES)
    return make_collector([sink], **config), sink


def user_record(i: int = 0, **fields: Any) -> RequestMetrics:
    record = RequestMetrics(time.time(), f"user-{i}", "openai", "gpt-4o-mini")
    for name, value in fields.items():
        setattr(record, name, value)
    record._trusted = False  # what the tracker does for a record handed to user code
    return record


def delivered(collector: MetricsCollector, sink: Any) -> List[BaseMetrics]:
    assert collector.flush(5.0)
    return sink.get_metrics()


def assert_exact(collector: MetricsCollector) -> None:
    """recorded == sampled_out + filtered + dropped + delivered + failed, once idle."""
    stats = collector.stats()
    assert stats.pending == 0, stats
    for name, sink in stats.sinks.items():
        assert stats.unaccounted(name) == 0, stats
        assert (
            stats.recorded
            == (stats.sampled_out + stats.filtered + sum(stats.dropped.values()) + sink.delivered)
            + sink.failed
        ), stats


def assert_exportable(record: BaseMetrics) -> None:
    """Valid for every sink: each field of its kind (the record class's own validator),
    and JSON without NaN or infinities, ints within int64."""
    assert type(record)._valid(record, MAX_LENGTH), record  # type: ignore[attr-defined]
    data = record.to_dict()
    json.dumps(data, allow_nan=False)
    for name, value in data.items():
        if type(value) is int:
            assert -MAX_COUNT <= value <= MAX_COUNT, (name, value)
    for key, value in record.attributes.items():
        assert type(key) is str and len(key) <= MAX_LENGTH
        assert type(value) in (str, int, float, bool), (key, value)
        if type(value) is str:
            assert len(value) <= MAX_LENGTH
        if type(value) is int:
            assert -MAX_COUNT <= value <= MAX_COUNT
        if type(value) is float:
            assert math.isfinite(value)


# ---------------------------------------------------------------------- user values
class Index:
    """An integer of another library (numpy's int64, say)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


class Hostile:
    """Raises from everything a sanitiser might call."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __bool__(self) -> bool:
        raise ValueError("truth value is ambiguous")

    def __index__(self) -> int:
        raise ValueError("no index")


NAN, INF = float("nan"), float("inf")

#: field, value set by the user, what a sink receives.
CASES = [
    ("prompt_tokens", -5, 0),
    ("prompt_tokens", "12", None),
    ("prompt_tokens", 10**400, MAX_COUNT),
    ("prompt_tokens", 2**63, MAX_COUNT),
    ("prompt_tokens", NAN, None),
    ("prompt_tokens", 12.9, 12),
    ("prompt_tokens", True, None),
    ("prompt_tokens", [1, 2], None),
    ("completion_tokens", Index(7), 7),
    ("completion_tokens", Index(-7), 0),
    ("completion_tokens", Hostile(), None),
    ("duration_ms", 10**400, None),
    ("duration_ms", INF, None),
    ("duration_ms", -1.5, 0.0),
    ("duration_ms", "5", None),
    ("time_to_first_token_ms", NAN, None),
    ("cost_usd", -1, 0.0),
    ("model", 123, "123"),
    ("model", "m" * 10_000, "m" * MAX_LENGTH),
    ("model", Hostile(), "<unprintable Hostile>"),
    ("model", b"gpt", "b'gpt'"),
    ("provider", None, "unknown"),
    ("success", "yes", True),
    ("success", Hostile(), True),  # its default
    ("tokens_estimated", 1, True),
    ("timestamp", "now", 0.0),
    ("timestamp", NAN, 0.0),
    ("sample_rate", 5, 1.0),
    ("sample_rate", NAN, 1.0),  # its default: a sink divides by it
    ("sample_rate", -1, 0.0),
]


@pytest.mark.parametrize(
    "field,value,expected", CASES, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(CASES)]
)
def test_a_bad_value_is_replaced_and_counted(make_collector, field, value, expected):
    collector, sink = collector_with(make_collector)
    assert collector.record(user_record(**{field: value}))
    (got,) = delivered(collector, sink)
    assert getattr(got, field) == expected and type(getattr(got, field)) is type(expected)
    assert_exportable(got)
    assert collector.stats().sanitized == 1
    assert_exact(collector)


def test_a_valid_user_record_is_not_counted_as_sanitized(make_collector):
    collector, sink = collector_with(make_collector)
    collector.record(user_record(prompt_tokens=3, completion_tokens=4, duration_ms=12.5))
    (got,) = delivered(collector, sink)
    assert (got.prompt_tokens, got.completion_tokens, got.duration_ms) == (3, 4, 12.5)
    assert collector.stats().sanitized == 0


def test_huge_and_odd_attributes_are_bounded(make_collector):
    collector, sink = collector_with(make_collector)
    attributes: Dict[Any, Any] = {
        "long": "x" * 1_000_000,
        "huge_int": 10**400,
        "too_long_to_print": 10**5000,  # str() refuses ints this long (3.11+)
        "nan": NAN,
        "object": Hostile(),
        "nested": {"a": [1, 2]},
        "none": None,
        5: "an int key",
        "k" * 1000: "a long key",
    }
    attributes.update({f"extra{i}": i for i in range(1000)})
    collector.record(user_record(attributes=attributes))
    (got,) = delivered(collector, sink)
    assert_exportable(got)
    attrs = got.attributes
    assert len(attrs) <= MAX_ATTRIBUTES
    assert attrs["long"] == "x" * MAX_LENGTH
    assert attrs["huge_int"] == str(10**400)[:MAX_LENGTH]
    assert attrs["nan"] == "nan" and attrs["object"] == "<unprintable Hostile>"
    assert "none" not in attrs and attrs["5"] == "an int key"
    assert collector.stats().sanitized == 1


class BrokenMapping(dict):
    def items(self) -> Any:
        raise RuntimeError("items() is broken")


@pytest.mark.parametrize("attributes", ["not a mapping", 12, BrokenMapping(a=1)])
def test_attributes_that_cannot_be_read_become_empty(make_collector, attributes):
    collector, sink = collector_with(make_collector)
    collector.record(user_record(attributes=attributes))
    (got,) = delivered(collector, sink)
    assert dict(got.attributes) == {}
    assert collector.stats().sanitized == 1
    assert_exact(collector)


def test_values_set_inside_a_tracked_block_are_validated(make_collector):
    collector, sink = collector_with(make_collector)
    with collector.track_request("openai", "gpt-4o-mini") as m:
        m.prompt_tokens = -5
        m.completion_tokens = "12"
        m.total_tokens = 10**400
        m.duration_ms = NAN
        m.model = 123
        m.attributes = {"big": "y" * 10_000}
    (got,) = [r for r in delivered(collector, sink) if r.metric_type == "request"]
    assert got.prompt_tokens == 0 and got.completion_tokens is None
    assert got.total_tokens == MAX_COUNT and got.model == "123"
    assert got.attributes["big"] == "y" * MAX_LENGTH
    assert_exportable(got)
    assert collector.stats().sanitized >= 1
    assert_exact(collector)


def test_every_record_in_a_mixed_batch_arrives(make_collector):
    collector, sink = collector_with(make_collector, batch_size=len(CASES) + 10)
    for i, (field, value, _) in enumerate(CASES):
        collector.record(user_record(i, **{field: value}))
    for i in range(10):
        collector.record(user_record(100 + i, prompt_tokens=i, completion_tokens=i))
    got = delivered(collector, sink)
    assert len(got) == len(CASES) + 10
    for record in got:
        assert_exportable(record)
    assert collector.stats().sanitized == len(CASES)
    assert_exact(collector)


# ---------------------------------------------------------------------- cost tracking
@pytest.mark.parametrize("prompt_tokens", ["12", 10**400, NAN, -5])
def test_cost_tracking_survives_absurd_user_counts(make_collector, prompt_tokens):
    collector, sink = collector_with(make_collector, enable_cost_tracking=True, batch_size=50)
    collector.record(user_record(0, prompt_tokens=prompt_tokens, completion_tokens=5))
    for i in range(1, 10):
        collector.record(user_record(i, prompt_tokens=100, completion_tokens=5))
    got = {r.request_id: r for r in delivered(collector, sink)}
    assert len(got) == 10
    for record in got.values():
        assert_exportable(record)
        assert record.cost_usd is None or math.isfinite(record.cost_usd)
    assert all(got[f"user-{i}"].cost_usd > 0 for i in range(1, 10))  # priced
    assert collector.stats().sanitized == 1
    assert_exact(collector)


def test_absurd_usage_in_a_response_does_not_lose_the_batch(make_collector):
    """The usage a tracked call's response reports is read on the flush thread and priced
    there; counts too large to price must cost neither the record nor its batch-mates."""
    collector, sink = collector_with(make_collector, enable_cost_tracking=True, batch_size=50)

    @collector.track_request("openai", "gpt-4o-mini")
    def call(prompt_tokens: int) -> Dict[str, Any]:
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 5}
        return {"model": "gpt-4o-mini", "usage": usage}

    call(3)
    call(10**400)
    call(4)
    got = [r for r in delivered(collector, sink) if r.metric_type == "request"]
    assert len(got) == 3
    for record in got:
        assert_exportable(record)
        assert record.cost_usd is not None and math.isfinite(record.cost_usd)
    assert sorted(r.prompt_tokens for r in got) == [3, 4, MAX_COUNT]
    assert collector.stats().internal_errors == 0  # clamped when read, then priced
    assert_exact(collector)


# ---------------------------------------------------------------------- flush-thread failures
def _failing_for(request_id: str, fn: Any) -> Any:
    def wrapper(record: Any, *args: Any) -> Any:
        if record.request_id == request_id:
            raise RuntimeError(f"injected failure for {request_id}")
        return fn(record, *args)

    return wrapper


@pytest.mark.allow_internal_errors
def test_a_record_whose_enrichment_fails_is_kept_checked_and_the_batch_delivered(
    make_collector,
):
    collector, sink = collector_with(make_collector, batch_size=20)
    enricher = collector._pipeline.enricher
    enricher.enrich = _failing_for("user-3", enricher.enrich)  # type: ignore[method-assign]
    for i in range(10):
        record = user_record(i)
        record._trusted = True  # as the SDK builds them: only enrichment could fail
        # A response to read, as a tracked call leaves it: enrichment has work to do.
        record._response = {"usage": {"prompt_tokens": i, "completion_tokens": 1}}
        collector.record(record)
    got = delivered(collector, sink)
    assert sorted(r.request_id for r in got) == [f"user-{i}" for i in range(10)]
    read = {r.request_id: r.prompt_tokens for r in got}
    assert read == {f"user-{i}": None if i == 3 else i for i in range(10)}
    stats = collector.stats()
    assert stats.internal_errors == 1
    assert_exact(collector)


class FailingPrices:
    """A pricer that fails for one model (a bad price-table entry)."""

    def __init__(self, prices: Any) -> None:
        self.prices = prices

    def cost(self, provider: str, model: str, *counts: Any) -> Any:
        if model == "broken-model":
            raise ArithmeticError("bad price entry")
        return self.prices.cost(provider, model, *counts)


@pytest.mark.allow_internal_errors
def test_a_record_whose_pricing_fails_is_delivered_unpriced(make_collector):
    collector, sink = collector_with(make_collector, enable_cost_tracking=True, batch_size=20)
    enricher = collector._pipeline.enricher
    enricher.prices = FailingPrices(enricher.prices)
    for i in range(6):
        model = "broken-model" if i == 2 else "gpt-4o-mini"
        record = RequestMetrics(time.time(), f"r-{i}", "openai", model)
        record.set_usage(10, 5)
        record._trusted = True
        collector.record(record)
    got = {r.request_id: r for r in delivered(collector, sink)}
    assert len(got) == 6
    assert got["r-2"].cost_usd is None
    assert all(got[f"r-{i}"].cost_usd > 0 for i in (0, 1, 3, 4, 5))
    assert collector.stats().internal_errors == 1
    assert_exact(collector)


@pytest.mark.allow_internal_errors
def test_a_record_whose_sanitising_fails_is_dropped_as_invalid_and_counted(
    make_collector, monkeypatch
):
    collector, sink = collector_with(make_collector, batch_size=20)
    monkeypatch.setattr(admit_module, "sanitize", _failing_for("user-2", admit_module.sanitize))
    for i in range(5):
        record = user_record(i, attributes={"k": "v"})  # attributes: sanitised in the background
        record._trusted = True
        collector.record(record)
    got = delivered(collector, sink)
    assert sorted(r.request_id for r in got) == ["user-0", "user-1", "user-3", "user-4"]
    stats = collector.stats()
    assert stats.dropped["invalid"] == 1 and stats.recorded == 5
    assert_exact(collector)


@pytest.mark.allow_internal_errors
def test_a_record_whose_validation_fails_on_the_caller_s_thread_is_counted(
    make_collector, monkeypatch
):
    collector, sink = collector_with(make_collector)
    monkeypatch.setattr(intake_module, "sanitize", _failing_for("user-1", intake_module.sanitize))
    results = [collector.record(user_record(i, prompt_tokens=-1)) for i in range(3)]
    assert results == [True, False, True]
    got = delivered(collector, sink)
    assert sorted(r.request_id for r in got) == ["user-0", "user-2"]
    stats = collector.stats()
    assert stats.recorded == 3 and stats.dropped["invalid"] == 1
    assert stats.internal_errors == 1
    assert_exact(collector)


@pytest.mark.allow_internal_errors
def test_a_record_the_roll_up_cannot_sum_is_still_delivered(make_collector):
    collector, sink = collector_with(make_collector, usage_rollup_seconds=60.0)
    rollup = collector._pipeline.rollup
    rollup.add = _failing_for("user-1", rollup.add)  # type: ignore[method-assign]
    for i in range(3):
        collector.record(user_record(i, prompt_tokens=1, completion_tokens=1))
    assert collector.flush(5.0)
    requests = [r for r in sink.get_metrics() if r.metric_type == "request"]
    assert len(requests) == 3
    assert collector.shutdown(5.0)  # the last windows are delivered
    (usage,) = [r for r in sink.get_metrics() if isinstance(r, UsageMetrics)]
    assert usage.request_count == 2  # the one that failed is not summed
    assert collector.stats().internal_errors == 1


@pytest.mark.allow_internal_errors
def test_a_batch_lost_to_a_pipeline_failure_is_counted_and_the_next_one_delivered(
    make_collector,
):
    collector, sink = collector_with(make_collector, batch_size=100)
    admitter = collector._pipeline.admitter
    real = admitter.admit
    calls = []

    def admit_once_broken(records: Any) -> Any:
        calls.append(len(records))
        if len(calls) == 1:
            raise MemoryError("as if the pipeline itself had failed")
        return real(records)

    admitter.admit = admit_once_broken  # type: ignore[method-assign]
    for i in range(4):
        collector.record(user_record(i))
    started = time.monotonic()
    assert not collector.flush(5.0)  # the batch it waited for failed: said at once
    assert time.monotonic() - started < 2.0
    for i in range(4, 7):
        collector.record(user_record(i))
    got = delivered(collector, sink)
    assert sorted(r.request_id for r in got) == ["user-4", "user-5", "user-6"]
    stats = collector.stats()
    assert stats.dropped["internal_error"] == 4 and stats.recorded == 7
    assert_exact(collector)


def test_a_count_too_large_for_an_attribute_is_text(make_collector):
    """An int attribute beyond int64 would break OTLP and JSON readers: it is kept as text."""
    collector, sink = collector_with(make_collector)
    collector.record(user_record(attributes={"n": 2**63, "m": -(2**63) + 1, "ok": 2**62}))
    (got,) = delivered(collector, sink)
    assert got.attributes["n"] == str(2**63) and got.attributes["ok"] == 2**62
    assert got.attributes["m"] == -(2**63) + 1
    assert_exportable(got)
