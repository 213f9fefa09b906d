"""Exemplars: the latency histograms (duration, time to first chunk, time to first token)
carry the trace and span id of each call whose GenAI span was sampled.

Real parts throughout: an SDK TracerProvider exporting spans to memory, SteerLLMClient calls
to a LocalLLMServer, the OTLP sink exporting to a real OTLP receiver (on the sink's own
provider, whose histograms the sink aggregates itself, and on a provider passed in, where
the SDK's instruments and reservoir keep them), the Prometheus endpoints served in
OpenMetrics and read with prometheus_client's OpenMetrics parser, and a subprocess in
multiprocess mode, where prometheus_client keeps no exemplars.

The global TracerProvider can be set once per process; :func:`_install` puts one in place
and takes it away again through the API's two module globals, as tests/sinks/test_spans.py does,
so that no later test runs with tracing on.
"""

import json
import os
import sys
import textwrap
import time
from bisect import bisect_left
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from support import spawn
from support.paths import ROOT
from support.records import request_record
from support.tracing import install_provider

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.observability import RequestMetrics, tracing
from steer_llm_sdk.observability.measurements import span_ids
from steer_llm_sdk.observability.sinks import (
    InMemoryMetricsSink,
    OTelMetricsSink,
    PrometheusMetricsSink,
)
from steer_llm_sdk.observability.sinks.otlp import DURATION_BUCKETS
from steer_llm_sdk.testing import OTLPReceiver

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

pytestmark = pytest.mark.timeout(60)

DURATION = "gen_ai.client.operation.duration"
FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
FIRST_TOKEN = "llm.time_to_first_token"
#: The Prometheus names of the three latency families.
PROM = {
    DURATION: "gen_ai_client_operation_duration_seconds",
    FIRST_CHUNK: "gen_ai_client_operation_time_to_first_chunk_seconds",
    FIRST_TOKEN: "llm_time_to_first_token_seconds",
}
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


# --------------------------------------------------------------------------- tracing
class Spans:
    """A global SDK TracerProvider exporting to memory (on span end)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = sdk_trace.TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def ours(self) -> Dict[Tuple[str, str], Any]:
        """Our spans by (trace id, span id), as hex."""
        return {
            (f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}"): s
            for s in self.exporter.get_finished_spans()
            if s.instrumentation_scope.name == tracing.SCOPE_NAME
        }


@pytest.fixture
def traced() -> Iterator[Spans]:
    """A global TracerProvider, installed before the test makes its collectors."""
    spans = Spans()
    install_provider(spans.provider)
    try:
        yield spans
    finally:
        install_provider(None)
        spans.provider.shutdown()


@pytest.fixture
def untraced() -> Iterator[None]:
    install_provider(None)
    yield


# --------------------------------------------------------------------------- calls
def make_calls(collector: Any, llm: Any, tag: str) -> Dict[str, RequestMetrics]:
    """A blocking call and a streamed one, to models of their own (so each has its own
    attribute set, and its own points); their RequestMetrics by kind, once delivered."""
    client = SteerLLMClient(
        metrics_collector=collector, openai_api_key="k", openai_base_url=llm.openai_base_url
    )
    try:
        client.generate("hi", model=f"gpt-{tag}-blocking")
        client.stream_with_usage("hi", model=f"gpt-{tag}-stream")
    finally:
        client.close()
    assert collector.flush(10)
    memory = collector.sinks[0]
    records = {r.model: r for r in memory.get_metrics(metric_type="request")}
    return {"blocking": records[f"gpt-{tag}-blocking"], "stream": records[f"gpt-{tag}-stream"]}


def latencies(record: RequestMetrics) -> Dict[str, float]:
    """The latency values of ``record`` by OTLP family, as the sinks record them."""
    out = {DURATION: record.duration_ms / 1000.0}
    if record.time_to_first_chunk_ms is not None:
        out[FIRST_CHUNK] = record.time_to_first_chunk_ms / 1000.0
    if record.time_to_first_token_ms is not None:
        out[FIRST_TOKEN] = record.time_to_first_token_ms / 1000.0
    return out


def assert_spans_of(records: Dict[str, RequestMetrics], spans: Spans) -> None:
    """Each record carries the ids of the one span the span exporter got for its call."""
    exported = spans.ours()
    assert len(exported) == len(records)
    for record in records.values():
        span = exported[(record.trace_id, record.span_id)]
        assert span.attributes["gen_ai.request.model"] == record.model


# --------------------------------------------------------------------------- OTLP
def otlp_exemplars(exports: List[Any]) -> Dict[Tuple[str, str], List[Tuple[str, str, float]]]:
    """{(histogram, request model): [(trace id, span id, value), ...]} of every exemplar in
    ``exports`` (decoded ExportMetricsServiceRequests)."""
    found: Dict[Tuple[str, str], List[Tuple[str, str, float]]] = {}
    for request in exports:
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.WhichOneof("data") != "histogram":
                        continue
                    for point in metric.histogram.data_points:
                        model = next(
                            a.value.string_value
                            for a in point.attributes
                            if a.key == "gen_ai.request.model"
                        )
                        for e in point.exemplars:
                            found.setdefault((metric.name, model), []).append(
                                (e.trace_id.hex(), e.span_id.hex(), e.as_double)
                            )
    return found


def exemplar_times(exports: List[Any]) -> List[int]:
    return [
        e.time_unix_nano
        for request in exports
        for resource in request.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.WhichOneof("data") == "histogram"
        for point in metric.histogram.data_points
        for e in point.exemplars
    ]


def expected_exemplars(records: Dict[str, RequestMetrics]) -> Dict[Tuple[str, str], List[Any]]:
    return {
        (family, record.model): [(record.trace_id, record.span_id, value)]
        for record in records.values()
        for family, value in latencies(record).items()
    }


@pytest.fixture
def passed_provider() -> Iterator[Any]:
    """Makes a MeterProvider of the application's (exporting to a receiver) for the sink."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    made: List[Any] = []

    def make(endpoint: str) -> Any:
        exporter = OTLPMetricExporter(endpoint=endpoint + "/v1/metrics", timeout=2)
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.shutdown()


