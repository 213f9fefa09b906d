"""instrument() and @track_request on the groq, mistralai and cohere SDKs.

Every exchange of the recorded corpus made by these SDKs (``test_groq/``, ``test_mistral/``
and ``test_cohere/`` of ../shared/fixtures/recorded/pydantic-ai, see its NOTICE.md) is
replayed by the local server to the real SDK, under ``instrument()``, under the decorator
and under both: one record per call, with exactly the tokens the provider reported, read
here from the recorded wire format (an oracle independent of the library's readers). Then
each way of consuming a stream, the credentials each SDK module reads for redaction (the SDK
privates among them: these tests fail when a release removes one), and the readers of these
SDKs' stream events.

The corpus holds no Cohere stream: Cohere's streams are built from a recorded answer (its
text, reasoning and usage) in the v2 stream's event format (:func:`_cohere_stream`).
"""

import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

import pytest
import yaml
from support.consuming import FORMS, K
from support.corpus import CORPUS, SDK_WARNINGS, Exchange, corpus_required, exchanges
from support.matrix import one_interaction
from support.sdk_clients import close_clients, closing

from steer_llm_sdk.observability import MetricsConfig, instrument, track_request, uninstrument
from steer_llm_sdk.observability.instrumentation import instrumented
from steer_llm_sdk.streaming.readers import StreamReader
from steer_llm_sdk.testing import Fault, LocalLLMServer, capture_metrics

pytestmark = [*SDK_WARNINGS, pytest.mark.timeout(60)]

groq = pytest.importorskip("groq")
mistralai_client = pytest.importorskip("mistralai.client")
cohere = pytest.importorskip("cohere")

CONFIG = MetricsConfig(flush_on_exit=False, enable_cost_tracking=False)
USER = [{"role": "user", "content": "hi"}]
MODES = ("instrument", "decorator", "both")


class Sdk(NamedTuple):
    provider: str  # the GenAI provider name its records carry (and the decorator is given)
    folder: str  # its folder of the corpus
    host: str  # the host its recorded exchanges went to


SPECS: Dict[str, Sdk] = {
    "groq": Sdk("groq", "test_groq", "api.groq.com"),
    "mistralai": Sdk("mistral_ai", "test_mistral", "api.mistral.ai"),
    "cohere": Sdk("cohere", "test_cohere", "api.cohere.com"),
}
#: The API paths these SDKs call, as corpus shapes.
_SHAPES = (("/chat/completions", "chat"), ("/v2/chat", "cohere"))


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    uninstrument()
    yield
    uninstrument()


def make_client(sdk: str, url: str, key: str = "test") -> Any:
    """A client of ``sdk`` for the server at ``url``, not retrying; the caller closes it."""
    if sdk == "groq":
        return groq.Groq(base_url=url, api_key=key, max_retries=0)
    if sdk == "mistralai":
        return mistralai_client.Mistral(api_key=key, server_url=url)
    return cohere.ClientV2(api_key=key, base_url=url, max_retries=0)


@pytest.fixture
def client_of(server: LocalLLMServer) -> Iterator[Callable[[str], Any]]:
    """``client_of(sdk)``: a client of the test's server, closed after the test."""
    made: List[Any] = []

    def make(sdk: str) -> Any:
        made.append(make_client(sdk, server.url))
        return made[-1]

    try:
        yield make
    finally:
        close_clients(*made)


def call_of(sdk: str, client: Any, model: str, streamed: bool) -> Callable[[], Any]:
    """The SDK's chat call, as a thunk returning what the SDK returns."""
    if sdk == "groq":
        return lambda: client.chat.completions.create(model=model, messages=USER, stream=streamed)
    if sdk == "mistralai":
        if streamed:
            return lambda: client.chat.stream(model=model, messages=USER)
        return lambda: client.chat.complete(model=model, messages=USER)
    if streamed:
        return lambda: client.chat_stream(model=model, messages=USER)
    return lambda: client.chat(model=model, messages=USER)


def measured(sdk: str, thunk: Callable[[], Any], mode: str, model: Any, streamed: bool) -> Any:
    """``thunk`` as ``mode`` measures it: instrumented (the caller arms ``instrument()``),
    or inside ``@track_request``."""
    if mode == "instrument":
        return thunk
    return track_request(SPECS[sdk].provider, model=model, stream=streamed)(thunk)


