"""instrument() and @track_request on LiteLLM: ``litellm.completion`` (blocking and
streamed) and ``litellm.embedding``, real LiteLLM calls to a LocalLLMServer given as its
``api_base``.

The server replays recorded provider traffic (the OpenAI and Anthropic exchanges of
../shared/fixtures/recorded, see its NOTICE.md) or answers written here with chosen usage;
the tokens expected are read from those bytes, independently of the library's readers.
LiteLLM reaches OpenAI and Anthropic with its own HTTP client, and Azure OpenAI (and
OpenAI's embeddings, given an ``encoding_format``) through the official openai SDK: with
that SDK instrumented too, its call joins LiteLLM's, and each user call is still one
record. Every destination LiteLLM connects to or resolves while this module runs, its
import included, is checked to be the loopback address.
"""

import gc
import json
import os
import socket
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

import pytest
import yaml
from support import spawn
from support.consuming import FORMS, K
from support.corpus import SDK_WARNINGS
from support.paths import ROOT, SHARED_RECORDED
from support.sdk_clients import close_clients, open_clients

from steer_llm_sdk.observability import MetricsConfig, instrument, track_request, uninstrument
from steer_llm_sdk.observability.instrumentation import instrumented
from steer_llm_sdk.testing import Fault, LocalLLMServer, capture_metrics

# LiteLLM fetches its model price map at import unless told to use its bundled copy, and
# fetches other catalogues unless offline: neither may leave this machine.
LITELLM_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true"}
os.environ.update(LITELLM_ENV)

#: (audit event, host) of every connection and name lookup made in this process while
#: RECORDING is set: during LiteLLM's import and this module's tests.
DESTINATIONS: List[Tuple[str, str]] = []
RECORDING = threading.Event()


def _audit(event: str, args: Any) -> None:
    if not RECORDING.is_set():
        return
    if event == "socket.connect" and isinstance(args[1], tuple):
        DESTINATIONS.append((event, str(args[1][0])))
    elif event == "socket.getaddrinfo":
        DESTINATIONS.append((event, str(args[0])))


sys.addaudithook(_audit)  # for the life of the process (it cannot be removed): gated
RECORDING.set()
try:
    litellm = pytest.importorskip("litellm")
finally:
    RECORDING.clear()
#: Where LiteLLM's import went.
AT_IMPORT = list(DESTINATIONS)
LOOPBACK = ("127.0.0.1", "localhost", "::1")

pytestmark = [
    *SDK_WARNINGS,
    # LiteLLM's own types, built when first used: its warnings are not ours to fail on.
    pytest.mark.filterwarnings("ignore:.*using the `ReadOnly` qualifier:UserWarning"),
    pytest.mark.timeout(60),
]

CONFIG = MetricsConfig(flush_on_exit=False, enable_cost_tracking=False)
RECORDED = SHARED_RECORDED
KEY = "sk-litellm-test-0123456789abcdef"
API_VERSION = "2024-10-21"


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    uninstrument()
    before = len(DESTINATIONS)
    RECORDING.set()
    try:
        yield
    finally:
        RECORDING.clear()
    uninstrument()
    elsewhere = [d for d in DESTINATIONS[before:] if d[1] not in LOOPBACK]
    assert elsewhere == [], f"connections outside the loopback: {elsewhere}"


@pytest.fixture(scope="module", autouse=True)
def litellm_clients() -> Iterator[None]:
    """LiteLLM keeps the openai SDK clients it makes in a cache of its own: closed when
    the module ends (tests/conftest.py fails a module that leaves one open)."""
    before = {id(loop) for loop in _event_loops()}
    yield
    cached = list(litellm.in_memory_llm_clients_cache.cache_dict.values())
    opened = [client for client in open_clients() if any(client is c for c in cached)]
    litellm.in_memory_llm_clients_cache.flush_cache()
    close_clients(*opened)
    # LiteLLM also leaves event loops of its own open (and their self-pipe sockets): close
    # those made while this module ran, here, instead of leaving them to be found unclosed
    # by whichever later test happens to collect garbage.
    for loop in _event_loops():
        if id(loop) not in before and not loop.is_running() and not loop.is_closed():
            loop.close()