def otlp_sink(receiver: OTLPReceiver, provider: Any = None, **options: Any) -> OTelMetricsSink:
    return OTelMetricsSink(
        endpoint=receiver.endpoint,
        export_interval_seconds=3600,
        export_timeout_seconds=2,
        meter_provider=provider,
        environ=options.pop("environ", {}),
        **options,
    )


@pytest.mark.parametrize("where", ["own_provider", "passed_provider"])
def test_otlp_latency_points_carry_the_span_of_their_call(
    traced, make_collector, module_server, passed_provider, where
):
    with OTLPReceiver() as receiver:
        provider = passed_provider(receiver.endpoint) if where == "passed_provider" else None
        sink = otlp_sink(receiver, provider)
        collector = make_collector([InMemoryMetricsSink(), sink])
        before = time.time_ns()
        records = make_calls(collector, module_server, "otlp")
        after = time.time_ns()
        assert_spans_of(records, traced)
        exported = list(receiver.requests)
        # Every latency value of both calls, and nothing else (token counts carry none):
        # one exemplar per point (one call each), the call's own span and value.
        assert otlp_exemplars(exported) == expected_exemplars(records)
        assert all(before <= t <= after for t in exemplar_times(exported))

        # The next export has the same cumulative points and no exemplar again: each
        # exemplar is exported once, as the SDK's reservoir does.
        seen = len(receiver.requests)
        sink.flush()
        again = list(receiver.requests)[seen:]
        assert again and receiver.total(DURATION) == 2
        assert otlp_exemplars(again) == {}


@pytest.mark.parametrize("why", ["no_tracer_provider", "exemplar_filter_always_off"])
def test_otlp_exports_no_exemplar_without_a_sampled_span_or_when_turned_off(
    request, make_collector, module_server, why
):
    if why == "no_tracer_provider":
        request.getfixturevalue("untraced")
        environ: Dict[str, str] = {}
    else:
        request.getfixturevalue("traced")
        environ = {"OTEL_METRICS_EXEMPLAR_FILTER": "always_off"}
    with OTLPReceiver() as receiver:
        collector = make_collector([InMemoryMetricsSink(), otlp_sink(receiver, environ=environ)])
        records = make_calls(collector, module_server, "none")
        has_ids = [r.span_id is not None for r in records.values()]
        assert has_ids == ([False, False] if why == "no_tracer_provider" else [True, True])
        assert receiver.total(DURATION) == 2 and receiver.total(FIRST_CHUNK) == 1
        assert otlp_exemplars(receiver.requests) == {}