# ---------------------------------------------------------------------- the oracle


Usage = Optional[Tuple[Any, Any, Any]]


def _openai_usage(usage: Any) -> Usage:
    if not usage:
        return None
    details = usage.get("prompt_tokens_details") or {}
    return usage.get("prompt_tokens"), usage.get("completion_tokens"), details.get("cached_tokens")


def _cohere_usage(usage: Any) -> Usage:
    """Cohere's billed counts (its ``tokens`` include the system prompt it does not bill,
    and its ``cached_tokens`` count those: see readers/cohere.py)."""
    if not usage:
        return None
    billed = usage.get("billed_units") or {}
    return int(billed["input_tokens"]), int(billed["output_tokens"]), None


def _delta_chars(delta: Dict[str, Any]) -> int:
    """Content characters of an OpenAI-shaped delta (Mistral's content lists included)."""
    content = delta.get("content")
    if isinstance(content, str) and content:
        return len(content)
    if isinstance(content, list):
        chars = sum(len(part["text"]) for part in content if part.get("type") == "text")
        for part in content:
            if part.get("type") == "thinking":
                chars += sum(len(t["text"]) for t in part["thinking"] if t.get("type") == "text")
        if chars:
            return chars
    arguments = [
        (call.get("function") or {}).get("arguments") for call in delta.get("tool_calls") or ()
    ]
    chars = sum(len(a) for a in arguments if isinstance(a, str))
    if chars:
        return chars
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    return len(reasoning) if isinstance(reasoning, str) else 0


def _cohere_event_chars(event: Dict[str, Any]) -> int:
    message = (event.get("delta") or {}).get("message") or {}
    if event["type"] in ("content-start", "content-delta"):
        content = message.get("content") or {}
        return len(content.get("text") or "") or len(content.get("thinking") or "")
    if event["type"] == "tool-plan-delta":
        return len(message.get("tool_plan") or "")
    if event["type"] in ("tool-call-start", "tool-call-delta"):
        return len(((message.get("tool_calls") or {}).get("function") or {}).get("arguments") or "")
    return 0


def expected(sdk: str, exchange: Exchange) -> Tuple[Usage, Optional[int], Optional[int]]:
    """(prompt, completion, cached) tokens or None; for a stream, its content characters
    and its events (both None for a blocking call)."""
    if not exchange.streamed:
        body = exchange.response_body or {}
        read = _cohere_usage if sdk == "cohere" else _openai_usage
        return read(body.get("usage")), None, None
    usage: Usage = None
    chars = 0
    events = exchange.events()
    for event in events:
        if sdk == "cohere":
            chars += _cohere_event_chars(event)
            if event["type"] == "message-end":
                usage = _cohere_usage(event["delta"].get("usage"))
            continue
        reported = event.get("usage") or (event.get("x_groq") or {}).get("usage")
        if reported:
            usage = _openai_usage(reported)
        for choice in event.get("choices") or ():
            chars += _delta_chars(choice.get("delta") or {})
    return usage, chars, len(events)


def recorded(sdk: str) -> List[Exchange]:
    """Every exchange of ``sdk``'s corpus folder with its provider's host, in order."""
    spec = SPECS[sdk]
    found: List[Exchange] = []
    for cassette in sorted((CORPUS / spec.folder).glob("*.yaml")):
        found.extend(e for e in exchanges(cassette, _SHAPES) if e.host == spec.host)
    return found


EXCHANGES = {sdk: recorded(sdk) for sdk in SPECS}
if corpus_required() and not all(EXCHANGES.values()):
    raise RuntimeError("the recorded corpus (../shared/fixtures/recorded) is missing")
CASSETTES = sorted(
    {(sdk, e.cassette) for sdk, found in EXCHANGES.items() for e in found},
    key=lambda item: (item[0], item[1].name),
)


def _recorded_params() -> List[Any]:
    params = []
    for sdk, cassette in CASSETTES:
        for mode in MODES:
            params.append(pytest.param(sdk, cassette, mode, id=f"{cassette.stem}-{mode}"))
    return params or [pytest.param(None, None, None, id="no-corpus")]


# ---------------------------------------------------------------------- recorded exchanges


