"""instrument(): the official SDKs measured without touching call sites, on every recorded
exchange of the corpus whose API it covers, and the same exchanges through @track_request.

For each cassette the local server replays the recorded responses (matched by path); the
SDK is called for each covered interaction; the RequestMetrics must carry exactly the tokens
the provider reported, the StreamingMetrics the recorded content's characters, and a time
to first token when the stream had content. Vertex AI exchanges are made by a google-genai
client of Vertex AI for the recorded project and location, with a stand-in credential.
"""

import re
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from support.corpus import SDK_WARNINGS, Exchange, cassettes, corpus_required, exchanges
from support.peers import openai_v2_instrumentor
from support.sdk_clients import (
    VERTEX_TOKEN,
    close_clients,
    closing,
    local_sdk_clients,
    official_sdks,
    vertex_client,
)

from steer_llm_sdk.observability import (
    MetricsConfig,
    RequestMetrics,
    instrument,
    track_request,
    uninstrument,
)
from steer_llm_sdk.observability.instrumentation import instrumented
from steer_llm_sdk.testing import capture_metrics

pytestmark = SDK_WARNINGS

openai, anthropic, genai, boto3 = official_sdks()

_FAMILIES = {
    "chat": "openai",
    "completions": "openai",
    "embeddings": "openai",
    "responses": "openai",
    "messages": "anthropic",
    "gemini": "gemini",
    "converse": "bedrock",
}
#: A Vertex AI model's path: API version, project, location.
_VERTEX_PATH = re.compile(
    r"/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/publishers/google/models/[^/]+$"
)


def _vertex(exchange: Exchange) -> Optional[Tuple[str, str, str]]:
    """(API version, project, location) of an exchange with Vertex AI, read from its
    recorded path; None for an exchange with another API."""
    if not exchange.host.endswith("aiplatform.googleapis.com"):
        return None
    match = _VERTEX_PATH.match(exchange.path.split(":", 1)[0])
    assert match, (exchange.name, exchange.path)  # a Vertex AI path this test cannot replay
    return match.group(1), match.group(2), match.group(3)


@pytest.fixture(scope="module")
def clients(module_server):
    """The SDK clients of :func:`local_sdk_clients`, and under ``"vertex"`` the Vertex AI
    clients made so far (by :func:`_vertex_clients`), closed with them."""
    made = local_sdk_clients(module_server.url)
    vertex: Dict[Tuple[str, str, str], Any] = {}
    try:
        yield {**made, "vertex": vertex}
    finally:
        close_clients(*made.values(), *vertex.values())


def _vertex_clients(exchanges: List[Exchange], clients: Dict[str, Any], url: str) -> None:
    """Make the Vertex AI client of each (API version, project, location) of ``exchanges``
    not made yet: one per recorded project, kept for the module, as making one costs about
    70 ms of CPU (its TLS contexts load the CA certificates)."""
    made = clients["vertex"]
    for version, project, location in filter(None, map(_vertex, exchanges)):
        if (version, project, location) not in made:
            made[version, project, location] = vertex_client(url, project, location, version)


def _call(exchange: Exchange, clients: Dict[str, Any]) -> Tuple[Any, bool]:
    """Make the SDK call for ``exchange``: (a thunk returning the result, streamed?)."""
    model = exchange.model or "model"
    user = [{"role": "user", "content": "hi"}]
    shape, streamed = exchange.shape, exchange.streamed
    if shape == "chat":
        return lambda: clients["openai"].chat.completions.create(
            model=model, messages=user, stream=streamed
        ), streamed
    if shape == "completions":
        return lambda: clients["openai"].completions.create(
            model=model, prompt="hi", stream=streamed
        ), streamed
    if shape == "embeddings":
        return lambda: clients["openai"].embeddings.create(model=model, input="hi"), False
    if shape == "responses":
        return lambda: clients["openai"].responses.create(
            model=model, input="hi", stream=streamed
        ), streamed
    if shape == "messages":
        return lambda: clients["anthropic"].messages.create(
            model=model, max_tokens=16, messages=user, stream=streamed
        ), streamed
    if shape == "gemini":
        vertex = _vertex(exchange)
        models = (clients["vertex"][vertex] if vertex else clients["gemini"]).models
        if streamed:
            return lambda: models.generate_content_stream(model=model, contents="hi"), True
        return lambda: models.generate_content(model=model, contents="hi"), False
    bedrock = clients["bedrock"]
    messages = [{"role": "user", "content": [{"text": "hi"}]}]
    if streamed:
        return lambda: bedrock.converse_stream(modelId=model, messages=messages), True
    return lambda: bedrock.converse(modelId=model, messages=messages), False


def _consume(result: Any, streamed: bool) -> None:
    if not streamed:
        return
    if isinstance(result, dict):  # Bedrock: the events are under "stream"
        result = result["stream"]
    for _ in result:
        pass