def test_otlp_keeps_the_newest_exemplar_of_each_bucket_and_only_real_ids(make_collector):
    # Records built by hand, so that the buckets are known: 0.25 s and 0.3 s share the
    # bucket (0.16, 0.32], where the later one wins; 1.0 s has its own; ids that name no
    # span (upper case, short, zero, not text) make no exemplar, their values still count.
    assert bisect_left(DURATION_BUCKETS, 0.25) == bisect_left(DURATION_BUCKETS, 0.3)
    ids = [(f"{n:032x}", f"{n:016x}") for n in (1, 2, 3)]
    made = [
        request_record(n, "gpt-ids", duration_ms=ms, trace_id=t, span_id=s)
        for n, (ms, (t, s)) in enumerate(zip((250.0, 300.0, 1000.0), ids))
    ]
    bad = [
        ("A" * 32, "b" * 16),
        ("a" * 31, "b" * 16),
        ("0" * 32, "b" * 16),
        ("a" * 32, "0" * 16),
        ("0x" + "a" * 30, "b" * 16),
        ("a" * 32, None),
    ]
    made += [
        request_record(f"bad{i}", "gpt-ids", duration_ms=300.0, trace_id=t, span_id=s)
        for i, (t, s) in enumerate(bad)
    ]
    with OTLPReceiver() as receiver:
        collector = make_collector([otlp_sink(receiver)])
        for record in made:
            assert collector.record(record)
        assert collector.flush(10)
        assert receiver.total(DURATION) == len(made)
        assert otlp_exemplars(receiver.requests) == {
            (DURATION, "gpt-ids"): [(*ids[1], 0.3), (*ids[2], 1.0)]
        }


@pytest.mark.parametrize(
    "trace_id, span_id",
    [
        ("A" * 32, "b" * 16),
        ("a" * 33, "b" * 16),
        ("a" * 32, "b" * 15),
        ("0" * 32, "b" * 16),
        ("a" * 32, "0" * 16),
        ("0x" + "a" * 30, "b" * 16),
        ("_" * 32, "b" * 16),
        (" " + "a" * 31, "b" * 16),
        (None, "b" * 16),
        (1, 2),
    ],
)
def test_span_ids_refuses_what_names_no_span(trace_id, span_id):
    assert span_ids(trace_id, span_id) is None


def test_span_ids_reads_the_ids_a_record_carries():
    assert span_ids(f"{2**127 + 5:032x}", f"{2**63 + 7:016x}") == (2**127 + 5, 2**63 + 7)


def test_an_unknown_exemplar_filter_is_refused_by_name():
    with pytest.raises(ValueError, match="OTEL_METRICS_EXEMPLAR_FILTER"):
        OTelMetricsSink(environ={"OTEL_METRICS_EXEMPLAR_FILTER": "sometimes"})


# --------------------------------------------------------------------------- Prometheus
def openmetrics_exemplars(text: str, model: str) -> Dict[str, Dict[str, Any]]:
    """{family: {le: exemplar}} of the bucket samples of ``model`` carrying an exemplar,
    for the three latency families (Prometheus names)."""
    out: Dict[str, Dict[str, Any]] = {}
    names = {f"{name}_bucket": name for name in PROM.values()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name in names
                and sample.labels.get("gen_ai_request_model") == model
                and sample.exemplar is not None
            ):
                out.setdefault(names[sample.name], {})[sample.labels["le"]] = sample.exemplar
    return out


def bucket_of(value: float) -> str:
    """The ``le`` of the bucket a value falls in (upper-inclusive)."""
    bounds = [float(b) for b in DURATION_BUCKETS]
    index = bisect_left(bounds, value)
    return str(bounds[index]) if index < len(bounds) else "+Inf"


def assert_openmetrics_exemplars(text: str, records: Dict[str, RequestMetrics]) -> None:
    for record in records.values():
        expected = {
            PROM[family]: {bucket_of(value): (record.trace_id, record.span_id, value)}
            for family, value in latencies(record).items()
        }
        found = {
            family: {
                le: (e.labels["trace_id"], e.labels["span_id"], e.value)
                for le, e in buckets.items()
            }
            for family, buckets in openmetrics_exemplars(text, record.model).items()
        }
        assert found == expected, record.model
        for buckets in openmetrics_exemplars(text, record.model).values():
            assert all(set(e.labels) == {"trace_id", "span_id"} for e in buckets.values())


def _flask_scrape(accept: Optional[str]) -> Tuple[str, str]:
    flask = pytest.importorskip("flask")
    from steer_llm_sdk.observability.integrations.flask import SteerLLMMetrics

    app = flask.Flask(__name__)
    app.config.update(STEER_LLM_METRICS_PROMETHEUS_ENDPOINT=True)
    SteerLLMMetrics(app)
    headers = {"Accept": accept} if accept else {}
    response = app.test_client().get("/_steer/metrics", headers=headers)
    assert response.status_code == 200
    return response.get_data(as_text=True), response.headers["Content-Type"]