def _check(sdk: str, exchange: Exchange, requests: List[Any], streams: List[Any]) -> None:
    assert len(requests) == 1, (exchange.name, requests)
    record = requests[0]
    assert (record.provider, record.operation, record.model) == (
        SPECS[sdk].provider,
        "chat",
        exchange.model,
    ), exchange.name
    assert record.method == ("stream" if exchange.streamed else "generate"), exchange.name
    if exchange.fails:
        assert record.success is False, exchange.name
        return
    usage, chars, events = expected(sdk, exchange)
    assert usage is not None, f"{exchange.name}: the oracle found no usage"
    assert record.success, (exchange.name, record)
    got = (record.prompt_tokens, record.completion_tokens, record.cached_tokens)
    assert got == usage, (exchange.name, got, usage)
    assert record.total_tokens == usage[0] + usage[1], exchange.name
    answered = (exchange.response_body or {}).get("model") or (exchange.events() or [{}])[0].get(
        "model"
    )
    assert record.response_model == answered, exchange.name
    if exchange.streamed:
        (streaming,) = streams
        assert (streaming.total_chunks, streaming.total_chars) == (events, chars), exchange.name
        assert streaming.status == "completed" and streaming.aggregation_method == "provider"
        assert record.time_to_first_token_ms is not None, exchange.name
    else:
        assert streams == [], exchange.name


def _run(sdk: str, exchange: Exchange, client: Any, mode: str) -> Tuple[List[Any], List[Any]]:
    """One exchange through the SDK as ``mode`` measures it: (requests, streaming records)."""
    thunk = call_of(sdk, client, exchange.model or "model", exchange.streamed)
    tracked = measured(sdk, thunk, mode, exchange.model, exchange.streamed)
    with capture_metrics(CONFIG) as sink:
        try:
            result = tracked()
            if exchange.streamed:
                for _ in result:
                    pass
        except Exception:
            if not exchange.fails:
                raise
    return sink.get_metrics(metric_type="request"), sink.get_metrics(metric_type="streaming")


@pytest.mark.parametrize(("sdk", "cassette", "mode"), _recorded_params())
def test_recorded_exchange(sdk: str, cassette: Path, mode: str, server: LocalLLMServer, client_of):
    """Each exchange of the cassette, in order: one record (measured once in ``both``),
    exactly the provider's tokens, the answering model, and for streams their events and
    content characters."""
    if sdk is None:
        pytest.skip("the recorded corpus is not here")
    client = client_of(sdk)
    server.replay(str(cassette), hosts=[SPECS[sdk].host])
    if mode != "decorator":
        instrument(sdk)
    for exchange in (e for e in EXCHANGES[sdk] if e.cassette == cassette):
        requests, streams = _run(sdk, exchange, client, mode)
        _check(sdk, exchange, requests, streams)


def test_corpus_coverage() -> None:
    """What the recorded tests cover, per SDK (exchanges, streamed, failing): a corpus that
    changes shows here."""
    if not any(EXCHANGES.values()):
        pytest.skip("the recorded corpus is not here")
    counts = {
        sdk: (len(found), sum(e.streamed for e in found), sum(e.fails for e in found))
        for sdk, found in EXCHANGES.items()
    }
    assert counts == {"groq": (20, 5, 5), "mistralai": (7, 1, 0), "cohere": (4, 0, 0)}


# ---------------------------------------------------------------------- Cohere streams


def _cohere_stream(exchange: Exchange, folder: Path, events: Optional[List[Any]] = None) -> Path:
    """A single-interaction cassette answering ``exchange``'s request with a v2 chat stream:
    ``events`` or, by default, the recorded answer's own content (reasoning and text, each
    a ``content-start``, deltas of up to 40 characters and a ``content-end``) between a
    ``message-start`` and a ``message-end`` with its finish reason and usage."""
    answer = exchange.response_body
    if events is None:
        events = [{"type": "message-start", "id": answer["id"], "delta": {"message": {}}}]
        for index, item in enumerate(answer["message"]["content"]):
            kind = item["type"]
            value = item[kind]
            start = {"message": {"content": {"type": kind, kind: ""}}}
            events.append({"type": "content-start", "index": index, "delta": start})
            for at in range(0, len(value), 40):
                piece = {"message": {"content": {kind: value[at : at + 40]}}}
                events.append({"type": "content-delta", "index": index, "delta": piece})
            events.append({"type": "content-end", "index": index})
        end = {"finish_reason": answer["finish_reason"], "usage": answer["usage"]}
        events.append({"type": "message-end", "delta": end})
    sse = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    request = {"method": "POST", "uri": exchange.url, "parsed_body": {**exchange.request_body}}
    request["parsed_body"]["stream"] = True
    response = {
        "status": {"code": 200, "message": "OK"},
        "headers": {"content-type": ["text/event-stream"]},
        "body": {"string": sse},
    }
    path = folder / f"{exchange.cassette.stem}-{exchange.index}-stream.yaml"
    path.write_text(yaml.safe_dump({"interactions": [{"request": request, "response": response}]}))
    return path


