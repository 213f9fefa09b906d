"""The OTLP sink against the GenAI semantic conventions and the standard OTel variables.

Everything is checked on what a real OTLP receiver decoded. The table below is written from
the specification (semantic-conventions-genai, docs/gen-ai/gen-ai-metrics.md), not from the
sink's own table, so a drift in either shows here.
"""

import logging
import time

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from support.peers import openai_v2_instrumentor

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.errors import StreamError
from steer_llm_sdk.observability import (
    MetricsCollector,
    MetricsConfig,
    ReliabilityMetrics,
    RequestMetrics,
    StreamingMetrics,
)
from steer_llm_sdk.observability.conventions import FAMILIES
from steer_llm_sdk.observability.models import ChunkGaps
from steer_llm_sdk.observability.sinks import OTelMetricsSink
from steer_llm_sdk.testing import Fault, LocalLLMServer, OTLPReceiver

pytestmark = pytest.mark.timeout(60)

SECONDS = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92
]  # fmt: skip
TOKENS = [
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864
]  # fmt: skip
COMMON = ("gen_ai.operation.name", "gen_ai.provider.name")
#: name -> (kind, unit, boundaries, attributes always required)
SPEC = {
    "gen_ai.client.operation.duration": ("histogram", "s", SECONDS, COMMON),
    "gen_ai.client.token.usage": ("histogram", "{token}", TOKENS, COMMON + ("gen_ai.token.type",)),
    "gen_ai.client.operation.time_to_first_chunk": ("histogram", "s", SECONDS, COMMON),
    "gen_ai.client.operation.time_per_output_chunk": ("histogram", "s", SECONDS, COMMON),
}
OPERATIONS = {"chat", "embeddings", "text_completion", "generate_content"}


def collector_for(sink, **config):
    config.setdefault("batch_timeout_seconds", 0.02)
    config.setdefault("flush_on_exit", False)
    return MetricsCollector(MetricsConfig(**config), [sink])


def sink_for(endpoint, **options):
    options.setdefault("export_interval_seconds", 60)
    options.setdefault("export_timeout_seconds", 2)
    return OTelMetricsSink(service_name="svc", endpoint=endpoint, environ={}, **options)


def test_every_instrument_matches_the_specification():
    with OTLPReceiver() as receiver, LocalLLMServer(reply_words=8) as llm:
        sink = sink_for(receiver.endpoint)
        collector = collector_for(sink, enable_cost_tracking=True)
        client = SteerLLMClient(
            metrics_collector=collector, openai_api_key="k", openai_base_url=llm.openai_base_url
        )
        client.generate("hi", model="gpt-4o-mini")
        streamed = client.stream_with_usage("hello there", model="gpt-4o-mini")
        llm.script(Fault(drop_after=3))
        with pytest.raises(StreamError):
            "".join(client.stream("hi", model="gpt-4o-mini", retries=0))
        with collector.track_request(
            "openai", model="text-embedding-3-small", operation="embeddings"
        ) as m:
            m.set_usage(prompt_tokens=7)
        assert collector.flush(10)
        points = receiver.points()
        client.close()
        collector.shutdown(5)

    names = {p["name"] for p in points}
    assert set(SPEC) | {"llm.time_to_first_token"} <= names
    for point in points:
        spec = SPEC.get(point["name"])
        if spec is None:
            continue
        kind, unit, bounds, required = spec
        attrs = point["attributes"]
        assert (point["kind"], point["unit"]) == (kind, unit), point["name"]
        assert point["bounds"] == [float(b) for b in bounds], point["name"]
        assert all(key in attrs for key in required), (point["name"], attrs)
        assert attrs["gen_ai.operation.name"] in OPERATIONS
        assert "gen_ai.request.model" in attrs  # conditionally required: always known here
        if "server.address" in attrs:
            assert isinstance(attrs["server.port"], int)
    # The streamed calls: every streaming instrument carries the models.
    for name in (
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.client.operation.time_per_output_chunk",
        "llm.time_to_first_token",
    ):
        for point in (p for p in points if p["name"] == name):
            assert point["attributes"]["gen_ai.request.model"] == "gpt-4o-mini"
            if "error.type" not in point["attributes"]:
                assert point["attributes"]["gen_ai.response.model"] == "gpt-4o-mini"

    # One error.type for the failed stream, the same on each of its instruments.
    failed = {
        p["name"]: p["attributes"]["error.type"] for p in points if "error.type" in p["attributes"]
    }
    assert set(failed.values()) == {"StreamError"}
    assert {
        "gen_ai.client.operation.duration",
        "gen_ai.client.operation.time_to_first_chunk",
        "llm.errors",
    } <= set(failed)

    # One time_per_output_chunk value per chunk after the first, for each stream.
    chunks = {
        frozenset(p["attributes"].items()): p["value"]
        for p in points
        if p["name"] == "llm.stream.chunks"
    }
    gaps = {
        frozenset(p["attributes"].items()): p["count"]
        for p in points
        if p["name"] == "gen_ai.client.operation.time_per_output_chunk"
    }
    assert gaps and gaps == {key: value - 1 for key, value in chunks.items()}
    assert streamed.chunks  # the stream really streamed

    # Operation names follow what was called.
    embedding = [
        p
        for p in points
        if p["name"] == "gen_ai.client.token.usage"
        and p["attributes"]["gen_ai.request.model"] == "text-embedding-3-small"
    ]
    assert [p["attributes"]["gen_ai.operation.name"] for p in embedding] == ["embeddings"]
    assert [p["attributes"]["gen_ai.token.type"] for p in embedding] == ["input"]


