"""OTelMetricsSink against real OTLP receivers (HTTP with gzip, and gRPC) on 127.0.0.1.

Assertions are on what the receiver decoded: the SDK's force_flush() reports success even
when an export failed.
"""

import os
import threading
import time
from bisect import bisect_left
from functools import partial

import pytest
from support.network import free_port
from support.records import request_record
from support.waiting import reap

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.errors import RateLimitError
from steer_llm_sdk.observability import (
    MetricsCollector,
    MetricsConfig,
    ReliabilityMetrics,
    StreamingMetrics,
    UsageMetrics,
)
from steer_llm_sdk.observability.sinks import OTelMetricsSink
from steer_llm_sdk.observability.sinks.otlp import DURATION_BUCKETS, TOKEN_BUCKETS
from steer_llm_sdk.testing import Fault, LocalLLMServer, OTLPReceiver

GENAI = {"gen_ai.operation.name": "chat"}


def make(endpoint, protocol="http/protobuf", **options):
    options.setdefault("export_interval_seconds", 60)
    options.setdefault("export_timeout_seconds", 2)
    sink = OTelMetricsSink(service_name="checkout", endpoint=endpoint, protocol=protocol, **options)
    collector = MetricsCollector(
        MetricsConfig(batch_timeout_seconds=0.02, flush_on_exit=False, enable_cost_tracking=True),
        [sink],
    )
    return sink, collector


#: A call of 250 ms, 100 tokens in (30 of them cached), 40 out.
request = partial(request_record, model="gpt-4o", duration_ms=250.0, usage=(100, 40, None, 30))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_client_calls_exported_with_genai_conventions(protocol):
    with OTLPReceiver(protocol) as receiver, LocalLLMServer(reply_words=6) as llm:
        sink, collector = make(receiver.endpoint, "grpc" if protocol == "grpc" else "http/protobuf")
        client = SteerLLMClient(
            metrics_collector=collector, openai_api_key="k", openai_base_url=llm.openai_base_url
        )
        client.generate("hi", model="gpt-4o-mini")
        client.stream_with_usage("hi", model="gpt-4o-mini")
        llm.script(Fault(status=429))
        with pytest.raises(RateLimitError):
            client.generate("hi", model="gpt-4o-mini", retries=0)
        assert collector.flush(10)
        latest = receiver.latest()
        points = list(latest.values())
        resource = points[0]["resource"]
        assert resource["service.name"] == "checkout"
        assert "service.namespace" not in resource  # the metric prefix is not a namespace
        assert resource["service.instance.id"] == sink.instance_id

        durations = [p for p in points if p["name"] == "gen_ai.client.operation.duration"]
        assert {p["unit"] for p in durations} == {"s"}
        assert all(p["bounds"] == list(DURATION_BUCKETS) for p in durations)
        assert sum(p["count"] for p in durations) == 3
        failed = [p for p in durations if "error.type" in p["attributes"]]
        assert len(failed) == 1 and failed[0]["attributes"]["error.type"] == "RateLimitError"
        ok = [p for p in durations if "error.type" not in p["attributes"]][0]
        assert ok["attributes"] == {
            **GENAI,
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini",
            "server.address": "127.0.0.1",
            "server.port": llm.port,
        }
        assert 0 < ok["sum"] < 5

        tokens = [p for p in points if p["name"] == "gen_ai.client.token.usage"]
        assert {p["unit"] for p in tokens} == {"{token}"}
        assert all(p["bounds"] == [float(b) for b in TOKEN_BUCKETS] for p in tokens)
        output = [p for p in tokens if p["attributes"]["gen_ai.token.type"] == "output"]
        assert sum(p["count"] for p in output) == 2 and sum(p["sum"] for p in output) == 12

        ttfc = [p for p in points if p["name"] == "gen_ai.client.operation.time_to_first_chunk"]
        per_chunk = [
            p for p in points if p["name"] == "gen_ai.client.operation.time_per_output_chunk"
        ]
        chunks = receiver.total("llm.stream.chunks")
        assert chunks >= 6
        # One value per chunk after the first, as the conventions define it.
        assert [p["count"] for p in ttfc] == [1] and [p["count"] for p in per_chunk] == [chunks - 1]
        assert ttfc[0]["bounds"] == list(DURATION_BUCKETS)

        assert receiver.total("llm.requests") == 3
        assert receiver.total("llm.errors", **{"error.category": "rate_limit"}) == 1
        cost = [p for p in points if p["name"] == "llm.cost"]
        assert cost and cost[0]["unit"] == "USD" and cost[0]["value"] > 0
        client.close()
        collector.shutdown(5)


