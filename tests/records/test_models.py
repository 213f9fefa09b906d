"""Record types: construction, to_dict, sanitising."""

import json
import math

from hypothesis import given
from hypothesis import strategies as st

from steer_llm_sdk.observability import (
    ErrorMetrics,
    ReliabilityMetrics,
    RequestMetrics,
    StreamingMetrics,
    UsageMetrics,
)
from steer_llm_sdk.observability._sanitize import sanitize
from steer_llm_sdk.observability.models import METRIC_TYPES

ALL = [RequestMetrics, StreamingMetrics, ReliabilityMetrics, ErrorMetrics, UsageMetrics]


def test_records_are_slotted_and_json_safe():
    for cls in ALL:
        record = cls(timestamp=1.5, request_id="r", provider="openai")
        assert not hasattr(record, "__dict__")
        data = record.to_dict()
        assert data["metric_type"] == cls.metric_type
        assert METRIC_TYPES[cls.metric_type] is cls
        json.dumps(data)
        assert "_trusted" not in data and "_response" not in data


def test_request_metrics_set_usage_totals():
    m = RequestMetrics()
    m.set_usage(10, 5)
    assert (m.prompt_tokens, m.completion_tokens, m.total_tokens, m.cached_tokens) == (
        10,
        5,
        15,
        None,
    )


def test_equality_and_repr():
    a = RequestMetrics(1.0, "r", "openai", "gpt")
    b = RequestMetrics(1.0, "r", "openai", "gpt")
    assert a == b and a != RequestMetrics(2.0, "r", "openai", "gpt")
    assert "request_id='r'" in repr(a)


def test_sanitize_leaves_valid_records_alone():
    m = RequestMetrics(1.0, "r", "openai", "gpt", {"k": "v", "n": 1, "f": 0.5, "b": True})
    m.set_usage(1, 2, None, 0)
    m.duration_ms = 3.0
    assert sanitize(m, 32, 256) is False


def test_sanitize_clamps_every_kind():
    m = StreamingMetrics(
        timestamp=1.0,
        request_id="r",
        provider="p",
        total_chunks=-3,
        chunks_per_second=math.inf,
        aggregation_confidence=7.0,
        first_chunk_latency_ms="slow",
    )
    m.status = None
    assert sanitize(m, 32, 256) is True
    assert m.total_chunks == 0 and m.chunks_per_second is None
    assert m.aggregation_confidence == 1.0 and m.first_chunk_latency_ms is None
    assert m.status == "unknown"
    e = ErrorMetrics(
        timestamp=1.0, request_id="r", provider="p", retryable="yes", status_code=429.0
    )
    assert sanitize(e, 32, 256) is True
    assert e.retryable is True and e.status_code == 429


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=300),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(
    cls=st.sampled_from(ALL),
    values=st.dictionaries(
        st.sampled_from(sorted({name for cls in ALL for name, _ in cls._schema})), _values
    ),
    attrs=st.dictionaries(st.one_of(st.text(max_size=300), st.integers()), _values, max_size=40),
)
def test_sanitize_always_yields_a_valid_json_safe_record(cls, values, attrs):
    record = cls()
    for name, value in values.items():
        if any(name == n for n, _ in cls._schema):
            setattr(record, name, value)
    record.attributes = attrs
    sanitize(record, 32, 64)
    assert sanitize(record, 32, 64) is False  # a second pass finds nothing to fix
    data = record.to_dict()
    json.dumps(data, allow_nan=False)
    assert len(record.attributes) <= 32
    for key, value in record.attributes.items():
        assert isinstance(key, str) and len(key) <= 64
        assert isinstance(value, (str, int, float, bool))
        if isinstance(value, str):
            assert len(value) <= 64