def _streamed(cassette: Path) -> Exchange:
    (exchange,) = exchanges(cassette, _SHAPES)
    assert exchange.streamed
    return exchange


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("index", range(len(EXCHANGES["cohere"]) or 1), ids=lambda i: f"cohere#{i}")
def test_cohere_streams_of_recorded_answers(index, mode, server, client_of, tmp_path):
    """Each recorded Cohere answer streamed: its reasoning and text as content, its
    billed usage, one record."""
    if not EXCHANGES["cohere"]:
        pytest.skip("the recorded corpus is not here")
    exchange = _streamed(_cohere_stream(EXCHANGES["cohere"][index], tmp_path))
    server.replay(str(exchange.cassette))
    if mode != "decorator":
        instrument("cohere")
    requests, streams = _run("cohere", exchange, client_of("cohere"), mode)
    _check("cohere", exchange, requests, streams)


def test_cohere_tool_plans_and_calls_are_content(server, client_of, tmp_path):
    """A Cohere stream planning and calling a tool: the plan and the arguments count as
    content characters, and a usage without billed units gives the processed tokens with
    their cache reads."""
    base = EXCHANGES["cohere"][0] if EXCHANGES["cohere"] else pytest.skip("no corpus")
    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": ""}}
    events = [
        {"type": "message-start", "id": "m1", "delta": {"message": {"role": "assistant"}}},
        {"type": "tool-plan-delta", "delta": {"message": {"tool_plan": "I will look it up."}}},
        {"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": call}}},
    ]
    for piece in ('{"city": ', '"Paris"}'):
        fragment = {"tool_calls": {"function": {"arguments": piece}}}
        events.append({"type": "tool-call-delta", "index": 0, "delta": {"message": fragment}})
    usage = {"tokens": {"input_tokens": 41.0, "output_tokens": 12.0}, "cached_tokens": 32.0}
    events += [
        {"type": "tool-call-end", "index": 0},
        {"type": "message-end", "delta": {"finish_reason": "TOOL_CALL", "usage": usage}},
    ]
    exchange = _streamed(_cohere_stream(base, tmp_path, events))
    server.replay(str(exchange.cassette))
    instrument("cohere")
    requests, streams = _run("cohere", exchange, client_of("cohere"), "instrument")
    (record,), (streaming,) = requests, streams
    assert (record.prompt_tokens, record.completion_tokens, record.cached_tokens) == (41, 12, 32)
    plan_and_arguments = len("I will look it up.") + len('{"city": "Paris"}')
    assert (streaming.total_chunks, streaming.total_chars) == (len(events), plan_and_arguments)
    assert record.time_to_first_token_ms is not None


# ---------------------------------------------------------------------- ways of consuming