def bucket_counts(value, bounds=DURATION_BUCKETS):
    """The bucket counts of a histogram holding one ``value`` (upper-inclusive buckets)."""
    counts = [0] * (len(bounds) + 1)
    counts[bisect_left(bounds, value)] = 1
    return counts


@pytest.mark.parametrize("genai", [True, False], ids=["genai", "genai-left-to-another"])
def test_both_first_arrival_times_exported_from_the_request_record(genai):
    # TTFT (first content) is the SDK's own histogram, under the prefix; time to first chunk
    # is the conventions' one. Each is recorded once per streamed RequestMetrics: the
    # StreamingMetrics carrying the same first-chunk time adds nothing, a blocking call
    # (neither time) adds nothing.
    with OTLPReceiver() as receiver:
        sink, collector = make(receiver.endpoint, namespace="app", genai_instruments=genai)
        streamed = request(
            1, method="stream", time_to_first_chunk_ms=30.0, time_to_first_token_ms=150.0
        )
        stream = StreamingMetrics(
            time.time(), "r1", "openai", "gpt-4o", total_chunks=4, first_chunk_latency_ms=30.0
        )
        for record in (streamed, stream, request(2)):
            assert collector.record(record)
        assert collector.flush(10)
        points = receiver.points()
        collector.shutdown(5)
    first = {p["name"]: p for p in points if "first" in p["name"]}
    expected = {
        "app.time_to_first_token": (0.15, bucket_counts(0.15)),
        "gen_ai.client.operation.time_to_first_chunk": (0.03, bucket_counts(0.03)),
    }
    if not genai:
        del expected["gen_ai.client.operation.time_to_first_chunk"]
    assert {
        name: (p["count"], p["sum"], p["bucket_counts"], p["bounds"], p["unit"])
        for name, p in first.items()
    } == {
        name: (1, value, counts, list(DURATION_BUCKETS), "s")
        for name, (value, counts) in expected.items()
    }
    assert [p["count"] for p in points if "first" in p["name"]] == [1] * len(expected)


def test_custom_attributes_only_from_the_allowlist_and_truncated():
    with OTLPReceiver() as receiver:
        sink, collector = make(receiver.endpoint, max_attribute_length=16)
        collector.record(
            request(
                attributes={
                    "http.route": "/chat/" + "x" * 100,
                    "user.id": "alice",
                    "tenant": "acme",
                }
            )
        )
        assert collector.flush(10)
        (point,) = [p for p in receiver.points() if p["name"] == "llm.requests"]
        assert point["attributes"]["http.route"] == ("/chat/" + "x" * 100)[:16]
        assert "user.id" not in point["attributes"] and "tenant" not in point["attributes"]
        collector.shutdown(5)


def test_cardinality_overflow_folds_and_counts():
    with OTLPReceiver() as receiver:
        sink, collector = make(
            receiver.endpoint, max_attribute_sets=3, attribute_allowlist=("tenant",)
        )
        for i in range(10):
            collector.record(request(i, attributes={"tenant": f"t{i}"}))
        assert collector.flush(10)
        points = [p for p in receiver.points() if p["name"] == "llm.requests"]
        tenants = sorted(p["attributes"].get("tenant", "-") for p in points)
        assert tenants == ["-", "t0", "t1", "t2"]
        overflow = [p for p in points if p["attributes"] == {"otel.metric.overflow": True}]
        assert overflow[0]["value"] == 7
        assert sink.overflowed["llm.requests"] == 7
        collector.shutdown(5)


@pytest.mark.parametrize(
    "model", [None, "", "m" * 10_000, "naïve/模型"], ids=["none", "empty", "10k-chars", "unicode"]
)
def test_odd_model_names_never_break_export(model):
    with OTLPReceiver() as receiver:
        sink, collector = make(receiver.endpoint)
        collector.record(request(model=model))
        assert collector.flush(10)
        (point,) = [p for p in receiver.points() if p["name"] == "llm.requests"]
        if model:
            assert point["attributes"]["gen_ai.request.model"] == model[:256]
        else:
            assert "gen_ai.request.model" not in point["attributes"]
        collector.shutdown(5)