def test_gap_histogram_counts_and_sum_are_exact():
    # A stream whose chunks arrive at known gaps: the exported histogram has exactly one
    # value per gap, in the right buckets, with the right sum.
    with OTLPReceiver() as receiver:
        sink = sink_for(receiver.endpoint)
        collector = collector_for(sink)

        @collector.track_request("openai", model="m")
        def stream():
            for delay in (0, 0.005, 0.03, 0.05, 0.0):
                time.sleep(delay)  # the gap being measured, not a synchronisation
                yield "word "

        assert list(stream()) == ["word "] * 5
        assert collector.flush(10)
        (point,) = [
            p
            for p in receiver.points()
            if p["name"] == "gen_ai.client.operation.time_per_output_chunk"
        ]
        collector.shutdown(5)
    assert point["count"] == 4
    counts = point["bucket_counts"]
    assert sum(counts) == 4
    assert counts[0] >= 1  # the two immediate ones (and maybe the 5 ms one) are < 10 ms
    assert sum(counts[2:4]) >= 1  # the 30 ms one lands in (20, 40] or (40, 80]
    assert 0.08 <= point["sum"] < 0.5


def test_breaker_gauge_carries_no_request_attributes():
    with OTLPReceiver() as receiver:
        sink = sink_for(receiver.endpoint)
        collector = collector_for(sink)
        collector.record(
            ReliabilityMetrics(
                timestamp=time.time(),
                request_id="a",
                provider="openai",
                model="gpt-4o",
                attributes={
                    "http.route": "/chat",
                    "server.address": "api.openai.com",
                    "server.port": 443,
                },
                circuit_breaker_state="OPEN",
                retry_attempts=1,
            )
        )
        assert collector.flush(10)
        points = receiver.points()
        collector.shutdown(5)
    (gauge,) = [p for p in points if p["name"] == "llm.circuit_breaker.state"]
    assert gauge["attributes"] == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
    }
    (retries,) = [p for p in points if p["name"] == "llm.retry.attempts"]
    assert retries["attributes"]["http.route"] == "/chat"  # request-scoped: kept there


def test_boundaries_hold_on_a_meter_provider_without_views():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    sink = OTelMetricsSink(meter_provider=provider, environ={})
    m = RequestMetrics(time.time(), "r", "openai", "gpt-4o", None, 1.0, None, 1500.0)
    m.set_usage(100, 20)
    sink.record_batch([m])
    data = reader.get_metrics_data()
    found = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for dp in metric.data.data_points:
                    if hasattr(dp, "explicit_bounds"):
                        found[metric.name] = list(dp.explicit_bounds)
    assert found["gen_ai.client.operation.duration"] == SECONDS
    assert found["gen_ai.client.token.usage"] == [float(b) for b in TOKENS]
    provider.shutdown()


