"""GenAI client spans (observability/tracing.py): one per measured call once a global
TracerProvider is set, a child of the span current when the call started, with its record's
start and duration; none while no provider is set, none for records never admitted, never
two for one call (joined calls, another GenAI instrumentation), and a slow exporter delays
no other sink.

The global TracerProvider can be set once per process; :func:`_install` puts one in place
and takes it away again through the API's two module globals (the reset OpenTelemetry's own
test utilities do), so that no later test module runs with tracing on.
"""

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Iterator, List

import pytest
from support.local import local_client
from support.peers import openai_v2_instrumentor
from support.sdk_clients import closing
from support.tracing import install_provider
from support.waiting import reap, wait_until

from steer_llm_sdk.observability import (
    MetricsConfig,
    RequestMetrics,
    instrument,
    tracing,
    uninstrument,
)
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import (  # noqa: E402
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

openai = pytest.importorskip("openai")

GENAI_KEYS = {
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.response.time_to_first_chunk",
    "server.address",
    "server.port",
    "error.type",
}


# --------------------------------------------------------------------------- set-up
class Tracing:
    """A global SDK TracerProvider exporting to memory (synchronously, on span end)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = sdk_trace.TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests")

    def install(self) -> None:
        install_provider(self.provider)

    def spans(self, name_prefix: str = "") -> List[Any]:
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith(name_prefix)]

    def ours(self) -> List[Any]:
        return [
            s
            for s in self.exporter.get_finished_spans()
            if s.instrumentation_scope.name == tracing.SCOPE_NAME
        ]


@pytest.fixture
def otel() -> Iterator[Tracing]:
    """A global TracerProvider, not yet installed (the test calls ``install()``)."""
    made = Tracing()
    try:
        yield made
    finally:
        install_provider(None)
        made.provider.shutdown()


@pytest.fixture
def traced(otel: Tracing) -> Tracing:
    otel.install()
    return otel


@pytest.fixture
def collector(make_collector):
    return make_collector([InMemoryMetricsSink()])


def requests_of(collector: Any) -> List[RequestMetrics]:
    assert collector.flush(5)
    return collector.sinks[0].get_metrics(metric_type="request")


def only(items: List[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


def assert_span_of(span: Any, record: RequestMetrics, parent: Any) -> None:
    """``span`` is the GenAI client span of ``record``, a child of ``parent``."""
    assert span.kind is trace.SpanKind.CLIENT
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert span.context.trace_id == parent.get_span_context().trace_id
    assert span.start_time == int(record.timestamp * 1e9)
    assert span.end_time - span.start_time == round(record.duration_ms * 1e6)
    assert record.trace_id == f"{span.context.trace_id:032x}"
    assert record.span_id == f"{span.context.span_id:016x}"
    assert set(span.attributes) <= GENAI_KEYS  # no content, no other attribute
    assert span.events == () or list(span.events) == []


# --------------------------------------------------------------------------- the span
def test_a_tracked_call_gets_one_span_under_the_current_one(traced, collector):
    @collector.track_request("openai", model="gpt-4o", tenant="acme")
    def answer() -> Any:
        return {"model": "gpt-4o-2024-08-06", "usage": {"prompt_tokens": 7, "completion_tokens": 3}}

    with traced.tracer.start_as_current_span("GET /chat") as parent:
        answer()
    record = only(requests_of(collector))
    span = only(traced.ours())
    assert span.name == "chat gpt-4o"
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 3,
    }
    assert span.status.status_code is trace.StatusCode.UNSET
    assert_span_of(span, record, parent)
    as_dict = record.to_dict()
    assert as_dict["trace_id"] == record.trace_id and as_dict["span_id"] == record.span_id
    assert collector.stats().sinks[tracing.SINK_NAME].delivered >= 1


def test_a_failed_call_sets_error_type_and_status_without_the_message(traced, collector):
    @collector.track_request("anthropic", model="claude-3-5-haiku")
    def fails() -> None:
        raise TimeoutError("secret prompt text in the message")

    with traced.tracer.start_as_current_span("task") as parent, pytest.raises(TimeoutError):
        fails()
    record = only(requests_of(collector))
    span = only(traced.ours())
    assert span.status.status_code is trace.StatusCode.ERROR
    assert not span.status.description
    assert span.attributes["error.type"] == "TimeoutError"
    assert "secret" not in repr(dict(span.attributes)) + repr(span.events)
    assert_span_of(span, record, parent)


def test_a_root_span_when_no_span_is_current(traced, collector):
    collector.track_request("openai")(lambda: None)()
    record = only(requests_of(collector))
    span = only(traced.ours())
    assert span.parent is None and span.name == "chat"
    assert record.span_id == f"{span.context.span_id:016x}"


def test_an_unsampled_call_gets_no_ids(otel, collector):
    sampler = sdk_trace.sampling.ParentBased(sdk_trace.sampling.ALWAYS_ON)
    provider = sdk_trace.TracerProvider(sampler=sampler, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(otel.exporter))
    install_provider(provider)
    try:
        unsampled = trace.NonRecordingSpan(
            trace.SpanContext(1, 2, is_remote=True, trace_flags=trace.TraceFlags(0))
        )
        with trace.use_span(unsampled):
            collector.track_request("openai")(lambda: None)()
        record = only(requests_of(collector))
        assert record.trace_id is None and record.span_id is None
        assert otel.ours() == []
    finally:
        provider.shutdown()


# --------------------------------------------------------------------------- every way in
@pytest.fixture
def sdk(module_server):
    client = openai.OpenAI(base_url=module_server.openai_base_url, api_key="test", max_retries=0)
    with closing(client):
        yield client


@pytest.fixture
def instrumented(collector):
    uninstrument()
    instrument("openai", collector=collector)
    yield
    uninstrument()


def test_instrument_blocking_and_stream_one_span_each(traced, collector, instrumented, sdk):
    user = [{"role": "user", "content": "hi"}]
    with traced.tracer.start_as_current_span("request") as parent:
        sdk.chat.completions.create(model="gpt-4o", messages=user)
        stream = sdk.chat.completions.create(
            model="gpt-4o", messages=user, stream=True, stream_options={"include_usage": True}
        )
        for _ in stream:
            pass
    blocking, streamed = sorted(requests_of(collector), key=lambda r: r.method)
    spans = {s.context.span_id: s for s in traced.ours()}
    assert len(spans) == 2
    for record in (blocking, streamed):
        span = spans[int(record.span_id, 16)]
        assert_span_of(span, record, parent)
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["server.port"] == sdk.base_url.port
        assert span.attributes["gen_ai.usage.output_tokens"] == record.completion_tokens > 0
    assert spans[int(streamed.span_id, 16)].attributes[
        "gen_ai.response.time_to_first_chunk"
    ] == pytest.approx(streamed.time_to_first_chunk_ms / 1000)


def test_a_joined_sdk_call_gives_the_enclosing_call_one_span(traced, collector, instrumented, sdk):
    @collector.track_request("openai", model="gpt-4o")
    def ask() -> str:
        reply = sdk.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        return str(reply.choices[0].message.content)  # the usage is not in what it returns

    with traced.tracer.start_as_current_span("request") as parent:
        ask()
    record = only(requests_of(collector))
    span = only(traced.ours())
    assert_span_of(span, record, parent)
    assert span.attributes["gen_ai.usage.input_tokens"] == record.prompt_tokens > 0


def test_the_client_gets_one_span_per_call(traced, module_server):
    client = local_client(module_server)
    try:
        with traced.tracer.start_as_current_span("request") as parent:
            client.generate("hi", model="gpt-4o-mini")
            with client.stream("hi", model="gpt-4o-mini") as stream:
                for _ in stream:
                    pass
        assert client.metrics_collector.flush(5)
        records = client.metrics_collector.sinks[0].get_metrics(metric_type="request")
    finally:
        client.close()
    assert len(records) == 2 and len(traced.ours()) == 2
    spans = {s.context.span_id: s for s in traced.ours()}
    for record in records:
        span = spans[int(record.span_id, 16)]
        assert_span_of(span, record, parent)
        assert span.attributes["server.address"] == "127.0.0.1"


def test_nested_tracked_calls_are_siblings_under_the_current_span(traced, collector):
    inner = collector.track_request("openai", model="inner")(lambda: None)

    @collector.track_request("openai", model="outer")
    def outer() -> None:
        inner()

    with traced.tracer.start_as_current_span("request") as parent:
        outer()
    records = {r.model: r for r in requests_of(collector)}
    assert records["inner"].parent_request_id == records["outer"].request_id
    spans = {s.name: s for s in traced.ours()}
    assert set(spans) == {"chat inner", "chat outer"}
    for model in ("inner", "outer"):
        assert_span_of(spans[f"chat {model}"], records[model], parent)


# Each way in, each stream consumed each way: one span per RequestMetrics, whatever ends it.
def _entry(name: str, sdk: Any, collector: Any) -> Any:
    """``make()`` for entry ``name``: a stream of the LocalLLMServer's chat answer."""
    user = [{"role": "user", "content": "hi"}]
    options = {"model": "gpt-4o", "messages": user, "stream_options": {"include_usage": True}}
    if name == "instrument":
        return lambda: sdk.chat.completions.create(stream=True, **options)
    if name == "decorated_generator":  # the SDK's stream joins the tracked generator

        @collector.track_request("openai", model="gpt-4o")
        def relay() -> Any:
            yield from sdk.chat.completions.create(stream=True, **options)

        return relay
    if name == "helper":  # opened where it is made; its events may be read elsewhere

        def helper() -> Any:
            manager = sdk.chat.completions.stream(**options)
            events = manager.__enter__()

            def read() -> Any:
                try:
                    yield from events
                finally:
                    manager.__exit__(None, None, None)

            return read()

        return helper
    raise AssertionError(name)


def _inline(make: Any) -> None:
    for _ in make():
        pass


def _break(make: Any) -> None:
    for _ in make():
        break


def _abandon(make: Any) -> None:
    stream = make()
    next(iter(stream))
    del stream
    gc.collect()


def _elsewhere(make: Any) -> None:
    stream = make()
    reader = threading.Thread(target=lambda: [None for _ in stream])
    reader.start()
    reader.join(10)
    assert not reader.is_alive()


def _to_list(make: Any) -> None:
    list(make())


@pytest.mark.parametrize("consume", [_inline, _break, _abandon, _elsewhere, _to_list])
@pytest.mark.parametrize("entry", ["instrument", "decorated_generator", "helper"])
def test_one_span_per_stream_every_way_in_and_out(
    entry, consume, traced, collector, instrumented, sdk
):
    with traced.tracer.start_as_current_span("request") as parent:
        consume(_entry(entry, sdk, collector))
    record = only(requests_of(collector))
    assert record.method == "stream"
    assert_span_of(only(traced.ours()), record, parent)


# --------------------------------------------------------------------------- a real web app
def test_flask_request_span_is_the_parent_also_of_a_stream_read_on_another_thread(
    traced, collector, instrumented, sdk
):
    flask = pytest.importorskip("flask")
    from werkzeug.serving import make_server

    app = flask.Flask("spans")
    parents = {}
    user = [{"role": "user", "content": "hi"}]

    @app.route("/chat")
    def chat() -> str:
        with traced.tracer.start_as_current_span("GET /chat") as span:
            parents["chat"] = span
            reply = sdk.chat.completions.create(model="gpt-4o", messages=user)
        return str(reply.choices[0].message.content)

    @app.route("/stream")
    def stream() -> str:
        with traced.tracer.start_as_current_span("GET /stream") as span:
            parents["stream"] = span
            chunks = sdk.chat.completions.create(
                model="gpt-4o-mini",
                messages=user,
                stream=True,
                stream_options={"include_usage": True},
            )
        reader = threading.Thread(target=lambda: [None for _ in chunks])
        reader.start()  # read after the request span ended, on a thread of its own
        reader.join(10)
        return "done"

    server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        import requests

        base = f"http://127.0.0.1:{server.server_port}"
        assert requests.get(base + "/chat", timeout=10).status_code == 200
        assert requests.get(base + "/stream", timeout=10).text == "done"
    finally:
        server.shutdown()
        serving.join(10)
    records = {r.model: r for r in requests_of(collector)}
    spans = {s.context.span_id: s for s in traced.ours()}
    assert len(spans) == 2
    assert_span_of(spans[int(records["gpt-4o"].span_id, 16)], records["gpt-4o"], parents["chat"])
    streamed = records["gpt-4o-mini"]
    assert streamed.method == "stream" and streamed.completion_tokens
    assert_span_of(spans[int(streamed.span_id, 16)], streamed, parents["stream"])


# --------------------------------------------------------------------------- no span
def test_no_provider_no_span_sink_no_ids(otel, collector):
    assert not tracing.STATE.active
    collector.track_request("openai")(lambda: None)()
    record = only(requests_of(collector))
    assert record.trace_id is None and record.span_id is None
    assert tracing.SINK_NAME not in collector.stats().sinks
    assert [type(s) for s in collector.sinks] == [InMemoryMetricsSink]


def test_a_provider_set_later_is_noticed_at_the_next_batch(otel, collector):
    call = collector.track_request("openai")(lambda: None)
    call()
    assert collector.flush(5)
    trace.set_tracer_provider(otel.provider)  # not refreshed: noticed by the flush thread
    call()  # started before any batch noticed the provider: no span
    assert collector.flush(5)  # this batch notices it
    assert tracing.STATE.active
    call()
    first, second, third = sorted(requests_of(collector), key=lambda r: r.timestamp)
    assert first.span_id is None and second.span_id is None
    assert third.span_id == f"{only(otel.ours()).context.span_id:016x}"


def test_trace_spans_false_makes_no_span(traced, make_collector):
    quiet = make_collector([InMemoryMetricsSink()], trace_spans=False)
    loud = make_collector([InMemoryMetricsSink()])  # another collector wants spans
    assert tracing.STATE.active
    quiet.track_request("openai")(lambda: None)()
    loud.track_request("openai", model="loud")(lambda: None)()
    assert only(requests_of(quiet)).span_id is None
    assert only(requests_of(loud)).span_id is not None
    assert [s.name for s in traced.ours()] == ["chat loud"]
    assert tracing.SINK_NAME not in quiet.stats().sinks


def test_trace_spans_is_validated_and_read_from_the_environment():
    assert MetricsConfig().trace_spans is True
    assert MetricsConfig.from_env({"STEER_METRICS_TRACE_SPANS": "off"}).trace_spans is False
    with pytest.raises(TypeError, match="trace_spans must be a bool"):
        MetricsConfig(trace_spans=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="STEER_METRICS_TRACE_SPANS"):
        MetricsConfig.from_env({"STEER_METRICS_TRACE_SPANS": "maybe"})


def test_records_never_admitted_get_no_span(traced, make_collector):
    sampled_out = make_collector([InMemoryMetricsSink()], request_sampling_rate=0.0)
    filtered = make_collector([InMemoryMetricsSink()], filters=[lambda record: None])
    disabled = make_collector([InMemoryMetricsSink()], enabled=False)
    for collector in (sampled_out, filtered, disabled):
        collector.track_request("openai")(lambda: None)()
        assert collector.flush(5)
    assert filtered.stats().filtered == 1 and sampled_out.stats().sampled_out == 1
    for collector in (sampled_out, filtered, disabled):  # no span started, so no span sink
        assert list(collector.stats().sinks) == ["in_memory"]
    built = make_collector([InMemoryMetricsSink()])
    with traced.tracer.start_as_current_span("request"):
        built.record(RequestMetrics(time.time(), provider="openai", duration_ms=5.0))  # built
    assert only(requests_of(built)).span_id is None
    assert traced.ours() == []


# --------------------------------------------------------------------------- isolation
class BlockingExporter(SpanExporter):
    """Exports synchronously from ``on_end`` (SimpleSpanProcessor) and waits for a gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.exported: List[Any] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.entered.set()
        self.gate.wait(10)
        self.exported.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.gate.set()


@pytest.mark.timeout(30)
def test_a_blocking_span_exporter_delays_no_other_sink(otel, collector):
    exporter = BlockingExporter()
    provider = sdk_trace.TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    install_provider(provider)
    try:
        call = collector.track_request("openai")(lambda: None)
        call()
        assert exporter.entered.wait(5)  # the span sink's thread is stuck in the exporter
        for _ in range(3):
            call()
        sink = collector.sinks[0]
        assert wait_until(lambda: len(sink.get_metrics(metric_type="request")) == 4, 5)
        spans = collector.stats().sinks[tracing.SINK_NAME]
        assert spans.pending == 4 and spans.delivered == 0  # the first is in the exporter
        exporter.gate.set()
        assert collector.flush(5)
        assert len(exporter.exported) == 4
    finally:
        exporter.gate.set()
        provider.shutdown()


@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_forked_child_spans_its_own_calls_and_the_parent_its_queued_ones(traced, make_collector):
    collector = make_collector([InMemoryMetricsSink()], batch_timeout_seconds=3600)
    call = collector.track_request("openai")
    call(lambda: None)()  # queued in the parent (the batch timeout is an hour) at the fork
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            before = len(traced.ours())
            call(lambda: None)()
            ok = collector.flush(5)
            spans = traced.ours()[before:]
            record = collector.sinks[0].get_metrics(metric_type="request")
            code = 0 if ok and len(spans) == 1 and len(record) == 1 else 3
            if code == 0 and record[0].span_id != f"{spans[0].context.span_id:016x}":
                code = 4
        finally:
            os._exit(code)
    assert reap(pid, 30) == 0
    record = only(requests_of(collector))
    assert record.span_id == f"{only(traced.ours()).context.span_id:016x}"


# --------------------------------------------------------------------------- never doubled
@pytest.fixture
def openai_v2(sdk):
    instrumentor = openai_v2_instrumentor().OpenAIInstrumentor()
    owner = openai.resources.chat.completions.Completions
    original = owner.__dict__["create"]
    yield instrumentor
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    uninstrument()
    owner.create = original  # their unwrap() may have taken ours off: see test_instrument.py


def _in_order(order: str, instrumentor: Any, collector: Any) -> None:
    if order == "theirs_first":  # ours wraps theirs
        instrumentor.instrument()
        instrument("openai", collector=collector)
    else:  # theirs wraps ours
        instrument("openai", collector=collector)
        instrumentor.instrument()


def test_covered_modules_follow_the_other_instrumentation(traced, openai_v2):
    assert tracing.covered_modules() == ()
    openai_v2.instrument()
    assert "openai.types.chat.chat_completion" in tracing.covered_modules()
    openai_v2.uninstrument()
    assert tracing.covered_modules() == ()


def test_the_metric_sinks_check_for_other_instrumentations_sees_the_same(openai_v2):
    # The OTLP sink's warning about metrics counted twice walks the same instrumentors.
    from steer_llm_sdk.observability.sinks._otel_others import active_genai_instrumentations

    assert active_genai_instrumentations() == []
    openai_v2.instrument()
    assert active_genai_instrumentations() == ["OpenTelemetry openai-v2 instrumentor"]
    openai_v2.uninstrument()
    assert active_genai_instrumentations() == []


@pytest.mark.parametrize("order", ["theirs_first", "ours_first"])
def test_beside_openai_v2_a_blocking_call_has_their_span_only(
    order, traced, collector, openai_v2, sdk
):
    _in_order(order, openai_v2, collector)
    with traced.tracer.start_as_current_span("request"):
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert only(requests_of(collector)).span_id is None
    assert traced.ours() == [] and len(traced.spans("chat ")) == 1
    # What openai-v2 does not span (the Responses API) keeps ours.
    sdk.responses.create(model="gpt-4o", input="hi")
    assert only([r for r in requests_of(collector) if r.span_id]).operation == "chat"
    assert len(traced.ours()) == 1


def test_beside_openai_v2_a_decorated_sdk_call_has_their_span_only(
    traced, collector, openai_v2, sdk
):
    openai_v2.instrument()  # and not instrument(): the decorator keeps the SDK's reply
    ask = collector.track_request("openai")(sdk.chat.completions.create)
    ask(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert only(requests_of(collector)).span_id is None
    assert traced.ours() == [] and len(traced.spans("chat ")) == 1


@pytest.mark.parametrize("order", ["ours_first", "theirs_first"])
def test_beside_openai_v2_a_stream_has_one_span(order, traced, collector, openai_v2, sdk):
    _in_order(order, openai_v2, collector)
    with traced.tracer.start_as_current_span("request"):
        stream = sdk.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        for _ in stream:
            pass
    assert only(requests_of(collector)).method == "stream"
    assert len(traced.spans("chat ")) == 1


# --------------------------------------------------------------------------- processes
def _python(code: str, timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        close_fds=False,
    )


@pytest.mark.timeout(90)
def test_spans_pending_at_exit_end_before_the_provider_shuts_down(tmp_path):
    out = tmp_path / "spans.txt"
    done = _python(
        f"""
        from steer_llm_sdk.observability import MetricsCollector, MetricsConfig
        from steer_llm_sdk.observability.sinks import InMemoryMetricsSink
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

        class Lines(SpanExporter):
            def export(self, spans):
                with open({str(out)!r}, "a") as f:
                    f.writelines(s.name + "\\n" for s in spans)
                return 0

        # Made after the package was imported: its atexit shutdown runs before our drain.
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Lines()))
        trace.set_tracer_provider(provider)
        collector = MetricsCollector(
            MetricsConfig(batch_timeout_seconds=3600), [InMemoryMetricsSink()]
        )
        collector.track_request("openai", model="at-exit")(lambda: None)()
        assert collector.stats().queued == 1  # still queued when the interpreter exits
        """
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text().splitlines() == ["chat at-exit"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("missing", ["opentelemetry", "opentelemetry.sdk"])
def test_works_without_opentelemetry(missing):
    done = _python(
        f"""
        import sys
        sys.modules[{missing!r}] = None  # import {missing} now fails
        from steer_llm_sdk.observability import MetricsCollector, MetricsConfig, tracing
        from steer_llm_sdk.observability.sinks import InMemoryMetricsSink
        sink = InMemoryMetricsSink()
        collector = MetricsCollector(MetricsConfig(), [sink])
        if {missing!r} == "opentelemetry.sdk":
            from opentelemetry import trace
            with trace.get_tracer("t").start_as_current_span("noop"):
                collector.track_request("openai")(lambda: None)()
        else:
            collector.track_request("openai")(lambda: None)()
        assert collector.flush(5)
        record, = sink.get_metrics(metric_type="request")
        assert record.span_id is None and not tracing.refresh()
        assert list(collector.stats().sinks) == ["in_memory"]
        print("ok")
        """
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_capture_stays_off_while_no_collector_makes_spans():
    done = _python(
        """
        import gc
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from steer_llm_sdk.observability import MetricsCollector, MetricsConfig, tracing
        trace.set_tracer_provider(TracerProvider(shutdown_on_exit=False))
        quiet = MetricsCollector(MetricsConfig(trace_spans=False))
        assert not tracing.STATE.active
        loud = MetricsCollector(MetricsConfig())
        assert tracing.STATE.active
        loud.shutdown()
        del loud
        gc.collect()  # its pipeline and span stage refer to each other
        assert not tracing.refresh()
        print("ok")
        """
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_package_imports_no_opentelemetry_for_tracing():
    done = _python(
        """
        import sys
        from steer_llm_sdk.observability import MetricsCollector, tracing
        from steer_llm_sdk.observability.sinks import InMemoryMetricsSink
        collector = MetricsCollector(sinks=[InMemoryMetricsSink()])
        collector.track_request("openai")(lambda: None)()
        assert collector.flush(5) and not tracing.refresh()
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