def test_reliability_usage_and_breaker_gauge():
    with OTLPReceiver() as receiver:
        sink, collector = make(receiver.endpoint)
        collector.record(
            ReliabilityMetrics(
                timestamp=time.time(),
                request_id="a",
                provider="openai",
                model="gpt-4o",
                retry_attempts=2,
                circuit_breaker_state="OPEN",
            )
        )
        collector.record(
            UsageMetrics(
                timestamp=time.time(),
                provider="openai",
                model="gpt-4o",
                request_count=10,
                error_count=1,
                prompt_tokens=500,
                completion_tokens=200,
                cost_usd=0.25,
            )
        )
        assert collector.flush(10)
        assert receiver.total("llm.retry.attempts") == 2
        (gauge,) = [p for p in receiver.points() if p["name"] == "llm.circuit_breaker.state"]
        assert gauge["value"] == 2 and gauge["kind"] == "gauge"
        assert receiver.total("llm.usage.requests") == 10
        assert receiver.total("llm.usage.tokens", **{"gen_ai.token.type": "input"}) == 500
        collector.shutdown(5)


def test_endpoint_down_then_up_delivers_complete_totals():
    port = free_port()
    sink, collector = make(f"http://127.0.0.1:{port}", export_timeout_seconds=1)
    for i in range(5):
        collector.record(request(i))
    started = time.monotonic()
    collector.flush(10)  # the export fails: counted, not raised at the caller
    assert time.monotonic() - started < 5
    stats = collector.stats().sinks["otlp"]
    assert stats.errors >= 1 and stats.delivered == 5
    assert sink.export_failures >= 1
    with OTLPReceiver(port=port) as receiver:
        for i in range(5, 8):
            collector.record(request(i))
        assert collector.flush(10)
        assert receiver.total("llm.requests") == 8  # cumulative: nothing was lost
    collector.shutdown(5)


def test_503s_are_counted_and_recovered_from():
    with OTLPReceiver() as receiver:
        sink, collector = make(receiver.endpoint, export_timeout_seconds=1)
        receiver.fail_next(100, 503)
        collector.record(request(1))
        collector.flush(10)
        assert receiver.refused >= 1 and sink.export_failures >= 1
        assert collector.stats().sinks["otlp"].errors >= 1
        with receiver._lock:
            receiver._faults.clear()
        collector.record(request(2))
        assert collector.flush(10)
        assert receiver.total("llm.requests") == 2
        collector.shutdown(5)


def test_hanging_receiver_flush_keeps_its_deadline_and_callers_are_unaffected():
    with OTLPReceiver() as receiver:
        receiver.hang()
        sink, collector = make(receiver.endpoint, export_timeout_seconds=5)
        tracked = collector.track_request("openai", model="gpt-4o")(lambda: "done")
        assert tracked() == "done"
        started = time.monotonic()
        assert collector.flush(0.5) is False
        assert time.monotonic() - started < 1.5
        # While the export hangs on the sink's thread, callers still record at once.
        calls = [tracked() for _ in range(100)]
        assert calls == ["done"] * 100 and collector.stats().recorded == 101
        receiver.release.set()
        receiver.hanging = False
        assert collector.flush(15)
        assert receiver.total("llm.requests") == 101
        collector.shutdown(5)


def test_delta_temporality_exports_increments():
    with OTLPReceiver() as receiver:
        sink, collector = make(receiver.endpoint, temporality="delta")
        collector.record(request(1))
        assert collector.flush(10)
        collector.record(request(2))
        collector.record(request(3))
        assert collector.flush(10)
        values = [p["value"] for p in receiver.points() if p["name"] == "llm.requests"]
        assert values == [1, 2]
        collector.shutdown(5)