@pytest.mark.parametrize("endpoint", ["flask", "standalone"])
def test_prometheus_openmetrics_shows_each_call_on_its_bucket(
    traced, make_collector, module_server, endpoint
):
    if endpoint == "flask":  # the integration's endpoint serves the default registry
        sink = PrometheusMetricsSink()
    else:
        sink = PrometheusMetricsSink(registry=CollectorRegistry())
    collector = make_collector([InMemoryMetricsSink(), sink])
    records = make_calls(collector, module_server, f"prom-{endpoint}")
    assert_spans_of(records, traced)

    if endpoint == "flask":
        text, content_type = _flask_scrape(OPENMETRICS)
        classic, classic_type = _flask_scrape(None)
    else:
        server, thread = sink.start_http_server(0)
        try:
            url = f"http://127.0.0.1:{server.server_port}/metrics"
            reply = requests.get(url, headers={"Accept": OPENMETRICS}, timeout=5)
            text, content_type = reply.text, reply.headers["Content-Type"]
            reply = requests.get(url, timeout=5)
            classic, classic_type = reply.text, reply.headers["Content-Type"]
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
    assert content_type.startswith("application/openmetrics-text")
    assert_openmetrics_exemplars(text, records)
    # The classic text format has no place for exemplars: it serves the values only.
    assert classic_type.startswith("text/plain") and " # {" not in classic
    assert f'gen_ai_request_model="{records["stream"].model}"' in classic


def test_prometheus_without_a_span_has_no_exemplar(untraced, make_collector, module_server):
    sink = PrometheusMetricsSink(registry=CollectorRegistry())
    collector = make_collector([InMemoryMetricsSink(), sink])
    records = make_calls(collector, module_server, "prom-untraced")
    body, _ = sink.exposition(OPENMETRICS)
    for record in records.values():
        assert record.span_id is None
        assert openmetrics_exemplars(body.decode(), record.model) == {}
    assert f'gen_ai_request_model="{records["stream"].model}"' in body.decode()


MULTIPROCESS = textwrap.dedent(
    """
    import json, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from steer_llm_sdk import SteerLLMClient
    from steer_llm_sdk.observability import MetricsCollector, MetricsConfig
    from steer_llm_sdk.observability.sinks import InMemoryMetricsSink, PrometheusMetricsSink
    from steer_llm_sdk.observability.sinks.prometheus import exposition

    spans = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    sink = PrometheusMetricsSink()
    collector = MetricsCollector(
        MetricsConfig(batch_timeout_seconds=0.02, flush_on_exit=False),
        [InMemoryMetricsSink(), sink],
    )
    client = SteerLLMClient(
        metrics_collector=collector, openai_api_key="k", openai_base_url=sys.argv[1]
    )
    client.generate("hi", model="gpt-mp-blocking")
    client.stream_with_usage("hi", model="gpt-mp-stream")
    client.close()
    assert collector.flush(10)
    body, content_type = exposition("application/openmetrics-text; version=1.0.0")
    stats = collector.stats()
    print(json.dumps({
        "ids": [r.span_id for r in collector.sinks[0].get_metrics(metric_type="request")],
        "spans": len(spans.get_finished_spans()),
        "body": body.decode(),
        "content_type": content_type,
        "write_failures": sink.write_failures,
        "internal_errors": stats.internal_errors,
        "sink_errors": stats.sinks["prometheus"].errors,
        "sink_failed": stats.sinks["prometheus"].failed,
    }))
    collector.shutdown(5)
    """
)


def test_multiprocess_mode_serves_no_exemplar_and_fails_nothing(tmp_path, module_server):
    done = spawn.run(
        [sys.executable, "-c", MULTIPROCESS, module_server.openai_base_url],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # Both calls had a sampled span (so exemplars were there to carry) ...
    assert out["spans"] == 2 and all(out["ids"]) and len(out["ids"]) == 2
    assert out["content_type"].startswith("application/openmetrics-text")
    # ... the values are all served, with no exemplar, and nothing failed.
    exemplars = 0
    counts = {}
    for family in text_string_to_metric_families(out["body"]):
        for sample in family.samples:
            exemplars += sample.exemplar is not None
            if sample.name == PROM[DURATION] + "_count":
                counts[sample.labels["gen_ai_request_model"]] = sample.value
    assert counts == {"gpt-mp-blocking": 1, "gpt-mp-stream": 1}
    assert exemplars == 0
    assert (out["write_failures"], out["internal_errors"]) == (0, 0)
    assert (out["sink_errors"], out["sink_failed"]) == (0, 0)