@pytest.fixture(scope="module")
def stream_sources(tmp_path_factory: Any) -> Dict[str, Exchange]:
    """A streamed exchange per SDK, alone in a cassette: the first recorded one that
    answers with usage and content (Cohere's: a recorded answer streamed)."""
    folder = tmp_path_factory.mktemp("streams")
    found: Dict[str, Exchange] = {}
    for sdk in ("groq", "mistralai"):
        for exchange in EXCHANGES[sdk]:
            usage, chars, _ = expected(sdk, exchange) if exchange.streamed else (None, 0, 0)
            if not exchange.fails and usage and chars:
                found[sdk] = _streamed(Path(one_interaction(exchange, folder, sdk)))
                break
    for exchange in EXCHANGES["cohere"]:
        if exchange.response_body["message"]["content"]:
            found["cohere"] = _streamed(_cohere_stream(exchange, folder))
            break
    if len(found) < 3:  # only without the corpus, where the module's other tests skip too
        pytest.skip(f"the corpus has no stream for {sorted(set(SPECS) - set(found))}")
    return found


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sdk", SPECS)
def test_each_way_of_consuming_a_stream(sdk, mode, form, stream_sources, server, client_of):
    """One record per stream however it is consumed: read to its end, exactly the
    provider's tokens and every event and character; stopped early (break, close, dropped),
    cancelled with what it delivered."""
    exchange = stream_sources.get(sdk) or pytest.skip(f"the corpus has no {sdk} stream")
    if form == "with_block" and sdk == "cohere" and mode == "instrument":
        pytest.skip("ClientV2.chat_stream returns a generator, not a context manager")
    run, full = FORMS[form]
    server.replay(str(exchange.cassette))
    if mode != "decorator":
        instrument(sdk)
    thunk = call_of(sdk, client_of(sdk), exchange.model, True)
    make = measured(sdk, thunk, mode, exchange.model, True)
    with capture_metrics(CONFIG) as sink:
        got = run(make)
    (record,) = sink.get_metrics(metric_type="request")
    (streaming,) = sink.get_metrics(metric_type="streaming")
    assert record.success and record.provider == SPECS[sdk].provider
    usage, chars, events = expected(sdk, exchange)
    if full:
        assert len(got) == events
        assert (streaming.status, streaming.total_chunks, streaming.total_chars) == (
            "completed",
            events,
            chars,
        )
        assert (record.prompt_tokens, record.completion_tokens, record.cached_tokens) == usage
        assert record.time_to_first_chunk_ms is not None
    else:
        assert len(got) == K
        assert (streaming.status, streaming.total_chunks) == ("cancelled", K)
        assert record.prompt_tokens is None  # the usage comes at the end, never reached


# ---------------------------------------------------------------------- what is patched


def _blocking(sdk: str) -> Exchange:
    for exchange in EXCHANGES[sdk]:
        if not exchange.streamed and not exchange.fails:
            return exchange
    pytest.skip(f"the corpus has no {sdk} answer")


@pytest.mark.parametrize("sdk", SPECS)
def test_a_client_made_before_instrument_is_measured(sdk, server, client_of, tmp_path):
    """instrument() reaches clients that exist already: a cohere ClientV2 binds its own
    chat methods when it is made, which is why its raw client is what is patched."""
    exchange = _blocking(sdk)
    client = client_of(sdk)
    server.replay(one_interaction(exchange, tmp_path, sdk))
    instrument(sdk)
    requests, _ = _run(sdk, exchange, client, "instrument")
    _check(sdk, exchange, requests, [])


def test_instrument_patches_the_entry_points_and_uninstrument_removes_them():
    import cohere.v2.raw_client  # noqa: F401 - the modules whose entry points are patched
    import groq.resources.chat.completions  # noqa: F401
    import mistralai.client.chat  # noqa: F401

    paths = {
        "groq.resources.chat.completions.Completions.create",
        "mistralai.client.chat.Chat.complete",
        "mistralai.client.chat.Chat.stream",
        "cohere.v2.raw_client.RawV2Client.chat",
        "cohere.v2.raw_client.RawV2Client.chat_stream",
    }
    assert instrument("groq", "mistralai", "cohere") == ["groq", "mistralai", "cohere"]
    assert paths <= set(instrumented())
    uninstrument()
    assert not paths & set(instrumented())


def test_the_sdks_own_objects_come_back(server, client_of, stream_sources):
    """The caller keeps the SDKs' types: groq's Stream and mistralai's EventStream behind
    transparent proxies, cohere's HttpResponse from the raw client."""
    from groq import Stream
    from mistralai.client.utils.eventstreaming import EventStream

    instrument("groq", "mistralai", "cohere")
    for sdk, kind in (("groq", Stream), ("mistralai", EventStream)):
        server.replay(str(stream_sources[sdk].cassette))
        with capture_metrics(CONFIG):
            stream = call_of(sdk, client_of(sdk), "m", True)()
            assert isinstance(stream, kind) and stream.response.status_code == 200
            stream.close()
    server.replay(str(stream_sources["cohere"].cassette))
    raw = client_of("cohere").with_raw_response
    with capture_metrics(CONFIG) as sink, raw.chat_stream(model="m", messages=USER) as response:
        assert isinstance(response, cohere.core.http_response.HttpResponse)
        assert response.status_code == 200 and next(iter(response.data)).type
    (streaming,) = sink.get_metrics(metric_type="streaming")
    assert (streaming.status, streaming.total_chunks) == ("cancelled", 1)


