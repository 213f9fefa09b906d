"""PrometheusMetricsSink: families and labels in one process, the web endpoints, and the
multi-worker path end to end against a real Prometheus server.

The pipeline's own health (records lost, sinks' failed exports) is read from the collectors
that deliver to the sink: checked in one process, and across real forked workers sharing a
multiprocess directory.

The end-to-end test runs `gunicorn --preload -w 4 --max-requests 15` serving the Flask
example (its views call the local LLM server) with PROMETHEUS_MULTIPROC_DIR set, and a real
Prometheus (Debian's package, installed by .ci/run) scraping the app's /_steer/metrics every
second. PromQL must then count exactly the requests served, although workers were recycled.
"""

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from support import spawn
from support.prometheus import (
    free_port,
    needs_prometheus,
    prometheus_server,
    query,
    samples,
    scrape_config,
    total,
    wait_for,
)
from support.records import request_record

from steer_llm_sdk.observability import StreamingMetrics
from steer_llm_sdk.observability.models import ChunkGaps
from steer_llm_sdk.observability.sinks import PrometheusMetricsSink

SECONDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]

pytestmark = pytest.mark.timeout(120)


#: A call of 300 ms from a chat route, 100 tokens in, 20 out (its attributes are shared,
#: read-only, as the records of one context share theirs).
request = partial(
    request_record,
    "r",
    model="gpt-4o",
    duration_ms=300.0,
    usage=(100, 20),
    attributes={"http.route": "/chat", "user.id": "u1"},
)