def test_configuration_from_standard_environment_variables(monkeypatch):
    with OTLPReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", receiver.endpoint + "/v1/metrics")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        sink = OTelMetricsSink(export_interval_seconds=60)
        collector = MetricsCollector(MetricsConfig(flush_on_exit=False), [sink])
        collector.record(request())
        assert collector.flush(10)
        assert receiver.points()[0]["resource"]["service.name"] == "from-env"
        collector.shutdown(5)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="protocol"):
        OTelMetricsSink(protocol="http/json")
    with pytest.raises(ValueError, match="temporality"):
        OTelMetricsSink(temporality="sometimes")
    with pytest.raises(ValueError):
        OTelMetricsSink(max_attribute_sets=0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_child_exports_its_own_data_once():
    with OTLPReceiver() as receiver:
        sink, collector = make(receiver.endpoint, export_interval_seconds=0.2)
        for i in range(3):
            collector.record(request(i))
        assert collector.flush(10)
        parent_id = sink.instance_id
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                for i in range(2):
                    collector.record(request(100 + i))
                ok = collector.flush(10) and sink.instance_id != parent_id
                # Let the inherited reader thread tick: it must not export the parent's data.
                threading.Event().wait(0.6)
                code = 0 if ok else 3
            finally:
                os._exit(code)
        # bounded wait: a deadlocked child fails the test instead of hanging it
        assert reap(pid, 20) == 0, "forked child failed, or did not finish"
        collector.record(request(9))
        assert collector.flush(10)
        by_instance = {}
        for (instance, name, _), point in receiver.latest().items():
            if name == "llm.requests":
                by_instance[instance] = by_instance.get(instance, 0) + point["value"]
        assert by_instance[parent_id] == 4
        children = {k: v for k, v in by_instance.items() if k != parent_id}
        assert list(children.values()) == [2]
        collector.shutdown(5)


# --------------------------------------------------------------------------- pipeline health
class Refusing:
    """A sink whose every delivery raises."""

    name = "refusing"

    def record(self, metrics):
        raise ConnectionError("refused")

    def flush(self):
        pass


def health_points(receiver, instance=None):
    """{(name, reason, sink): point} of the newest health points (of one process)."""
    return {
        (name, point["attributes"].get("reason", ""), point["attributes"].get("sink", "")): point
        for (process, name, _), point in receiver.latest().items()
        if name in ("llm.records.dropped", "llm.sink.export_failures")
        and (instance is None or process == instance)
    }


def test_pipeline_losses_and_failed_exports_are_cumulative_counters():
    port = free_port()  # nothing listens there yet: the sink's exports fail
    sink = OTelMetricsSink(
        service_name="checkout",
        endpoint=f"http://127.0.0.1:{port}",
        export_interval_seconds=60,
        export_timeout_seconds=1,
    )
    collector = MetricsCollector(
        MetricsConfig(
            batch_timeout_seconds=0.02,
            flush_on_exit=False,
            filters=[lambda m: None if m.model == "secret" else m],
        ),
        [sink, Refusing()],
    )
    collector.record(request(1))
    collector.flush(10)  # a failed export, reported by the sink's flush()
    for _ in range(2):  # and two the collector hears of at the next flush, as one error
        sink.provider.force_flush(5000)
    assert sink.export_failures == 3 and collector.stats().sinks["otlp"].errors == 1
    with OTLPReceiver(port=port) as receiver:
        for i in range(3):
            collector.record(request(10 + i))
        collector.record(request(20, model="secret"))
        for _ in range(4):
            assert collector.record("not a record") is False
        collector.flush(10)
        assert collector.flush(10)  # read the stats once the refusing sink's count is final
        stats = collector.stats()
        points = health_points(receiver)
        dropped = {
            (r, s): p["value"] for (n, r, s), p in points.items() if n == "llm.records.dropped"
        }
        assert dropped[("invalid", "")] == 4 == stats.dropped["invalid"]
        assert dropped[("filtered", "")] == 1
        assert dropped[("sink_error", "refusing")] == 4 == stats.sinks["refusing"].failed
        assert dropped[("sink_error", "otlp")] == 0 and dropped[("queue_full", "")] == 0
        failures = {
            s: p["value"] for (n, _, s), p in points.items() if n == "llm.sink.export_failures"
        }
        # The sink's own failed exports, not the flushes that reported them.
        assert stats.sinks["otlp"].errors == 2
        assert failures == {"otlp": 3, "refusing": 4}
        for point in points.values():
            assert point["kind"] == "sum" and point["temporality"] == 2  # cumulative
            assert point["unit"] in ("{record}", "{failure}")
        collector.shutdown(5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_child_exports_its_own_losses_only():
    with OTLPReceiver() as receiver:
        sink, collector = make(receiver.endpoint)
        for _ in range(5):
            collector.record("not a record")
        assert collector.flush(10)
        parent_id = sink.instance_id
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                collector.record("not a record")
                collector.record(request(1))
                code = 0 if collector.flush(10) else 3
            finally:
                os._exit(code)
        assert reap(pid, 20) == 0, "forked child failed, or did not finish"
        collector.record("not a record")
        assert collector.flush(10)
        by_instance = {
            instance: point["value"]
            for (instance, name, attrs), point in receiver.latest().items()
            if name == "llm.records.dropped" and dict(attrs) == {"reason": "invalid"}
        }
        child = [instance for instance in by_instance if instance != parent_id]
        assert by_instance[parent_id] == 6 and [by_instance[i] for i in child] == [1]
        collector.shutdown(5)