# ---------------------------------------------------------------------- credentials

KEYS = {
    "groq": "gsk_Tq8Vx2Lp5Zr9Wn3Kb7Dc",
    "mistralai": "mst-Hq7Wd2Kx5Jc8Nv1Bt4",
    "cohere": "co-7Qm2Vx9Lp4Zr8Tn3",
}
PROMPT = "Plan the surprise party for Dana on the 14th; the venue door code is 4471."


def test_each_module_finds_its_clients_credentials():
    """Each module's ``secrets`` (it reads SDK privates, except mistralai's): fails when a
    release moves them. A key given as a function is not called."""
    from steer_llm_sdk.observability.instrumentation import cohere as ours_cohere
    from steer_llm_sdk.observability.instrumentation import groq as ours_groq
    from steer_llm_sdk.observability.instrumentation import mistral as ours_mistral

    asked: List[str] = []

    def key() -> str:
        asked.append("key")
        return "never-read-1234"

    made = [
        groq.Groq(
            api_key=KEYS["groq"], base_url="http://u:pw-1234@h", default_headers={"api-key": "hd-1"}
        ),
        mistralai_client.Mistral(api_key=KEYS["mistralai"], server_url="http://mu:mpw-1234@h"),
        cohere.ClientV2(api_key=KEYS["cohere"], base_url="http://cu:cpw-1234@h"),
        mistralai_client.Mistral(api_key=key, server_url="http://h"),
        cohere.ClientV2(api_key=key, base_url="http://h"),
    ]
    with closing(*made):
        found_groq = set(ours_groq.secrets(made[0].chat.completions))
        assert {KEYS["groq"], "hd-1", "u", "pw-1234"} <= found_groq
        assert {KEYS["mistralai"], "mu", "mpw-1234"} <= set(ours_mistral.secrets(made[1].chat))
        raw = made[2].with_raw_response  # what RawV2Client's methods are called on
        assert {KEYS["cohere"], "cu", "cpw-1234"} <= set(ours_cohere.secrets(raw))
        assert ours_mistral.secrets(made[3].chat) == []
        assert ours_cohere.secrets(made[4].with_raw_response) == []
    assert asked == []


def _kept(records: List[Any]) -> str:
    assert records, "nothing was recorded"
    return "\n".join(json.dumps(r.to_dict(), default=str) + repr(r) for r in records)


@pytest.mark.parametrize("echo", ["key", "message"])
@pytest.mark.parametrize("sdk", ["groq", "mistralai"])
def test_keys_and_text_stay_out_of_failed_calls_records(sdk, echo, server):
    """The local server's error quotes the client's key or the request's text: the SDK's
    exception shows it (unchanged), the records never."""
    client = make_client(sdk, server.url, KEYS[sdk])
    secret = KEYS[sdk] if echo == "key" else PROMPT
    fault = Fault(
        status=403, echo_key=echo == "key", echo_request="message" if echo != "key" else None
    )
    server.script(fault)
    instrument(sdk)
    with closing(client), capture_metrics(CONFIG) as sink, pytest.raises(Exception) as info:
        if sdk == "groq":
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": PROMPT}]
            )
        else:
            client.chat.complete(model="m", messages=[{"role": "user", "content": PROMPT}])
    shown = str(info.value) + str(getattr(info.value, "body", ""))
    assert secret in shown, "the error did not echo it: nothing was tested"
    records = sink.get_metrics()
    assert secret not in _kept(records)
    assert [r.metric_type for r in records] == ["request", "error"]


@pytest.mark.parametrize("streamed", [False, True], ids=["chat", "chat_stream"])
def test_a_cohere_error_quoting_the_key_is_redacted(streamed, server, tmp_path):
    """Cohere's structured error message is stored, its client's token redacted; a stream
    refused when it is opened is a failed call too."""
    message = f"invalid api token: {KEYS['cohere']}"
    interaction = {
        "request": {"method": "POST", "uri": "https://api.cohere.com/v2/chat"},
        "response": {"status": {"code": 401}, "parsed_body": {"id": "e1", "message": message}},
    }
    cassette = tmp_path / "unauthorized.yaml"
    cassette.write_text(yaml.safe_dump({"interactions": [interaction]}))
    server.replay(str(cassette))
    client = make_client("cohere", server.url, KEYS["cohere"])
    instrument("cohere")
    with closing(client), capture_metrics(CONFIG) as sink, pytest.raises(Exception) as info:
        if streamed:
            list(client.chat_stream(model="m", messages=USER))
        else:
            client.chat(model="m", messages=USER)
    assert KEYS["cohere"] in str(info.value)
    records = sink.get_metrics()
    assert KEYS["cohere"] not in _kept(records)
    (request,) = sink.get_metrics(metric_type="request")
    (error,) = sink.get_metrics(metric_type="error")
    assert request.success is False and request.method == ("stream" if streamed else "generate")
    assert (error.status_code, error.message) == (401, "invalid api token: [REDACTED]")