# --------------------------------------------------------------------------- one process
def test_families_buckets_and_labels_in_prometheus_naming():
    sink = PrometheusMetricsSink(registry=CollectorRegistry())
    failed = request(success=False, error_class="RateLimitError", cost_usd=None)
    sink.record_batch([request(cost_usd=0.01), failed])
    stream = StreamingMetrics(
        time.time(), "s", "openai", "gpt-4o", total_chunks=5, first_chunk_latency_ms=120.0
    )
    gaps = ChunkGaps()
    for gap in (0.005, 0.03, 0.065, 0.0):
        gaps.add(gap)
    stream._gaps = gaps
    sink.record_batch([stream])
    body, content_type = sink.exposition()
    assert content_type.startswith("text/plain")
    parsed = samples(body.decode())

    assert total(parsed, "llm_requests_total") == 2
    assert total(parsed, "llm_requests_total", error_type="RateLimitError") == 1
    assert total(parsed, "llm_cost_USD_total") == pytest.approx(0.01)
    assert total(parsed, "gen_ai_client_operation_duration_seconds_count") == 2
    buckets = sorted(
        float(dict(key)["le"])
        for (name, key), _ in parsed.items()
        if name == "gen_ai_client_operation_duration_seconds_bucket"
        and dict(key).get("error_type") == "RateLimitError"
    )
    assert buckets == SECONDS + [float("inf")]
    assert total(parsed, "gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 200
    # One value per gap after the first chunk, exact sum.
    assert total(parsed, "gen_ai_client_operation_time_per_output_chunk_seconds_count") == 4
    assert total(
        parsed, "gen_ai_client_operation_time_per_output_chunk_seconds_sum"
    ) == pytest.approx(0.1)
    labels = next(dict(key) for (name, key), _ in parsed.items() if name == "llm_requests_total")
    assert labels["http_route"] == "/chat" and "user_id" not in labels
    assert labels["gen_ai_operation_name"] == "chat" and labels["gen_ai_provider_name"] == "openai"


def test_both_first_arrival_times_in_prometheus_naming():
    # TTFT (first content) and time to first chunk, each once per streamed RequestMetrics:
    # the StreamingMetrics carrying the same first-chunk time adds nothing, nor does a
    # blocking call (neither time).
    sink = PrometheusMetricsSink(registry=CollectorRegistry())
    streamed = request(method="stream", time_to_first_chunk_ms=30.0, time_to_first_token_ms=150.0)
    stream = StreamingMetrics(
        time.time(), "r", "openai", "gpt-4o", total_chunks=4, first_chunk_latency_ms=30.0
    )
    sink.record_batch([streamed, stream, request()])
    parsed = samples(sink.exposition()[0].decode())
    for name, value in (
        ("llm_time_to_first_token_seconds", 0.15),
        ("gen_ai_client_operation_time_to_first_chunk_seconds", 0.03),
    ):
        buckets = {
            float(dict(key)["le"]): count
            for (sample, key), count in parsed.items()
            if sample == name + "_bucket"
        }
        assert buckets == {b: float(value <= b) for b in SECONDS + [float("inf")]}, name
        assert (total(parsed, name + "_count"), total(parsed, name + "_sum")) == (1, value), name
    labels = next(
        dict(key)
        for (sample, key), _ in parsed.items()
        if sample == "llm_time_to_first_token_seconds_count"
    )
    assert labels["gen_ai_request_model"] == "gpt-4o" and labels["error_type"] == ""


@pytest.mark.parametrize("export_estimates", [False, True])
def test_estimated_tokens_left_out_unless_asked(export_estimates):
    sink = PrometheusMetricsSink(
        registry=CollectorRegistry(), export_estimated_tokens=export_estimates
    )
    sink.record_batch([request(tokens_estimated=True, cost_usd=0.5)])
    parsed = samples(sink.exposition()[0].decode())
    assert total(parsed, "llm_requests_total") == 1
    usage = total(parsed, "gen_ai_client_token_usage_count")
    cost = total(parsed, "llm_cost_USD_total")
    if export_estimates:
        assert usage == 2 and cost == 0.5
        assert total(parsed, "llm_cost_USD_total", llm_usage_estimated="true") == 0.5
    else:
        assert usage == 0 and cost == 0


def test_label_sets_are_bounded():
    sink = PrometheusMetricsSink(registry=CollectorRegistry(), max_label_sets=3)
    sink.record_batch([request(model=f"m{i}") for i in range(10)])
    parsed = samples(sink.exposition()[0].decode())
    assert total(parsed, "llm_requests_total") == 10
    assert total(parsed, "llm_requests_total", gen_ai_request_model="_OTHER") == 7
    assert sink.overflowed["requests"] == 7


def test_each_registry_gets_its_own_families():
    # Registries come and go; a new one may reuse a collected one's id. Each sink must still
    # record into its own registry.
    for _ in range(30):
        sink = PrometheusMetricsSink(registry=CollectorRegistry())
        sink.record_batch([request()])
        assert total(samples(sink.exposition()[0].decode()), "llm_requests_total") == 1
        del sink


def _served(sink):
    """What ``sink``'s standalone HTTP server answers at ``/metrics`` (stopped after)."""
    port = free_port()
    server, thread = sink.start_http_server(port)
    try:
        return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_standalone_http_server_serves_the_families():
    sink = PrometheusMetricsSink(registry=CollectorRegistry())
    sink.record_batch([request()])
    text = _served(sink)
    assert total(samples(text), "llm_requests_total") == 1


def test_multiprocess_variable_set_too_late_is_refused():
    # This process imported prometheus_client without the variable: the sink must say so
    # instead of silently keeping per-process values.
    code = (
        "import os, prometheus_client\n"
        "os.environ['PROMETHEUS_MULTIPROC_DIR'] = '/tmp'\n"
        "from steer_llm_sdk.observability.sinks import PrometheusMetricsSink\n"
        "try:\n    PrometheusMetricsSink()\nexcept RuntimeError as e:\n    print('refused:', e)\n"
    )
    out = spawn.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "refused: PROMETHEUS_MULTIPROC_DIR is set" in out.stdout, out.stderr


# --------------------------------------------------------------------------- pipeline health
class Refusing:
    """A sink whose every call raises."""

    name = "refusing"

    def record(self, metrics):
        raise ConnectionError("refused")

    def flush(self):
        raise ConnectionError("refused")


def health(text):
    """({(reason, sink): records dropped}, {sink: failed exports}) of an exposition."""
    parsed = samples(text)
    dropped = {
        (labels["reason"], labels["sink"]): value
        for (name, key), value in parsed.items()
        for labels in [dict(key)]
        if name == "llm_records_dropped_total"
    }
    failures = {
        dict(key)["sink"]: value
        for (name, key), value in parsed.items()
        if name == "llm_sink_export_failures_total"
    }
    return dropped, failures


def test_pipeline_losses_and_failed_exports_are_counters_of_the_collectors_stats(make_collector):
    registry = CollectorRegistry()
    # Two sinks sharing one registry's families: the collector's losses are counted once.
    sinks = [PrometheusMetricsSink(registry=registry), PrometheusMetricsSink(registry=registry)]
    collector = make_collector(
        [*sinks, Refusing()], filters=[lambda m: None if m.model == "secret" else m]
    )
    assert health(sinks[0].exposition()[0].decode()) == ({}, {})  # nothing counted yet
    for i in range(3):
        collector.record(request_record(i))
    collector.record(request_record(9, model="secret"))
    for _ in range(4):
        assert collector.record("not a record") is False
    collector.flush(10)
    collector.flush(10)  # the refusing sink's last failure is counted by now
    stats = collector.stats()
    dropped, failures = health(sinks[0].exposition()[0].decode())
    assert dropped[("invalid", "")] == 4 == stats.dropped["invalid"]
    assert dropped[("filtered", "")] == 1
    assert dropped[("sink_error", "refusing")] == stats.sinks["refusing"].failed == 3
    # Every reason has a series, 0 included, so that rate() sees its first loss.
    assert {reason for reason, sink in dropped if not sink} == {
        "sampled_out",
        "filtered",
        *stats.dropped,
    }
    assert dropped[("queue_full", "")] == 0 and dropped[("sink_error", "prometheus")] == 0
    assert failures == {
        "prometheus": 0,
        "prometheus#2": 0,
        "refusing": stats.sinks["refusing"].errors,
    }
    assert failures["refusing"] >= 5  # 3 records and 2 flushes


def test_a_scrape_reads_losses_of_records_that_never_reach_the_sink(make_collector):
    # Sampled out: the sink is never called, yet each scrape shows the count so far, served
    # by the sink, by its standalone server, or (after a flush) by the application.
    sink = PrometheusMetricsSink(registry=CollectorRegistry())
    collector = make_collector([sink], request_sampling_rate=0.0)
    for i in range(5):
        assert collector.record(request_record(i)) is False
    dropped, _ = health(sink.exposition()[0].decode())
    assert dropped[("sampled_out", "")] == 5
    collector.record(request_record(5))
    text = _served(sink)
    assert health(text)[0][("sampled_out", "")] == 6
    # A registry the application serves itself is brought up to date by a flush.
    collector.record(request_record(6))
    assert collector.flush(10)
    assert health(generate_latest(sink.registry).decode())[0][("sampled_out", "")] == 7


WORKERS = """
import json, os, sys
from steer_llm_sdk.observability import MetricsCollector, MetricsConfig
from steer_llm_sdk.observability.sinks import PrometheusMetricsSink
from steer_llm_sdk.observability.sinks.prometheus import exposition

sink = PrometheusMetricsSink()
collector = MetricsCollector(MetricsConfig(flush_on_exit=False, batch_timeout_seconds=0.02), [sink])
for _ in range(10):
    collector.record("not a record")
assert collector.flush(10)
children = []
for worker in range(3):  # pre-forked workers, each losing worker + 1 records
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for _ in range(worker + 1):
                collector.record("not a record")
            code = 0 if collector.flush(10) else 2
        finally:
            os._exit(code)
    children.append(pid)
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
print(json.dumps({"codes": codes, "body": exposition()[0].decode()}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_losses_of_forked_workers_sum_in_multiprocess_mode(tmp_path):
    # Each worker writes its own losses to its own files, counted from zero after the fork:
    # the parent's 10 are not counted again by any worker, and every worker's are kept.
    done = spawn.run(
        [sys.executable, "-c", WORKERS],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["codes"] == [0, 0, 0]
    dropped, failures = health(out["body"])
    assert dropped[("invalid", "")] == 10 + 1 + 2 + 3
    assert failures == {"prometheus": 0}


# --------------------------------------------------------------------------- endpoints
def _flask_app(**config):
    flask = pytest.importorskip("flask")
    from steer_llm_sdk.observability.integrations.flask import SteerLLMMetrics

    app = flask.Flask(__name__)
    app.config.update(config)
    SteerLLMMetrics(app)
    return app.test_client()


def test_flask_endpoint_is_off_by_default_and_token_guarded():
    PrometheusMetricsSink().record_batch([request()])  # the shared default registry
    assert _flask_app().get("/_steer/metrics").status_code == 404
    client = _flask_app(STEER_LLM_METRICS_PROMETHEUS_ENDPOINT=True)
    response = client.get("/_steer/metrics")
    assert (
        response.status_code == 200
        and total(samples(response.get_data(as_text=True)), "llm_requests_total") >= 1
    )
    guarded = _flask_app(
        STEER_LLM_METRICS_PROMETHEUS_ENDPOINT=True, STEER_LLM_METRICS_PROMETHEUS_TOKEN="s3cret"
    )
    assert guarded.get("/_steer/metrics").status_code == 401
    assert (
        guarded.get("/_steer/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    ok = guarded.get("/_steer/metrics", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200


# --------------------------------------------------------------------------- end to end
@needs_prometheus
@pytest.mark.skipif(not spawn.GUNICORN.exists(), reason="gunicorn is not installed")
def test_real_prometheus_counts_every_request_across_recycled_workers(tmp_path):
    from steer_llm_sdk.testing import LocalLLMServer

    n = 120
    app_port = free_port()
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    scrape = scrape_config("app", app_port, "/_steer/metrics", token="scrape-token")
    with LocalLLMServer(reply_words=5) as llm:
        env = dict(
            os.environ,
            STEER_LLM_BASE_URL=llm.url,
            GUNICORN_BIND=f"127.0.0.1:{app_port}",
            GUNICORN_WORKERS="4",
            GUNICORN_MAX_REQUESTS="15",
            PROMETHEUS_MULTIPROC_DIR=str(multiproc),
            STEER_PROMETHEUS_TOKEN="scrape-token",
        )
        for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
            env.pop(key, None)
        app = spawn.gunicorn(env)
        base = f"http://127.0.0.1:{app_port}"
        auth = {"Authorization": "Bearer scrape-token"}
        try:
            with prometheus_server(tmp_path, [scrape]) as prom_url:
                wait_for(lambda: requests.get(base + "/healthz", timeout=1).ok, 30, "gunicorn")
                pids = set()
                durations = []
                with requests.Session() as session:

                    def ask(i):
                        started = time.perf_counter()
                        reply = session.post(base + "/chat", json={"prompt": f"q{i}"}, timeout=10)
                        durations.append(time.perf_counter() - started)
                        assert reply.status_code == 200, reply.text
                        pids.add(session.get(base + "/healthz", timeout=5).json()["pid"])

                    # A few first, until Prometheus has the series: rate() sees no increase in
                    # a series' first sample, so the rest must arrive after it.
                    for i in range(4):
                        ask(i)
                    wait_for(lambda: query(prom_url, "llm_requests_total"), 20, "the first scrape")
                    for i in range(4, n):
                        ask(i)
                # Every request reached a worker that later exited (recycled) or is still up;
                # at most 4 are up at once, so more pids than 4 means recycling happened.
                assert len(pids) > 4, pids

                def total_of(expr):
                    result = query(prom_url, expr)
                    return float(result[0]["value"][1]) if result else -1

                output = 'sum(gen_ai_client_token_usage_count{gen_ai_token_type="output"})'

                def counted():
                    requests_total = total_of("sum(llm_requests_total)")
                    assert requests_total <= n, f"over-counted: {requests_total}"
                    return requests_total == n and total_of(output) == n

                try:
                    wait_for(counted, 40, f"sum(llm_requests_total) == {n} and {n} output points")
                except AssertionError:  # show what the endpoint serves, for the failure's record
                    print(requests.get(base + "/_steer/metrics", timeout=5, headers=auth).text)
                    raise
                # Two scrapes after the last request, so rate() has points to work with.
                wait_for(
                    lambda: (
                        len(query(prom_url, "llm_requests_total[10s]")) > 0
                        and all(
                            len(r["values"]) >= 3
                            for r in query(prom_url, "llm_requests_total[10s]")
                        )
                    ),
                    20,
                    "three scrapes",
                )
                q95 = query(
                    prom_url,
                    "histogram_quantile(0.95, sum by (le) "
                    "(rate(gen_ai_client_operation_duration_seconds_bucket[1m])))",
                )
                value = float(q95[0]["value"][1])
                assert value == value and value not in (float("inf"), float("-inf"))
                # Within the observed range: the LLM call takes no longer than the web request
                # around it, and the quantile lies inside the bucket that holds the slowest.
                upper = next(b for b in SECONDS if b >= max(durations))
                assert 0 < value <= upper
                # Unauthenticated scrapes are refused.
                assert requests.get(base + "/_steer/metrics", timeout=5).status_code == 401
        finally:
            app.send_signal(signal.SIGTERM)
            try:
                app.wait(30)
            except subprocess.TimeoutExpired:
                app.kill()
            if app.stdout is not None:
                print(app.stdout.read()[-4000:])
                app.stdout.close()


def test_bucketed_gaps_equal_one_observation_per_gap():
    from prometheus_client import Histogram

    from steer_llm_sdk.observability.conventions import DURATION_BUCKETS
    from steer_llm_sdk.observability.sinks.prometheus import _observe_bucketed

    stamps = [0.0, 0.004, 0.02, 0.05, 0.05, 0.3, 2.0, 100.0]
    gaps = ChunkGaps()
    for earlier, later in zip(stamps, stamps[1:]):
        gaps.add(later - earlier)
    histogram = gaps.histogram()
    registry = CollectorRegistry()
    fast = Histogram("fast", "d", buckets=DURATION_BUCKETS, registry=registry)
    slow = Histogram("slow", "d", buckets=DURATION_BUCKETS, registry=registry)
    each = Histogram("each", "d", buckets=DURATION_BUCKETS, registry=registry)

    class OnlyObserve:  # a histogram laid out otherwise: the per-gap path
        observe = staticmethod(slow.observe)

    _observe_bucketed(fast, histogram)
    _observe_bucketed(OnlyObserve(), histogram)
    for earlier, later in zip(stamps, stamps[1:]):
        each.observe(later - earlier)
    parsed = samples(generate_latest(registry).decode())

    def series(name):
        return sorted(
            (s.replace(name, ""), dict(k).get("le"), pytest.approx(v))
            for (s, k), v in parsed.items()
            if s.startswith(name) and not s.endswith("_created")
        )

    assert series("fast") == series("each") == series("slow")