def test_pipeline_health_follows_the_namespace_on_an_application_provider(make_collector):
    # The pipeline's own families: counters under the prefix, monotonic and cumulative, read
    # from the collector the sink belongs to, on a provider the application passed in too.
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    sink = OTelMetricsSink(meter_provider=provider, namespace="acme", environ={})
    collector = make_collector([sink])
    for _ in range(3):
        assert collector.record("not a record") is False
    assert collector.flush(10)
    found = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name.startswith("acme."):
                    found[metric.name] = metric
    assert set(found) == {"acme.records.dropped", "acme.sink.export_failures"}
    for metric in found.values():
        assert metric.data.is_monotonic
        assert metric.data.aggregation_temporality == AggregationTemporality.CUMULATIVE
    dropped = {
        dict(dp.attributes)["reason"]: dp.value
        for dp in found["acme.records.dropped"].data.data_points
        if "sink" not in dp.attributes
    }
    assert dropped["invalid"] == 3 and dropped["queue_full"] == 0
    failures = [dict(dp.attributes) for dp in found["acme.sink.export_failures"].data.data_points]
    assert failures == [{"sink": "otlp"}]
    assert found["acme.records.dropped"].unit == "{record}"
    provider.shutdown()


def test_each_first_arrival_time_is_one_family():
    # TTFT (first content) and time to first chunk: one family each, both sinks build theirs
    # from it. Only the second is the conventions' (left out with genai_instruments=False).
    first = {f.key: f for f in FAMILIES if "first" in f.key or "first" in f.name}
    assert {k: (f.name, f.kind, f.unit, list(f.buckets), f.genai) for k, f in first.items()} == {
        "time_to_first_chunk": (
            "gen_ai.client.operation.time_to_first_chunk", "histogram", "s", SECONDS, True
        ),
        "time_to_first_token": ("{ns}.time_to_first_token", "histogram", "s", SECONDS, False),
    }  # fmt: skip


def test_first_arrival_times_on_an_application_provider():
    # On a provider passed in (the SDK's instruments, not the sink's own aggregation).
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    sink = OTelMetricsSink(meter_provider=provider, environ={})
    m = RequestMetrics(time.time(), "r", "openai", "gpt-4o", None, 1.0, None, 900.0, 640.0)
    m.method, m.time_to_first_chunk_ms = "stream", 5.0
    sink.record_batch([m, RequestMetrics(time.time(), "b", "openai", "gpt-4o", None, 1.0)])
    found = {
        metric.name: [(dp.count, dp.sum, list(dp.bucket_counts)) for dp in metric.data.data_points]
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if "first" in metric.name
    }
    provider.shutdown()
    assert found == {
        "llm.time_to_first_token": [(1, 0.64, [0] * 6 + [1] + [0] * 8)],  # (0.32, 0.64]
        "gen_ai.client.operation.time_to_first_chunk": [(1, 0.005, [1] + [0] * 14)],
    }


def test_per_chunk_values_on_an_application_provider():
    # On a provider passed in, the SDK's own instrument gets one value per gap.
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    sink = OTelMetricsSink(meter_provider=provider, environ={})
    stream = StreamingMetrics(time.time(), "s", "openai", "gpt-4o", total_chunks=6)
    gaps = ChunkGaps()
    stamps = [1.0, 1.005, 1.02, 1.05, 1.205, 1.205]
    for earlier, later in zip(stamps, stamps[1:]):
        gaps.add(later - earlier)
    stream._gaps = gaps
    sink.record_batch([stream])
    (point,) = [
        dp
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "gen_ai.client.operation.time_per_output_chunk"
        for dp in metric.data.data_points
    ]
    assert point.count == 5 and point.sum == pytest.approx(0.205)
    assert list(point.bucket_counts)[:5] == [2, 1, 1, 0, 1]  # 5 ms and 0; 15; 30; 155 ms
    provider.shutdown()


# --------------------------------------------------------------------------- estimates
def _usage_points(points):
    return [p for p in points if p["name"] in ("gen_ai.client.token.usage", "llm.cost")]


@pytest.mark.parametrize("export_estimates", [False, True])
def test_estimated_tokens_are_not_usage_unless_asked(export_estimates):
    with OTLPReceiver() as receiver, LocalLLMServer(reply_words=8, report_usage=False) as llm:
        sink = sink_for(receiver.endpoint, export_estimated_tokens=export_estimates)
        collector = collector_for(sink, enable_cost_tracking=True)
        client = SteerLLMClient(
            metrics_collector=collector, openai_api_key="k", openai_base_url=llm.openai_base_url
        )
        result = client.stream_with_usage("hi", model="gpt-4o-mini")
        assert result.aggregation_method in ("tokenizer", "heuristic")
        assert collector.flush(10)
        points = receiver.points()
        client.close()
        collector.shutdown(5)
    usage = _usage_points(points)
    assert receiver.total("llm.requests") == 1
    if not export_estimates:
        assert usage == []
    else:
        assert {p["name"] for p in usage} == {"gen_ai.client.token.usage", "llm.cost"}
        assert all(p["attributes"]["llm.usage.estimated"] is True for p in usage)