def _event_loops() -> List[Any]:
    import asyncio

    # By type(): isinstance() would ask proxies for __class__, and LiteLLM's lazy module
    # attributes build what they stand for when asked.
    loop_type = asyncio.AbstractEventLoop
    return [obj for obj in gc.get_objects() if issubclass(type(obj), loop_type)]


# ---------------------------------------------------------------------- answers


def _sse(events: List[Dict[str, Any]], named: bool) -> str:
    if named:
        return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def cassette(folder: Path, name: str, uri: str, body: str, content_type: str) -> Path:
    """A one-interaction cassette answering a POST to ``uri`` with ``body``."""
    response = {
        "status": {"code": 200, "message": "OK"},
        "headers": {"content-type": [content_type]},
        "body": {"string": body},
    }
    interaction = {"request": {"method": "POST", "uri": uri}, "response": response}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"interactions": [interaction]}))
    return path


#: Anthropic usage written into the answers made here: cache reads and writes included,
#: which the record counts as prompt tokens (input 25 + read 4 + written 6).
ANTHROPIC_USAGE = {
    "input_tokens": 25,
    "output_tokens": 9,
    "cache_read_input_tokens": 4,
    "cache_creation_input_tokens": 6,
}
ANTHROPIC_TEXT = "Hello there, how are you today?"


def anthropic_answer(folder: Path) -> Path:
    body = {
        "id": "msg_local1",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-haiku-20241022",
        "content": [{"type": "text", "text": ANTHROPIC_TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": ANTHROPIC_USAGE,
    }
    uri = "https://api.anthropic.com/v1/messages"
    return cassette(folder, "anthropic-answer", uri, json.dumps(body), "application/json")


EMBEDDING_USAGE = {"prompt_tokens": 7, "total_tokens": 7}


def embedding_answer(folder: Path) -> Path:
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.125]}],
        "model": "text-embedding-3-small",
        "usage": EMBEDDING_USAGE,
    }
    uri = "https://api.openai.com/v1/embeddings"
    return cassette(folder, "embedding", uri, json.dumps(body), "application/json")


class Recorded(NamedTuple):
    """What a recorded stream or answer says: (prompt, completion, cached) tokens, the
    answering model, the text."""

    usage: Tuple[Optional[int], Optional[int], Optional[int]]
    model: str
    text: str


def _recorded_body(path: Path) -> str:
    (interaction,) = yaml.safe_load(path.read_text())["interactions"]
    return str(interaction["response"]["body"]["string"])