def test_clients_left_open_are_found():
    """The module-end check of conftest.py finds a client of each of these SDKs left open,
    and none once closed."""
    from support.sdk_clients import open_clients

    made = [make_client(sdk, "http://127.0.0.1:9") for sdk in SPECS]
    try:
        found = open_clients()
        assert all(any(client is other for other in found) for client in made)
    finally:
        close_clients(*made)
    found = open_clients()
    assert not any(client is other for client in made for other in found)
    del found


# ---------------------------------------------------------------------- readers


def _mistral_events(chunks: List[Dict[str, Any]]) -> List[Any]:
    from mistralai.client.models import CompletionEvent

    return [CompletionEvent.model_validate({"data": chunk}) for chunk in chunks]


def test_the_mistral_short_path_reads_as_the_full_reader(stream_sources):
    """Every recorded Mistral event read by the short path and by the full reader: the same
    content (text or Content) and the same usage, model and finish reason."""
    from steer_llm_sdk.streaming.readers.mistral import _read_mistral_chunk, _read_mistral_event

    events = _mistral_events(stream_sources["mistralai"].events())
    short, full = StreamReader(), StreamReader()
    quick = [_read_mistral_event(short, event) for event in events]
    whole = [_read_mistral_chunk(full, event.data) for event in events]
    assert [(type(t), t) for t in quick] == [(type(t), t) for t in whole]
    assert any(type(t) is str and t for t in quick) and any(type(t) is not str for t in quick)
    state = ("model", "finish_reason", "extra_chars", "errors")
    assert [getattr(short, n) for n in state] == [getattr(full, n) for n in state]
    assert short.token_usage() == full.token_usage() is not None


def test_mistral_chunks_of_every_shape():
    """Text and reasoning in one content list, a second choice, tool-call arguments as text
    and as a JSON object, and fields the chunk leaves out (the SDK's UNSET)."""
    base = {"id": "c", "model": "magistral-small"}
    thinking = {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}
    parts = {"content": [thinking, {"type": "text", "text": "Yes."}]}
    calls = [
        {"function": {"name": "f", "arguments": '{"a":'}},
        {"function": {"name": "g", "arguments": {"b": 1}}},
    ]
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": parts, "finish_reason": None}]},
        {**base, "choices": [{"index": 1, "delta": {"content": "No."}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": None}]},
        {
            **base,
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16},
        },
    ]
    reader = StreamReader()
    got = [reader.observe(event) for event in _mistral_events(chunks)]
    assert got == ["", "Yes.", "No.", '{"a":{"b":1}', ""]
    assert [type(t) is str for t in got[1:4]] == [True, False, False]
    assert reader.extra_chars == len("hmm") and reader.errors == 0
    assert (reader.model, reader.finish_reason) == ("magistral-small", "tool_calls")
    assert tuple(reader.token_usage() or ())[:3] == (7, 9, 16)


def test_cohere_usage_prefers_the_billed_counts():
    from steer_llm_sdk.streaming.usage import cohere_usage

    both = {
        "billed_units": {"input_tokens": 2406.0, "output_tokens": 2.0},
        "tokens": {"input_tokens": 2935.0, "output_tokens": 4.0},
        "cached_tokens": 2928.0,
    }
    assert tuple(cohere_usage(both) or ()) == (2406, 2, 2408, None, None, None)
    processed = {"tokens": both["tokens"], "cached_tokens": 2928.0}
    assert tuple(cohere_usage(processed) or ()) == (2935, 4, 2939, 2928, None, None)
    assert cohere_usage({"billed_units": {"search_units": 1.0}}) is None
    assert cohere_usage(None) is None