def _run(exchange: Exchange, clients: Dict[str, Any], mode: str) -> Tuple[Any, Any]:
    """One exchange through the SDK: (RequestMetrics, StreamingMetrics or None)."""
    thunk, streamed = _call(exchange, clients)
    with capture_metrics(MetricsConfig(flush_on_exit=False, enable_cost_tracking=False)) as sink:
        try:
            if mode == "instrument":
                _consume(thunk(), streamed)
            else:  # the same call inside @track_request, not instrumented
                tracked = _decorated(thunk, exchange, streamed)
                _consume(tracked(), streamed)
        except Exception:
            if not exchange.fails:
                raise
    requests = sink.get_metrics(metric_type="request")
    streams = sink.get_metrics(metric_type="streaming")
    assert len(requests) == 1, (exchange.name, requests)
    return requests[0], (streams[0] if streams else None)


def _decorated(thunk: Callable[[], Any], exchange: Exchange, streamed: bool) -> Any:
    family = "gcp.vertex_ai" if _vertex(exchange) else _FAMILIES[exchange.shape]
    if exchange.shape == "converse" and streamed:

        @track_request(family, model=exchange.model, stream=True)
        def events() -> Any:
            return iter(thunk()["stream"])

        return lambda: events()
    return track_request(family, model=exchange.model, stream=streamed)(thunk)


def _check(exchange: Exchange, record: RequestMetrics, streaming: Any) -> None:
    if exchange.fails:
        assert record.success is False, exchange.name
        return
    usage, chars = exchange.expected()
    assert record.success, (exchange.name, record)
    got = (record.prompt_tokens, record.completion_tokens, record.cached_tokens)
    assert got == (usage or (None, None, None)), (exchange.name, got, usage)
    if chars is not None and exchange.streamed:
        assert streaming is not None and streaming.total_chars == chars, (
            exchange.name,
            streaming,
            chars,
        )
        if chars:
            assert record.time_to_first_token_ms is not None, exchange.name


def _check_vertex(exchange: Exchange, record: RequestMetrics, mode: str, server: Any) -> None:
    """A Vertex AI exchange went to the recorded Vertex AI path with the stand-in
    credential, and instrument() names the provider Vertex AI (from the client, whatever
    its base URL)."""
    sent = server.requests[-1]
    authorization = {k.lower(): v for k, v in sent.headers.items()}.get("authorization")
    assert (sent.path.split("?", 1)[0], authorization) == (
        exchange.path,
        f"Bearer {VERTEX_TOKEN}",
    ), exchange.name
    if mode == "instrument":
        assert record.provider == "gcp.vertex_ai", (exchange.name, record.provider)


ALL = cassettes()
if not ALL and corpus_required():
    raise RuntimeError("the recorded corpus (../shared/fixtures/recorded) is missing")


@pytest.mark.parametrize("mode", ["instrument", "decorator"])
@pytest.mark.parametrize("cassette", ALL, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recorded_exchange(cassette, mode, module_server, clients):
    covered = list(exchanges(cassette))
    if not covered:
        pytest.skip("no interaction of an API shape instrument() covers")
    _vertex_clients(covered, clients, module_server.url)
    if mode == "instrument":
        instrument()
    try:
        module_server.replay(str(cassette))
        for exchange in covered:
            record, streaming = _run(exchange, clients, mode)
            _check(exchange, record, streaming)
            if _vertex(exchange):
                _check_vertex(exchange, record, mode, module_server)
    finally:
        uninstrument()
        module_server._replays.clear()


# ---------------------------------------------------------------------- behaviour


@pytest.fixture
def clean():
    uninstrument()
    yield
    uninstrument()


def test_instrument_is_idempotent_and_reversible(clean, clients):
    create = openai.resources.chat.completions.Completions.__dict__["create"]
    # Every installed SDK of the registry (groq, mistralai, cohere need Python >= 3.10).
    assert {"openai", "anthropic", "google_genai", "bedrock"} <= set(instrument())
    first = instrumented()
    assert instrument("openai") == ["openai"] and instrumented() == first
    assert "openai.resources.chat.completions.completions.Completions.create" in first
    uninstrument()
    assert instrumented() == []
    assert openai.resources.chat.completions.Completions.__dict__["create"] is create
    with pytest.raises(ValueError, match="unknown SDK"):
        instrument("no_such_sdk")


def test_streams_keep_the_sdks_types_and_attributes(clean, module_server, clients):
    instrument("openai")
    module_server.replay(str(_first("test_openai", streamed=True)))
    with capture_metrics(MetricsConfig(flush_on_exit=False)) as sink:
        stream = clients["openai"].chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert isinstance(stream, openai.Stream)
        assert stream.response.status_code == 200
        with stream:
            next(iter(stream))  # one chunk, then leave: recorded as cancelled
    module_server._replays.clear()
    (streaming,) = sink.get_metrics(metric_type="streaming")
    assert streaming.status == "cancelled" and streaming.total_chunks == 1


def test_a_call_inside_track_request_is_measured_once(clean, module_server, clients):
    instrument("openai")
    module_server.replay(str(_first("test_openai", streamed=False)))
    with capture_metrics(MetricsConfig(flush_on_exit=False)) as sink:

        @track_request("openai", model="gpt-4o")
        def ask() -> Any:
            return clients["openai"].chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )

        ask()
    module_server._replays.clear()
    assert len(sink.get_metrics(metric_type="request")) == 1


