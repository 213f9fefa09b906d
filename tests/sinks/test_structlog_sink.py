"""StructlogMetricsSink: one JSON event per record, every field, no text of the call."""

import io
import json
import time

import pytest
import structlog

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.observability import MetricsCollector, MetricsConfig, RequestMetrics
from steer_llm_sdk.observability.sinks import StructlogMetricsSink
from steer_llm_sdk.testing import LocalLLMServer


def json_logger(buffer):
    return structlog.wrap_logger(
        structlog.PrintLogger(file=buffer),
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
    )


def test_one_json_event_per_record_with_every_field():
    buffer = io.StringIO()
    sink = StructlogMetricsSink(logger=json_logger(buffer), event="llm.call", level="warning")
    m = RequestMetrics(time.time(), "r1", "openai", "gpt-4o", {"http.route": "/chat"})
    m.set_usage(5, 7)
    sink.record_batch([m, m])
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert len(lines) == 2
    event = lines[0]
    assert event["event"] == "llm.call" and event["level"] == "warning"
    assert event["metric_type"] == "request"
    expected = {k: v for k, v in m.to_dict().items() if k != "attributes"}
    assert {k: event[k] for k in expected} == expected
    assert event["attributes"] == {"http.route": "/chat"}


def test_client_records_carry_no_prompt_or_completion_text():
    buffer = io.StringIO()
    with LocalLLMServer(reply_words=6) as server:
        collector = MetricsCollector(
            MetricsConfig(flush_on_exit=False), [StructlogMetricsSink(logger=json_logger(buffer))]
        )
        client = SteerLLMClient(
            metrics_collector=collector,
            openai_api_key="sk-abcdefghijkl1234",
            openai_base_url=server.openai_base_url,
        )
        prompt = "my secret prompt about zebras"
        reply = client.stream_with_usage(prompt, model="gpt-4o-mini").text
        assert collector.flush(5)
        client.close()
        collector.shutdown(5)
    output = buffer.getvalue()
    events = [json.loads(line) for line in output.splitlines()]
    # Client traffic emits ReliabilityMetrics too: their "event" field must not collide with
    # the log event's name (every such batch failed before).
    assert {e["metric_type"] for e in events} == {"request", "streaming", "reliability"}
    (reliability,) = [e for e in events if e["metric_type"] == "reliability"]
    assert reliability["reliability_event"] == "request"
    assert collector.stats().sinks["structlog"].failed == 0
    assert "zebras" not in output and reply not in output
    assert "sk-abcdefghijkl1234" not in output


def test_invalid_level():
    with pytest.raises(ValueError, match="level"):
        StructlogMetricsSink(level="loud")