def test_provider_reported_tokens_carry_no_estimate_mark():
    with OTLPReceiver() as receiver, LocalLLMServer(reply_words=8) as llm:
        sink = sink_for(receiver.endpoint)
        collector = collector_for(sink, enable_cost_tracking=True)
        client = SteerLLMClient(
            metrics_collector=collector, openai_api_key="k", openai_base_url=llm.openai_base_url
        )
        client.stream_with_usage("hi", model="gpt-4o-mini")
        assert collector.flush(10)
        usage = _usage_points(receiver.points())
        client.close()
        collector.shutdown(5)
    assert len(usage) == 3  # input, output, cost
    assert not any("llm.usage.estimated" in p["attributes"] for p in usage)


# --------------------------------------------------------------------------- double counting
def test_another_genai_instrumentor_is_named_once_and_can_be_left_the_gen_ai_instruments(caplog):
    openai_v2 = openai_v2_instrumentor()
    instrumentor = openai_v2.OpenAIInstrumentor()
    instrumentor.instrument(meter_provider=MeterProvider())
    try:
        with OTLPReceiver() as receiver, caplog.at_level(logging.WARNING, "steer_llm_sdk"):
            sink = sink_for(receiver.endpoint)
            collector = collector_for(sink)
            collector.record(
                RequestMetrics(time.time(), "r", "openai", "gpt-4o", None, 1.0, None, 9.0)
            )
            assert collector.flush(10)
            warnings = [r for r in caplog.records if "counted twice" in r.getMessage()]
            assert len(warnings) == 1 and "openai-v2" in warnings[0].getMessage()
            collector.shutdown(5)

            caplog.clear()
            quiet = sink_for(receiver.endpoint, genai_instruments=False)
            collector = collector_for(quiet)
            collector.record(
                RequestMetrics(time.time(), "q", "openai", "gpt-4o", None, 1.0, None, 9.0)
            )
            assert collector.flush(10)
            ours = [
                p
                for p in receiver.points()
                if p["resource"]["service.instance.id"] == quiet.instance_id
            ]
            collector.shutdown(5)
            assert not [r for r in caplog.records if "counted twice" in r.getMessage()]
        names = {p["name"] for p in ours}
        assert "llm.requests" in names and not any(n.startswith("gen_ai.") for n in names)
    finally:
        instrumentor.uninstrument()


def test_no_warning_without_another_instrumentation(caplog):
    with OTLPReceiver() as receiver, caplog.at_level(logging.WARNING, "steer_llm_sdk"):
        sink = sink_for(receiver.endpoint)
        collector = collector_for(sink)
        collector.record(RequestMetrics(time.time(), "r", "openai", "gpt-4o", None, 1.0, None, 9.0))
        assert collector.flush(10)
        collector.shutdown(5)
    assert not [r for r in caplog.records if "counted twice" in r.getMessage()]


# --------------------------------------------------------------------------- variables
def export_once(env, **options):
    """Build a sink from ``env`` (+ options), record one request, flush, return the sink."""
    options.setdefault("environ", env)
    sink = OTelMetricsSink(**options)
    collector = collector_for(sink)
    collector.record(RequestMetrics(time.time(), "r", "openai", "gpt-4o", None, 1.0, None, 9.0))
    collector.flush(10)
    collector.shutdown(5)
    return sink


def test_endpoint_precedence():
    with OTLPReceiver() as general, OTLPReceiver() as specific, OTLPReceiver() as explicit:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": general.endpoint}
        export_once(env)  # the general variable is a base URL: /v1/metrics is appended
        assert general.total("llm.requests") == 1
        env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] = specific.endpoint + "/v1/metrics"
        export_once(env)  # the specific one wins, used as given
        assert specific.total("llm.requests") == 1 and general.total("llm.requests") == 1
        export_once(env, endpoint=explicit.endpoint)  # the argument wins over both
        assert explicit.total("llm.requests") == 1
        assert specific.total("llm.requests") == 1 and general.total("llm.requests") == 1