def test_records_name_provider_operation_and_server(clean, module_server, clients):
    instrument("openai")
    module_server.replay(str(_first("test_openai", streamed=False)))
    with capture_metrics(MetricsConfig(flush_on_exit=False)) as sink:
        clients["openai"].chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    module_server._replays.clear()
    (record,) = sink.get_metrics(metric_type="request")
    assert (record.provider, record.operation, record.method) == ("openai", "chat", "generate")
    assert record.attributes["server.address"] == "127.0.0.1"
    assert record.response_model is not None


def test_a_client_whose_base_url_changes_is_attributed_to_the_new_one(clean, module_server):
    # The provider and server attributes of a base URL are remembered: the memory is keyed
    # by the URL, so a client pointed elsewhere is attributed to where it now sends.
    cassette = str(_first("test_openai", streamed=False))  # may skip: before the client
    client = openai.OpenAI(base_url=module_server.url + "/v1", api_key="test", max_retries=0)
    instrument("openai")
    with closing(client), capture_metrics(MetricsConfig(flush_on_exit=False)) as sink:
        for base in (
            module_server.url,
            module_server.url.replace("127.0.0.1", "localhost"),
            module_server.url,
        ):
            client.base_url = base + "/v1"
            module_server.replay(cassette)
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
    module_server._replays.clear()
    records = sink.get_metrics(metric_type="request")
    assert [r.attributes["server.address"] for r in records] == [
        "127.0.0.1",
        "localhost",
        "127.0.0.1",
    ]
    assert {r.attributes["server.port"] for r in records} == {module_server.port}


def test_endpoints_are_remembered_within_a_bound():
    from steer_llm_sdk.observability.instrumentation import _measure

    _measure._ENDPOINTS.clear()
    for i in range(_measure._ENDPOINTS_MAX + 50):
        provider, attributes = _measure.endpoint(f"https://h{i}.openai.azure.com:{i + 1}/", "x")
        assert provider == "azure.ai.openai"
        assert attributes == {"server.address": f"h{i}.openai.azure.com", "server.port": i + 1}
    assert len(_measure._ENDPOINTS) == _measure._ENDPOINTS_MAX
    assert _measure.endpoint("http://api.groq.com/openai/v1", "openai") == (
        "groq",
        {"server.address": "api.groq.com", "server.port": 80},
    )


def test_async_clients_are_untouched(clean):
    create = openai.resources.chat.completions.AsyncCompletions.__dict__["create"]
    instrument()
    assert openai.resources.chat.completions.AsyncCompletions.__dict__["create"] is create


def _first(folder: str, streamed: bool) -> Any:
    for cassette in ALL:
        if cassette.parent.name != folder:
            continue
        covered = list(exchanges(cassette))
        if (
            len(covered) == 1
            and covered[0].shape == "chat"
            and covered[0].streamed == streamed
            and covered[0].status == 200
        ):
            return cassette
    pytest.skip(f"no single {folder} chat cassette (streamed={streamed})")


@pytest.mark.parametrize("order", ["theirs_first", "ours_first"])
def test_coexists_with_the_opentelemetry_openai_instrumentor(clean, order, module_server, clients):
    """OpenTelemetry's openai-v2 instrumentor and ours, in either order: each records the
    call once; uninstrument() removes only ours and leaves theirs working."""
    OpenAIInstrumentor = openai_v2_instrumentor().OpenAIInstrumentor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    theirs = OpenAIInstrumentor()
    owner = openai.resources.chat.completions.Completions
    original = owner.__dict__["create"]

    def otel_calls() -> int:
        data = reader.get_metrics_data()
        total = 0
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == "gen_ai.client.operation.duration":
                        total += sum(p.count for p in metric.data.data_points)
        return total

    def call() -> None:
        module_server.replay(str(_first("test_openai", streamed=False)))
        clients["openai"].chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )

    try:
        if order == "theirs_first":
            theirs.instrument(meter_provider=provider)
            instrument("openai")
        else:
            instrument("openai")
            theirs.instrument(meter_provider=provider)
        with capture_metrics(MetricsConfig(flush_on_exit=False)) as sink:
            call()
        assert len(sink.get_metrics(metric_type="request")) == 1
        assert otel_calls() == 1
        uninstrument()
        with capture_metrics(MetricsConfig(flush_on_exit=False)) as sink:
            call()
        assert sink.get_metrics(metric_type="request") == []  # ours is gone or switched off
        assert otel_calls() == 2  # theirs still measures
        instrument("openai")  # and ours can come back
        with capture_metrics(MetricsConfig(flush_on_exit=False)) as sink:
            call()
        assert len(sink.get_metrics(metric_type="request")) == 1
    finally:
        theirs.uninstrument()
        uninstrument()
        # Their unwrap() takes off the outermost wrapper, which may be ours: put the SDK's
        # own method back so that later tests see neither.
        owner.create = original
        module_server._replays.clear()
        provider.shutdown()