def openai_recorded(path: Path) -> Recorded:
    """An OpenAI chat answer or stream (with its usage chunk), read from its bytes."""
    body = _recorded_body(path)
    if not body.lstrip().startswith("data:"):
        answer = json.loads(body)
        usage = answer["usage"]
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
        text = answer["choices"][0]["message"]["content"]
        return Recorded(
            (usage["prompt_tokens"], usage["completion_tokens"], cached), answer["model"], text
        )
    chunks = [
        json.loads(line[len("data: ") :])
        for line in body.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    (usage,) = [c["usage"] for c in chunks if c.get("usage")]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    text = "".join((ch["delta"].get("content") or "") for c in chunks for ch in c["choices"])
    counts = (usage["prompt_tokens"], usage["completion_tokens"], cached)
    return Recorded(counts, chunks[0]["model"], text)


def anthropic_recorded(path: Path) -> Recorded:
    """An Anthropic messages stream: the input (with the cache's reads and writes) from
    ``message_start``, the output from the last ``message_delta`` (a running total)."""
    events = [
        json.loads(line[len("data: ") :])
        for line in _recorded_body(path).splitlines()
        if line.startswith("data: ")
    ]
    start = events[0]["message"]
    read = start["usage"].get("cache_read_input_tokens") or 0
    written = start["usage"].get("cache_creation_input_tokens") or 0
    output = [e["usage"]["output_tokens"] for e in events if e["type"] == "message_delta"][-1]
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    return Recorded(
        (start["usage"]["input_tokens"] + read + written, output, read), start["model"], text
    )


OPENAI_ANSWER = RECORDED / "openai_chat_nonstream.yaml"
OPENAI_STREAM = RECORDED / "openai_chat_stream_include_usage.yaml"
ANTHROPIC_STREAM = RECORDED / "anthropic_messages_stream.yaml"
OPENAI_404 = RECORDED / "openai_chat_404_unknown_model.yaml"
if not all(p.exists() for p in (OPENAI_ANSWER, OPENAI_STREAM, ANTHROPIC_STREAM, OPENAI_404)):
    pytest.skip("the recorded corpus is not beside the repository", allow_module_level=True)


# ---------------------------------------------------------------------- entries


class Entry(NamedTuple):
    """One way LiteLLM is reached: the provider its records name, the model named, the
    keyword arguments pointing it at the server, and what it replays."""

    provider: str
    model: str  # as the caller names it
    sent: str  # as LiteLLM sends it (and the record names it)
    options: Callable[[LocalLLMServer], Dict[str, Any]]
    stream: Path
    oracle: Callable[[Path], Recorded]


ENTRIES: Dict[str, Entry] = {
    "openai": Entry(
        "openai",
        "openai/gpt-4",
        "gpt-4",
        lambda s: {"api_base": s.openai_base_url, "api_key": KEY, "max_retries": 0},
        OPENAI_STREAM,
        openai_recorded,
    ),
    "anthropic": Entry(
        "anthropic",
        "anthropic/claude-3-5-haiku-20241022",
        "claude-3-5-haiku-20241022",
        lambda s: {"api_base": s.url, "api_key": KEY},
        ANTHROPIC_STREAM,
        anthropic_recorded,
    ),
    # Through the official openai SDK's AzureOpenAI client.
    "azure": Entry(
        "azure.ai.openai",
        "azure/my-deployment",
        "my-deployment",
        lambda s: {"api_base": s.url, "api_key": KEY, "api_version": API_VERSION, "max_retries": 0},
        OPENAI_STREAM,
        openai_recorded,
    ),
}
USER = [{"role": "user", "content": "Say this is a test"}]
USAGE_ASKED = {"stream_options": {"include_usage": True}}

#: instrument("litellm") alone; with the openai SDK instrumented too (LiteLLM's calls
#: through it join); the decorator alone; the decorator around instrument().
MODES = ("litellm", "with_openai", "decorator", "both")


def arm(mode: str) -> None:
    if mode in ("litellm", "both"):
        instrument("litellm")
    elif mode == "with_openai":
        instrument("litellm", "openai")


def measured(
    mode: str, entry: Entry, thunk: Callable[[], Any], streamed: bool
) -> Callable[[], Any]:
    """``thunk`` as ``mode`` measures it (:func:`arm` has armed instrument())."""
    if mode in ("decorator", "both"):
        return track_request(entry.provider, model=entry.sent, stream=streamed)(thunk)
    return thunk


def completion(entry: Entry, server: LocalLLMServer, **more: Any) -> Callable[[], Any]:
    return lambda: litellm.completion(
        model=entry.model, messages=USER, **entry.options(server), **more
    )


def records(sink: Any) -> Tuple[List[Any], List[Any], List[Any]]:
    return (
        sink.get_metrics(metric_type="request"),
        sink.get_metrics(metric_type="streaming"),
        sink.get_metrics(metric_type="error"),
    )


def tokens(record: Any) -> Tuple[Any, Any, Any]:
    return record.prompt_tokens, record.completion_tokens, record.cached_tokens


# ---------------------------------------------------------------------- blocking calls


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("entry", ["openai", "azure"])
def test_a_recorded_answer_is_one_record_with_its_tokens(entry, mode, server):
    """OpenAI's recorded answer through LiteLLM: one record, the
    provider LiteLLM routed to, the model sent, the answering model and exactly the
    recorded usage, measured once however many layers measure it."""
    spec = ENTRIES[entry]
    server.replay(str(OPENAI_ANSWER))
    arm(mode)
    with capture_metrics(CONFIG) as sink:
        answer = measured(mode, spec, completion(spec, server), False)()
    (record,), streams, errors = records(sink)
    expected = openai_recorded(OPENAI_ANSWER)
    assert answer.choices[0].message.content == expected.text
    assert (record.provider, record.model, record.operation, record.method) == (
        spec.provider,
        spec.sent,
        "chat",
        "generate",
    )
    assert record.success and streams == [] and errors == []
    assert tokens(record) == expected.usage
    assert record.response_model == expected.model
    if mode not in ("decorator", "both"):  # the decorator's record names no server
        assert (record.attributes["server.address"], record.attributes["server.port"]) == (
            "127.0.0.1",
            server.port,
        )


@pytest.mark.parametrize("mode", MODES)
def test_an_anthropic_answer_counts_the_cache_as_input(mode, server, tmp_path):
    """An Anthropic answer reporting cache reads and writes: the prompt tokens include
    both, the cached tokens are the reads."""
    spec = ENTRIES["anthropic"]
    server.replay(str(anthropic_answer(tmp_path)))
    arm(mode)
    with capture_metrics(CONFIG) as sink:
        answer = measured(mode, spec, completion(spec, server), False)()
    (record,), _, _ = records(sink)
    assert answer.choices[0].message.content == ANTHROPIC_TEXT
    assert (record.provider, record.model, record.method) == ("anthropic", spec.sent, "generate")
    assert tokens(record) == (25 + 4 + 6, 9, 4)


def test_an_anthropic_answer_keeps_its_cache_writes(server, tmp_path):
    spec = ENTRIES["anthropic"]
    server.replay(str(anthropic_answer(tmp_path)))
    instrument("litellm")
    with capture_metrics(CONFIG) as sink:
        completion(spec, server)()
    (record,), _, _ = records(sink)
    assert record.cache_creation_tokens == 6


def test_the_model_may_be_given_positionally_and_routed_without_a_prefix(server):
    """``completion("gpt-4", messages)``: LiteLLM routes the bare name to OpenAI."""
    server.replay(str(OPENAI_ANSWER))
    instrument("litellm")
    with capture_metrics(CONFIG) as sink:
        litellm.completion("gpt-4", USER, api_base=server.openai_base_url, api_key=KEY)
    (record,), _, _ = records(sink)
    assert (record.provider, record.model) == ("openai", "gpt-4")
    assert tokens(record) == openai_recorded(OPENAI_ANSWER).usage


# ---------------------------------------------------------------------- streams


def _content(chunks: List[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _stream_params() -> List[Any]:
    return [
        pytest.param(entry, mode, form, id=f"{entry}-{mode}-{form}")
        for entry in ENTRIES
        for mode in MODES
        for form in FORMS
    ]


@pytest.mark.parametrize(("entry", "mode", "form"), _stream_params())
def test_each_way_of_consuming_a_stream(entry, mode, form, server):
    """One record per stream however it is consumed: read to its end, the recorded usage
    (LiteLLM hands it out when asked with ``include_usage``), every chunk LiteLLM gave and
    its characters; stopped early (break, close, dropped), cancelled with what it
    delivered."""
    spec = ENTRIES[entry]
    run, full = FORMS[form]
    server.replay(str(spec.stream))
    arm(mode)
    make = measured(mode, spec, completion(spec, server, stream=True, **USAGE_ASKED), True)
    with capture_metrics(CONFIG) as sink:
        got = run(make)
    (record,), (streaming,), errors = records(sink)
    assert (record.provider, record.model, record.method, record.success) == (
        spec.provider,
        spec.sent,
        "stream",
        True,
    )
    assert errors == []
    expected = spec.oracle(spec.stream)
    if full:
        assert _content(got) == expected.text
        assert (streaming.status, streaming.total_chunks, streaming.total_chars) == (
            "completed",
            len(got),
            len(expected.text),
        )
        assert tokens(record) == expected.usage
        assert record.time_to_first_token_ms is not None
    else:
        assert len(got) == K
        assert (streaming.status, streaming.total_chunks) == ("cancelled", K)
        assert record.prompt_tokens is None  # the usage comes at the end, never reached


def test_a_stream_not_asked_for_its_usage_is_one_record_without_tokens(server):
    """Without ``include_usage`` LiteLLM hands out no usage (though Anthropic sent it):
    the stream is still one complete record, its tokens unknown rather than guessed."""
    spec = ENTRIES["anthropic"]
    server.replay(str(spec.stream))
    instrument("litellm")
    with capture_metrics(CONFIG) as sink:
        got = list(completion(spec, server, stream=True)())
    (record,), (streaming,), _ = records(sink)
    assert _content(got) == anthropic_recorded(spec.stream).text
    assert record.success and streaming.status == "completed"
    assert tokens(record) == (None, None, None)


# ---------------------------------------------------------------------- embeddings


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("through_sdk", [False, True], ids=["litellm-http", "openai-sdk"])
def test_an_embedding_is_one_record_with_its_tokens(through_sdk, mode, server, tmp_path):
    """``litellm.embedding``: one ``embeddings`` record with the answer's usage. Given an
    ``encoding_format``, LiteLLM calls the openai SDK's ``embeddings.create``, which joins
    its call when that SDK is instrumented too."""
    spec = ENTRIES["openai"]
    server.replay(str(embedding_answer(tmp_path)))
    arm(mode)
    more = {"encoding_format": "float"} if through_sdk else {}

    def embed() -> Any:
        return litellm.embedding(
            model="openai/text-embedding-3-small",
            input=["Say this is a test"],
            **spec.options(server),
            **more,
        )

    with capture_metrics(CONFIG) as sink:
        if mode in ("decorator", "both"):
            answer = track_request("openai", model="text-embedding-3-small")(embed)()
        else:
            answer = embed()
    (record,), streams, _ = records(sink)
    assert answer.data[0]["embedding"] == [0.25, -0.5, 0.125]
    assert (record.provider, record.model, record.method) == (
        "openai",
        "text-embedding-3-small",
        "generate",
    )
    if mode not in ("decorator", "both"):  # the decorator's record is a chat's
        assert record.operation == "embeddings"
    assert (record.prompt_tokens, record.total_tokens) == (7, 7)
    assert record.response_model == "text-embedding-3-small" and streams == []


# ---------------------------------------------------------------------- failures


def _failing(call: Callable[[], Any]) -> BaseException:
    with pytest.raises(Exception) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("mode", MODES)
def test_a_provider_error_is_recorded_and_raised_unchanged(mode, server):
    """OpenAI's recorded 404 (unknown model): LiteLLM's own exception reaches the caller
    as it does uninstrumented (same class, status and message); one failed record and one
    error record, without the key."""
    spec = ENTRIES["openai"]
    server.replay(str(OPENAI_404))
    plain = _failing(completion(spec, server))
    server.replay(str(OPENAI_404))
    arm(mode)
    with capture_metrics(CONFIG) as sink:
        raised = _failing(measured(mode, spec, completion(spec, server), False))
    assert isinstance(raised, litellm.exceptions.NotFoundError)
    assert (type(raised), raised.status_code, str(raised)) == (
        type(plain),
        plain.status_code,
        str(plain),
    )
    (record,), _, (error,) = records(sink)
    assert (record.success, record.provider, record.error_class) == (
        False,
        "openai",
        "NotFoundError",
    )
    assert error.status_code == 404 and error.request_id == record.request_id
    assert KEY not in (error.message or "")


@pytest.mark.parametrize("mode", ["litellm", "with_openai"])
def test_an_azure_error_through_the_openai_sdk_is_one_failure(mode, server):
    """A 429 from Azure, raised inside the openai SDK that LiteLLM calls: one failed
    record (the SDK's call joined LiteLLM's), its key kept out of the error record even
    where the provider quotes it back."""
    spec = ENTRIES["azure"]
    server.script(Fault(status=429, echo_key=True))
    arm(mode)
    with capture_metrics(CONFIG) as sink:
        raised = _failing(completion(spec, server))
    assert isinstance(raised, litellm.exceptions.RateLimitError)
    assert KEY in str(raised)  # the provider said it: the caller's exception is unchanged
    (record,), _, (error,) = records(sink)
    assert (record.success, record.provider, record.error_category) == (
        False,
        "azure.ai.openai",
        "rate_limit",
    )
    assert error.status_code == 429
    assert KEY not in (error.message or "")
    assert len(server.requests) == 1  # no retry hid the failure


def test_a_stream_cut_by_the_provider_is_a_failed_record(server):
    """An Anthropic stream whose connection drops after three events: the caller gets
    LiteLLM's exception; one failed record, its stream marked as an error."""
    spec = ENTRIES["anthropic"]
    server.script(Fault(drop_after=3))
    instrument("litellm")
    got: List[Any] = []
    cut = litellm.exceptions.ServiceUnavailableError  # LiteLLM's MidStreamFallbackError
    with capture_metrics(CONFIG) as sink, pytest.raises(cut):
        for chunk in completion(spec, server, stream=True, **USAGE_ASKED)():
            got.append(chunk)
    (record,), (streaming,), (error,) = records(sink)
    assert (record.success, record.method, streaming.status) == (False, "stream", "error")
    assert record.error_class == "MidStreamFallbackError"
    assert streaming.total_chunks == len(got) and error.request_id == record.request_id


# ---------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("model", "options", "provider", "sent", "host"),
    [
        ("gpt-4o-mini", {}, "openai", "gpt-4o-mini", None),
        ("claude-haiku-4-5", {}, "anthropic", "claude-haiku-4-5", None),
        ("groq/llama-3.1-8b-instant", {}, "groq", "llama-3.1-8b-instant", "api.groq.com"),
        (
            "mistral/mistral-small-latest",
            {},
            "mistral_ai",
            "mistral-small-latest",
            "api.mistral.ai",
        ),
        ("xai/grok-3", {}, "x_ai", "grok-3", "api.x.ai"),
        ("deepseek/deepseek-chat", {}, "deepseek", "deepseek-chat", "api.deepseek.com"),
        ("gemini/gemini-2.0-flash", {}, "gcp.gemini", "gemini-2.0-flash", None),
        ("bedrock/amazon.nova-lite-v1:0", {}, "aws.bedrock", "amazon.nova-lite-v1:0", None),
        ("ollama/llama3", {}, "ollama", "llama3", "localhost"),  # LiteLLM's default base
        ("my-model", {"custom_llm_provider": "openai"}, "openai", "my-model", None),
        # A known host names the provider, as for the SDKs.
        (
            "openai/llama",
            {"api_base": "https://api.groq.com/openai/v1"},
            "groq",
            "llama",
            "api.groq.com",
        ),
        ("no-such-model-anywhere", {}, "litellm", "no-such-model-anywhere", None),
    ],
)
def test_the_provider_is_where_litellm_routes_the_call(model, options, provider, sent, host):
    """LiteLLM's routing named as the GenAI conventions name providers (its own name
    where they have none), the model as sent, the server when the route names one; an
    unroutable model is LiteLLM's. Routing makes no connection (checked by ``clean``)."""
    from steer_llm_sdk.observability.instrumentation.litellm import route

    named, model_sent, attributes = route(model, options)
    assert (named, model_sent) == (provider, sent)
    assert attributes.get("server.address") == host


# ---------------------------------------------------------------------- what is patched


def test_instrument_patches_the_package_functions_and_uninstrument_restores_them():
    """``litellm.completion`` and ``litellm.embedding`` are measured where applications
    call them; uninstrument() puts LiteLLM's own functions back."""
    originals = (litellm.completion, litellm.embedding)
    assert sorted(instrument("litellm")) == ["litellm"]
    assert sorted(instrumented()) == ["litellm.completion", "litellm.embedding"]
    assert litellm.completion is not originals[0]
    assert litellm.completion.__wrapped__ is originals[0]
    uninstrument()
    assert (litellm.completion, litellm.embedding) == originals and instrumented() == []


def test_litellm_is_patched_when_imported_and_not_before(module_server):
    """instrument() imports no LiteLLM (its import takes seconds); LiteLLM imported later
    is patched as its import completes, so a ``from litellm import completion`` made then
    gets the measured function; its call is one record."""
    code = textwrap.dedent(
        """
        import json, sys
        import steer_llm_sdk.observability as observability
        from steer_llm_sdk.observability.instrumentation import instrumented
        from steer_llm_sdk.testing import capture_metrics
        armed = observability.instrument("litellm", "openai")
        before = "litellm" in sys.modules
        from litellm import completion
        with capture_metrics(observability.MetricsConfig(flush_on_exit=False)) as sink:
            answer = completion(
                model="openai/gpt-4", messages=[{"role": "user", "content": "hi"}],
                api_base=sys.argv[1], api_key="test", max_retries=0,
            )
        found = [(r.provider, r.model, r.prompt_tokens, r.completion_tokens)
                 for r in sink.get_metrics(metric_type="request")]
        print("REPORT " + json.dumps({
            "armed": armed, "before": before, "patched": instrumented(), "records": found,
            "usage": [answer.usage.prompt_tokens, answer.usage.completion_tokens],
        }))
        """
    )
    done = spawn.run(
        [sys.executable, "-c", code, module_server.openai_base_url],
        env={**os.environ, **LITELLM_ENV, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    reports = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and len(reports) == 1, done.stdout[-3000:] + done.stderr[-3000:]
    facts = json.loads(reports[0][len("REPORT ") :])
    assert facts["armed"] == ["litellm", "openai"] and facts["before"] is False
    assert {"litellm.completion", "litellm.embedding"} <= set(facts["patched"])
    assert facts["records"] == [["openai", "gpt-4", *facts["usage"]]]


def test_litellm_made_no_connection_at_import(module_server):
    """LiteLLM's import, with the module's environment, resolved and reached no host; the
    audit hook behind this check (and ``clean``'s) does see connections."""
    assert [d for d in AT_IMPORT if d[1] not in LOOPBACK] == []
    before = len(DESTINATIONS)
    with socket.create_connection(("127.0.0.1", module_server.port), timeout=5):
        pass
    assert ("socket.connect", "127.0.0.1") in DESTINATIONS[before:]


def test_doctor_reports_litellm_and_its_entry_points():
    """doctor() names the installed LiteLLM, its version and its two entry points."""
    import importlib.metadata

    from steer_llm_sdk.observability import MetricsCollector, doctor

    collector = MetricsCollector(CONFIG)
    try:
        instrument("litellm", collector=collector)
        (finding,) = [
            f for f in doctor(collector, timeout=5).findings if f.check == "instrumentation"
        ]
    finally:
        collector.shutdown(5)
    assert finding.details["sdks"]["litellm"] == {
        "version": importlib.metadata.version("litellm"),
        "instrumented": 2,
    }