def test_headers_and_compression_from_variables_with_precedence():
    with OTLPReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_HEADERS": "x-general=1,x-tenant=general",
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "x-tenant=acme%20corp,authorization=Bearer%20t",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        }
        export_once(env)
        exports = len(receiver.headers)  # a flush and the final export at shutdown
        export_once(env, headers={"x-explicit": "yes"}, compression="deflate")
        first, second = receiver.headers[0], receiver.headers[exports]
        assert receiver.total("llm.requests") == 2
    # The specific variable replaces the general one as a whole (not merged).
    assert first["x-tenant"] == "acme corp" and first["authorization"] == "Bearer t"
    assert "x-general" not in first and first["content-encoding"] == "gzip"
    assert second["x-explicit"] == "yes" and "x-tenant" not in second
    assert second["content-encoding"] == "deflate"


def test_resource_from_variables_never_overwritten():
    with OTLPReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_RESOURCE_ATTRIBUTES": (
                "service.name=from-attrs,service.namespace=shop,deployment.environment=prod"
            ),
        }
        export_once(env)
        export_once({**env, "OTEL_SERVICE_NAME": "from-name"})
        export_once(
            {**env, "OTEL_SERVICE_NAME": "from-name"}, service_name="explicit", namespace="acme"
        )
        resources = list(
            {
                p["resource"]["service.instance.id"]: p["resource"]
                for p in receiver.points()
                if p["name"] in ("llm.requests", "acme.requests")
            }.values()
        )
        metric_names = {p["name"] for p in receiver.points()}
    assert [r["service.name"] for r in resources] == ["from-attrs", "from-name", "explicit"]
    assert {r["service.namespace"] for r in resources} == {"shop"}  # never the metric prefix
    assert {r["deployment.environment"] for r in resources} == {"prod"}
    assert "acme.requests" in metric_names  # the prefix stays a metric prefix


def test_temporality_preference_from_the_variable():
    delta, cumulative = 1, 2  # AggregationTemporality in OTLP
    with OTLPReceiver() as receiver:
        base = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        for preference in ("delta", "lowmemory", "cumulative"):
            export_once(
                {**base, "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": preference},
                resource_attributes={"case": preference},
            )
        seen = {
            (p["resource"]["case"], p["name"]): p["temporality"]
            for p in receiver.points()
            if p["name"] in ("llm.requests", "gen_ai.client.operation.duration")
        }
    assert seen[("delta", "llm.requests")] == delta
    assert seen[("delta", "gen_ai.client.operation.duration")] == delta
    assert seen[("lowmemory", "llm.requests")] == delta  # synchronous counters: delta
    assert seen[("cumulative", "llm.requests")] == cumulative


def test_export_interval_and_timeouts_are_milliseconds():
    with OTLPReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_METRIC_EXPORT_INTERVAL": "100",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "1500",
        }
        sink = OTelMetricsSink(environ=env)
        assert sink.export_interval_seconds == 0.1 and sink.export_timeout_seconds == 1.5
        collector = collector_for(sink)
        collector.record(RequestMetrics(time.time(), "r", "openai", "gpt-4o", None, 1.0, None, 9.0))
        # No flush: the periodic reader exports on its own within a few intervals.
        assert receiver.wait_for(lambda r: r.total("llm.requests") == 1, timeout=5)
        collector.shutdown(5)
        assert (
            OTelMetricsSink(environ=env, export_interval_seconds=30).export_interval_seconds == 30
        )


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_METRICS_EXPORTER": "none"},
        {"OTEL_SDK_DISABLED": "true"},
        {"OTEL_SDK_DISABLED": "TRUE"},
    ],
    ids=["exporter-none", "sdk-disabled", "sdk-disabled-upper"],
)
def test_switched_off_by_variables(env):
    with OTLPReceiver() as receiver:
        sink = export_once({**env, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
        assert sink.active is False
        assert receiver.points() == []


def test_grpc_protocol_from_the_variable():
    with OTLPReceiver("grpc") as receiver:
        export_once(
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            }
        )
        assert receiver.total("llm.requests") == 1


@pytest.mark.parametrize(
    "env, message",
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "http/json"),
        ({"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "carrier-pigeon"}, "carrier-pigeon"),
        ({"OTEL_METRICS_EXPORTER": "prometheus"}, "PrometheusMetricsSink"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "brotli"}, "brotli"),
        ({"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "sometimes"}, "sometimes"),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "soon"}, "milliseconds"),
    ],
)
def test_unsupported_values_name_themselves(env, message):
    with pytest.raises(ValueError, match=message):
        OTelMetricsSink(environ=env)


def test_specific_protocol_variable_wins_over_the_general_one():
    env = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",
    }
    assert OTelMetricsSink(environ=env).protocol == "grpc"
