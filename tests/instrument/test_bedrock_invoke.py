"""Bedrock InvokeModel and InvokeModelWithResponseStream, measured exactly, for every body
family (Anthropic, Amazon Nova and Titan, Meta Llama, Mistral, Cohere, AI21): through
``instrument()`` and through ``@track_request``, reading usage from the token headers, from
the body as the caller reads it, and from the streams' ``amazon-bedrock-invocationMetrics``,
while the caller reads the body and the event stream exactly as without us.

The answers come from LocalLLMServer's Bedrock module: made without the
``X-Amzn-Bedrock-*-Token-Count`` headers and replayed by LocalLLMServer (the body path), or
sent by a handler of this module as the module makes them, headers included (the header
path; LocalLLMServer's router does not send InvokeModel answers of its own yet).
"""

import base64
import gc
import io
import json
import os
import sys
import textwrap
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
import yaml
from support import spawn
from support.corpus import SDK_WARNINGS
from support.paths import ROOT
from support.sdk_clients import closing

from steer_llm_sdk.observability import (
    MetricsConfig,
    get_collector,
    instrument,
    track_request,
    uninstrument,
)
from steer_llm_sdk.observability.measure.stream import end_open_streams
from steer_llm_sdk.streaming.readers import StreamReader
from steer_llm_sdk.streaming.tokens import count_text
from steer_llm_sdk.streaming.usage import TokenUsage, extract_model, extract_usage
from steer_llm_sdk.testing import Fault, LocalLLMServer, capture_metrics
from steer_llm_sdk.testing.server import bedrock as server_bedrock
from steer_llm_sdk.testing.server.content import reply_text
from steer_llm_sdk.testing.server.wire import Writer

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.eventstream import EventStreamBuffer  # noqa: E402
from botocore.exceptions import ClientError, EventStreamError  # noqa: E402
from botocore.response import StreamingBody  # noqa: E402

pytestmark = SDK_WARNINGS

CONFIG = MetricsConfig(flush_on_exit=False, enable_cost_tracking=False)
#: Items the partial forms take before they stop.
K = 2

#: family -> (a model id of it, a request body in its format)
CALLS: Dict[str, Tuple[str, Dict[str, Any]]] = {
    "anthropic": (
        "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "Say hello to the reviewer"}],
        },
    ),
    "claude_text": (
        "anthropic.claude-v2:1",
        {"prompt": "\n\nHuman: Say hello\n\nAssistant:", "max_tokens_to_sample": 64},
    ),
    "nova": (
        "us.amazon.nova-micro-v1:0",
        {
            "messages": [{"role": "user", "content": [{"text": "Say hello to Nova"}]}],
            "inferenceConfig": {"maxTokens": 64},
        },
    ),
    "titan": (
        "amazon.titan-text-express-v1",
        {"inputText": "Say hello to Titan", "textGenerationConfig": {"maxTokenCount": 64}},
    ),
    "titan_embed": ("amazon.titan-embed-text-v2:0", {"inputText": "Embed these words"}),
    "llama": ("meta.llama3-1-8b-instruct-v1:0", {"prompt": "Say hello to Llama"}),
    "mistral": ("mistral.mistral-7b-instruct-v0:2", {"prompt": "<s>[INST] Say hello [/INST]"}),
    "mistral_chat": (
        "mistral.mistral-large-2407-v1:0",
        {"messages": [{"role": "user", "content": "Say hello to Mistral"}]},
    ),
    "cohere_r": ("cohere.command-r-v1:0", {"message": "Say hello to Command R"}),
    "cohere": ("cohere.command-text-v14", {"prompt": "Say hello to Command"}),
    "jamba": (
        "ai21.jamba-1-5-mini-v1:0",
        {"messages": [{"role": "user", "content": "Say hello to Jamba"}]},
    ),
    "jurassic": ("ai21.j2-mid-v1", {"prompt": "Say hello to Jurassic"}),
}
STREAMED = [f for f in CALLS if f not in ("titan_embed", "jurassic")]
#: The families whose InvokeModel body reports no usage (only the headers have it).
NO_BODY_USAGE = ("claude_text", "mistral", "mistral_chat", "cohere_r", "cohere")
#: The families whose answers say how much was read from the prompt cache (none here).
CACHING = ("anthropic", "nova")


def expected(family: str, replies: Any, source: str) -> Tuple[Any, Any, Any]:
    """(prompt, completion, cached) tokens Bedrock reports for ``family``'s call, read from
    ``source``: ``headers``, ``body`` or ``stream`` (the invocation metrics)."""
    _, request = CALLS[family]
    prompt = server_bedrock.prompt_of(request)
    pieces = [] if family == "titan_embed" else replies.reply_text(prompt)
    counts = (count_text(prompt, None).tokens, count_text("".join(pieces), None).tokens)
    if family == "titan_embed":
        return counts[0], None, None
    if source == "body" and family in NO_BODY_USAGE:
        return None, None, None
    cached = 0 if family in CACHING and (source != "stream" or family == "anthropic") else None
    return counts[0], counts[1], cached


def reply_chars(family: str, replies: Any) -> int:
    prompt = server_bedrock.prompt_of(CALLS[family][1])
    return len("".join(replies.reply_text(prompt)))


# ---------------------------------------------------------------------- servers and clients


def _client(url: str) -> Any:
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


class Replies:
    """What the server answers with: the reply's words, and whether the token headers go."""

    reply_words = 6
    azure_model = "unused"

    def __init__(self) -> None:
        self.report_usage = True
        self.error_after: Optional[int] = None
        self.chunked = False

    def reply_text(self, prompt: str, words: Optional[int] = None) -> List[str]:
        return reply_text(prompt, self.reply_words if words is None else words)


class _Handler(Writer):
    """Sends what the server's Bedrock module answers, headers included."""

    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        replies = self.server.replies
        answer = server_bedrock.invoke_answer(self.path, request, replies, replies.error_after)
        server_bedrock.send_invoke(self, answer, replies.chunked)


@pytest.fixture(scope="module")
def direct() -> Iterator[Tuple[Replies, Any]]:
    """(its settings, a boto3 client) of a server sending the Bedrock module's answers as
    they are made (the token headers included)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.replies = Replies()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    client = _client(f"http://127.0.0.1:{httpd.server_address[1]}")
    try:
        with closing(client):
            yield httpd.replies, client  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def settings(direct: Any) -> Iterator[Replies]:
    replies = direct[0]
    yield replies
    replies.report_usage, replies.error_after, replies.chunked = True, None, False


@pytest.fixture(scope="module")
def replayed(module_server: LocalLLMServer, tmp_path_factory: Any) -> Iterator[Any]:
    """(LocalLLMServer, a boto3 client of it, ``queue(family, streamed, times=1, **opts)``
    which queues the Bedrock module's answer, without the token headers, as a recorded
    interaction)."""
    folder = tmp_path_factory.mktemp("invoke")
    client = _client(module_server.url)

    def queue(family: str, streamed: bool = False, times: int = 1, **options: Any) -> None:
        model, request = CALLS[family]
        interaction = server_bedrock.invoke_interaction(
            model, request, module_server, streamed, token_headers=False, **options
        )
        path = folder / f"{family}-{streamed}-{len(list(folder.iterdir()))}.yaml"
        path.write_text(yaml.safe_dump({"interactions": [interaction] * times}), "utf-8")
        module_server.replay(str(path))

    try:
        with closing(client):
            yield module_server, client, queue
    finally:
        module_server._replays.clear()


@pytest.fixture
def clean(module_server: LocalLLMServer) -> Iterator[None]:
    """No instrumentation before and after the test, and no answer it queued left over."""
    uninstrument()
    yield
    uninstrument()
    left = list(module_server._replays)
    module_server._replays.clear()
    assert not left, f"answers queued and never asked for: {[path for _, path, _ in left]}"


def invoke(client: Any, family: str) -> Any:
    model, request = CALLS[family]
    return client.invoke_model(modelId=model, body=json.dumps(request))


def invoke_stream(client: Any, family: str) -> Any:
    model, request = CALLS[family]
    return client.invoke_model_with_response_stream(modelId=model, body=json.dumps(request))


def tokens(record: Any) -> Tuple[Any, Any, Any]:
    return record.prompt_tokens, record.completion_tokens, record.cached_tokens


# ---------------------------------------------------------------------- the server's module


def _messages(answer: Any) -> List[Any]:
    """The event-stream messages of a streamed answer, decoded by botocore."""
    buffer = EventStreamBuffer()
    buffer.add_data(b"".join(answer.frames or []))
    return list(buffer)


def _chunk_bytes(message: Any) -> bytes:
    """A ``chunk`` event's JSON bytes (base64 in its payload), as boto3 hands them over."""
    return base64.b64decode(json.loads(message.payload)["bytes"])


def test_event_frames_decode_with_botocore_and_carry_each_chunk() -> None:
    answer = server_bedrock.invoke_answer(
        "/model/meta.llama3-8b-instruct-v1%3A0/invoke-with-response-stream",
        CALLS["llama"][1],
        Replies(),
    )
    messages = _messages(answer)  # botocore checks both CRCs of each
    assert len(messages) == len(answer.frames or []) == Replies.reply_words + 1
    chunks = [json.loads(_chunk_bytes(m)) for m in messages]
    assert all(m.headers[":event-type"] == "chunk" for m in messages)
    assert "".join(c["generation"] for c in chunks) == "".join(
        Replies().reply_text(server_bedrock.prompt_of(CALLS["llama"][1]))
    )
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    assert (metrics["inputTokenCount"], metrics["outputTokenCount"]) == expected(
        "llama", Replies(), "stream"
    )[:2]
    assert answer.headers["content-type"] == "application/vnd.amazon.eventstream"


def test_a_frame_with_a_bad_checksum_is_refused_by_botocore() -> None:
    frame = bytearray(server_bedrock.chunk_frame({"generation": "x"}))
    frame[-5] ^= 1  # a byte of the payload
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(frame))
    with pytest.raises(Exception, match="(?i)checksum|crc"):
        list(buffer)


@pytest.mark.parametrize(
    "model, family",
    [
        ("us.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic"),
        ("anthropic.claude-instant-v1", "claude_text"),
        ("eu.amazon.nova-pro-v1:0", "nova"),
        ("amazon.titan-embed-text-v2:0", "titan_embed"),
        ("amazon.titan-text-premier-v1:0", "titan"),
        ("meta.llama4-maverick-17b-instruct-v1:0", "llama"),
        ("mistral.mixtral-8x7b-instruct-v0:1", "mistral"),
        ("mistral.mistral-large-2407-v1:0", "mistral_chat"),
        ("cohere.command-r-plus-v1:0", "cohere_r"),
        ("cohere.command-light-text-v14", "cohere"),
        ("ai21.jamba-instruct-v1:0", "jamba"),
        ("ai21.j2-ultra-v1", "jurassic"),
        ("writer.palmyra-x4-v1:0", None),
    ],
)
def test_model_ids_name_their_body_family(model: str, family: Optional[str]) -> None:
    assert server_bedrock.family_of(model) == family


# ---------------------------------------------------------------------- pure reading


def _events(family: str, replies: Any) -> List[Dict[str, Any]]:
    """The events boto3 yields for ``family``'s stream: ``{"chunk": {"bytes": ...}}``."""
    model, request = CALLS[family]
    path = f"/model/{model}/invoke-with-response-stream"
    answer = server_bedrock.invoke_answer(path, request, replies)
    return [{"chunk": {"bytes": _chunk_bytes(m)}} for m in _messages(answer)]


@pytest.mark.parametrize("family", STREAMED)
def test_the_reader_takes_text_and_the_invocation_metrics_of_each_family(family: str) -> None:
    replies = Replies()
    reader = StreamReader()
    text = "".join(reader.observe(event) for event in _events(family, replies))
    assert reader.errors == 0
    assert text == "".join(replies.reply_text(server_bedrock.prompt_of(CALLS[family][1])))
    usage = reader.token_usage()
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == expected(
        family, replies, "stream"
    )


def _chunk(body: Dict[str, Any]) -> Dict[str, Any]:
    return {"chunk": {"bytes": json.dumps(body).encode()}}


def test_the_invocation_metrics_win_over_what_the_chunks_counted() -> None:
    reader = StreamReader()
    reader.observe(
        _chunk({"generation": "a", "prompt_token_count": 3, "generation_token_count": 1})
    )
    metrics = {"inputTokenCount": 7, "outputTokenCount": 9}
    last = {"generation": "", "generation_token_count": 2, "stop_reason": "stop"}
    reader.observe(_chunk({**last, "amazon-bedrock-invocationMetrics": metrics}))
    assert reader.token_usage() == TokenUsage(7, 9, 16)
    assert reader.finish_reason == "stop"


def test_cache_counts_of_the_chunks_are_added_to_the_metrics_input() -> None:
    # Anthropic's message_start says what was read from and written to the cache; the
    # invocation metrics' input leaves the cache out and, here, say nothing of it.
    reader = StreamReader()
    usage = {"input_tokens": 5, "output_tokens": 1, "cache_read_input_tokens": 100}
    start = {"type": "message_start", "message": {"model": "claude", "usage": usage}}
    reader.observe(_chunk(start))
    stop = {"type": "message_stop"}
    metrics = {"inputTokenCount": 5, "outputTokenCount": 4}
    reader.observe(_chunk({**stop, "amazon-bedrock-invocationMetrics": metrics}))
    assert reader.token_usage() == TokenUsage(105, 4, 109, 100, None, None)
    # With cache counts of their own, the metrics' are taken.
    reader = StreamReader()
    reader.observe(_chunk(start))
    metrics = {**metrics, "cacheReadInputTokenCount": 100, "cacheWriteInputTokenCount": 7}
    reader.observe(_chunk({**stop, "amazon-bedrock-invocationMetrics": metrics}))
    assert reader.token_usage() == TokenUsage(112, 4, 116, 100, None, 7)


def test_a_chunk_that_is_no_json_is_counted_and_passed_over() -> None:
    reader = StreamReader()
    assert reader.observe({"chunk": {"bytes": b"{not json"}}) == ""
    assert reader.errors == 1


def test_converse_events_are_read_as_before() -> None:
    reader = StreamReader()
    assert reader.observe({"contentBlockDelta": {"delta": {"text": "hi"}}}) == "hi"
    usage = {"inputTokens": 3, "outputTokens": 2, "cacheReadInputTokens": 4}
    reader.observe({"metadata": {"usage": usage}})
    assert reader.token_usage() == TokenUsage(7, 2, 9, 4, None, None)


@pytest.mark.parametrize("family", list(CALLS))
def test_usage_of_each_family_s_body(family: str) -> None:
    model, request = CALLS[family]
    replies = Replies()
    answer = server_bedrock.invoke_answer(f"/model/{model}/invoke", request, replies)
    for given in (json.loads(answer.body), answer.body):  # decoded, and as read (bytes)
        usage = extract_usage(given)
        got = (None, None, None) if usage is None else usage[:2] + (usage.cached_tokens,)
        assert got == expected(family, replies, "body"), given
    if family in ("anthropic", "jamba", "mistral_chat"):
        assert extract_model(answer.body) == model


def test_usage_of_a_boto3_response_comes_from_its_headers_alone() -> None:
    headers = {
        "x-amzn-bedrock-input-token-count": "68",
        "x-amzn-bedrock-output-token-count": "508",
        "x-amzn-bedrock-cache-read-input-token-count": "10",
        "x-amzn-bedrock-cache-write-input-token-count": "2",
    }
    body = StreamingBody(io.BytesIO(b'{"usage": {"input_tokens": 1}}'), 30)
    response = {"ResponseMetadata": {"HTTPHeaders": headers}, "body": body}
    assert extract_usage(response) == TokenUsage(80, 508, 588, 10, None, 2)
    assert body.tell() == 0  # the body is not read
    assert extract_usage({"ResponseMetadata": {"HTTPHeaders": {}}, "body": body}) is None


# ---------------------------------------------------------------------- header path


@pytest.mark.parametrize("family", list(CALLS))
@pytest.mark.parametrize("entry", ["instrument", "decorator", "both"])
def test_invoke_model_usage_from_the_headers(
    family: str, entry: str, direct: Any, settings: Replies, clean: None
) -> None:
    """The headers give the usage: the body is not read by us (the caller may read it
    later, or never), and the call is recorded when it returns."""
    client = direct[1]
    call: Callable[[], Any] = lambda: invoke(client, family)  # noqa: E731
    if entry != "instrument":
        call = track_request("bedrock", model=CALLS[family][0])(call)
    if entry != "decorator":
        instrument("bedrock")
    with capture_metrics(CONFIG) as sink:
        response = call()
        assert response["body"].tell() == 0  # nothing read ahead
        assert get_collector().flush(5)
        (record,) = sink.get_metrics(metric_type="request")
        assert tokens(record) == expected(family, settings, "headers")
        assert record.success and record.method == "generate"
        if entry == "instrument":  # the decorator records what its caller names
            assert record.operation == ("embeddings" if family == "titan_embed" else "chat")
            assert record.provider == "aws.bedrock" and record.model == CALLS[family][0]
        body = response["body"].read()
    uninstrument()
    assert json.loads(body) == json.loads(
        server_bedrock.invoke_answer(
            f"/model/{CALLS[family][0]}/invoke", CALLS[family][1], settings
        ).body
    )


def test_the_response_s_body_is_not_kept_for_the_flush_thread(
    direct: Any, settings: Replies, clean: None
) -> None:
    import weakref

    instrument("bedrock")
    with capture_metrics(CONFIG) as sink:
        response = invoke(direct[1], "llama")
        body = weakref.ref(response["body"])
        del response
        gc.collect()
        assert body() is None  # collected before the record was delivered
        assert get_collector().flush(5)
        (record,) = sink.get_metrics(metric_type="request")
    assert tokens(record) == expected("llama", settings, "headers")


# ---------------------------------------------------------------------- body path


#: Ways a caller reads a whole body: (name, read(StreamingBody) -> bytes).
READS: Dict[str, Callable[[Any], bytes]] = {
    "read": lambda body: body.read(),
    "read_n": lambda body: b"".join(iter(lambda: body.read(7), b"")),
    "read_exact_length": lambda body: body.read(int(body._content_length)),
    "iter_chunks": lambda body: b"".join(body.iter_chunks(5)),
    "iterate": lambda body: b"".join(body),
    "iter_lines": lambda body: b"\n".join(body.iter_lines(keepends=False)),
    "readlines": lambda body: b"".join(body.readlines()),
    "readinto": lambda body: _readinto(body),
    "with_raw_read": lambda body: _with_raw(body, lambda raw: raw.read()),
    "with_raw_iterate": lambda body: _with_raw(body, lambda raw: b"".join(raw)),
    "with_raw_stream": lambda body: _with_raw(body, lambda raw: b"".join(raw.stream(6))),
    "with_raw_as_context": lambda body: _with_raw(body, _read_in_context),
    "json_load": lambda body: json.dumps(json.load(body)).encode(),
}


def _readinto(body: Any) -> bytes:
    out = bytearray()
    buffer = bytearray(9)
    while True:
        count = body.readinto(buffer)
        if not count:
            return bytes(out)
        out += buffer[:count]


def _with_raw(body: Any, read: Callable[[Any], bytes]) -> bytes:
    with body as raw:
        return read(raw)


def _read_in_context(raw: Any) -> bytes:
    with raw as inner:  # the raw response is a context manager of its own
        return inner.read()


@pytest.mark.parametrize("way", list(READS))
@pytest.mark.parametrize("family", ["anthropic", "titan"])
@pytest.mark.timeout(30)
def test_a_body_read_every_way_is_the_same_and_gives_the_usage(
    family: str, way: str, replayed: Any, clean: None
) -> None:
    """Without the headers, the usage comes from the bytes the caller reads, observed as
    they pass: each way of reading gets exactly what it gets without us, and the call is
    recorded once the body is read (before it is closed, the response still held)."""
    server, client, queue = replayed
    uninstrument()
    queue(family)
    plain = READS[way](invoke(client, family)["body"])
    queue(family)
    instrument("bedrock")
    with capture_metrics(CONFIG) as sink:
        response = invoke(client, family)
        body = response["body"]
        assert isinstance(body, StreamingBody) and body.tell() == 0
        assert get_collector().flush(5)
        assert sink.get_metrics(metric_type="request") == []  # not before it is read
        assert READS[way](body) == plain
        assert get_collector().flush(5)
        (record,) = sink.get_metrics(metric_type="request")
        assert tokens(record) == expected(family, server, "body")
        assert record.success and record.method == "generate" and record.duration_ms > 0
        body.close()
    assert len(sink.get_metrics(metric_type="request")) == 1


@pytest.mark.parametrize("family", list(CALLS))
def test_every_family_s_body_as_read_gives_its_usage(
    family: str, replayed: Any, clean: None
) -> None:
    server, client, queue = replayed
    queue(family)
    instrument("bedrock")
    with capture_metrics(CONFIG) as sink:
        data = invoke(client, family)["body"].read()
    (record,) = sink.get_metrics(metric_type="request")
    assert tokens(record) == expected(family, server, "body")
    assert json.loads(data) == json.loads(
        server_bedrock.invoke_answer(
            f"/model/{CALLS[family][0]}/invoke", CALLS[family][1], server
        ).body
    )


@pytest.mark.parametrize("ending", ["close", "with_exit", "collected", "at_exit"])
def test_a_body_not_read_to_its_end_is_recorded_without_usage(
    ending: str, replayed: Any, clean: None
) -> None:
    server, client, queue = replayed
    queue("llama")
    instrument("bedrock")
    with capture_metrics(CONFIG) as sink:
        response = invoke(client, "llama")
        body = response["body"]
        assert len(body.read(5)) == 5
        assert get_collector().flush(5)
        assert sink.get_metrics(metric_type="request") == []
        if ending == "close":
            body.close()
        elif ending == "with_exit":
            with body:
                pass
        elif ending == "collected":
            del response, body
            gc.collect()
        else:
            assert end_open_streams() >= 1  # what the exit drain runs first
        assert get_collector().flush(5)
        (record,) = sink.get_metrics(metric_type="request")
    assert record.success and tokens(record) == (None, None, None)


@pytest.mark.parametrize("ending", ["close", "collected"])
def test_a_body_of_unknown_length_read_whole_gives_its_usage_when_done_with(
    ending: str, direct: Any, settings: Replies, clean: None
) -> None:
    """A body sent without its length (chunked, as a gateway may send it, and without the
    token headers) read in one large read: nothing says it is at its end until the caller
    closes or drops it; then what was read is a whole body, with its usage."""
    settings.report_usage, settings.chunked = False, True
    instrument("bedrock")
    with capture_metrics(CONFIG) as sink:
        response = invoke(direct[1], "llama")
        body = response["body"]
        data = body.read(1 << 20)
        assert json.loads(data)["generation"]
        assert get_collector().flush(5)
        assert sink.get_metrics(metric_type="request") == []
        if ending == "close":
            body.close()
        else:
            del response, body
            gc.collect()
        assert get_collector().flush(5)
        (record,) = sink.get_metrics(metric_type="request")
    assert tokens(record) == expected("llama", settings, "body")


def test_a_body_never_read_is_recorded_when_dropped(replayed: Any, clean: None) -> None:
    server, client, queue = replayed
    queue("anthropic")
    instrument("bedrock")
    with capture_metrics(CONFIG) as sink:
        invoke(client, "anthropic")  # the response is dropped at once
        assert get_collector().flush(5)
        (record,) = sink.get_metrics(metric_type="request")
    assert record.success and tokens(record) == (None, None, None)


def test_the_raw_stream_botocore_reads_through_is_there() -> None:
    """The body observer replaces ``StreamingBody._raw_stream``: if a botocore release
    renames it, this fails (and InvokeModel bodies without token headers go unmeasured)."""
    raw = io.BytesIO(b"abc")
    body = StreamingBody(raw, 3)
    assert body._raw_stream is raw
    with body as handed:
        assert handed is raw
    body = StreamingBody(io.BytesIO(b"abcdef"), 6)
    seen: List[bytes] = []

    class Spy(io.BytesIO):
        def read(self, *args: Any) -> bytes:
            data = super().read(*args)
            seen.append(data)
            return data

    body._raw_stream = Spy(b"abcdef")
    assert b"".join(body.iter_lines()) == b"abcdef" and b"".join(seen) == b"abcdef"


# ---------------------------------------------------------------------- streams


class Boom(Exception):
    pass


def _take(iterator: Any, got: List[Any]) -> None:
    for _ in range(K):
        got.append(next(iterator))


def _inline(make: Callable[[], Any], got: List[Any]) -> None:
    for item in make():
        got.append(item)


def _to_list(make: Callable[[], Any], got: List[Any]) -> None:
    got.extend(list(make()))


def _next_then_close(make: Callable[[], Any], got: List[Any]) -> None:
    stream = make()
    _take(iter(stream), got)
    stream.close()


def _break_early(make: Callable[[], Any], got: List[Any]) -> None:
    for item in make():
        got.append(item)
        if len(got) == K:
            break


def _raise_in_body(make: Callable[[], Any], got: List[Any]) -> None:
    try:
        for item in make():
            got.append(item)
            if len(got) == K:
                raise Boom
    except Boom:
        pass


def _abandon(make: Callable[[], Any], got: List[Any]) -> None:
    stream = make()
    iterator = iter(stream)
    _take(iterator, got)
    del stream, iterator
    gc.collect()


def _other_thread(make: Callable[[], Any], got: List[Any]) -> None:
    stream = make()
    thread = threading.Thread(target=lambda: got.extend(stream))
    thread.start()
    thread.join(10)
    assert not thread.is_alive()


def _delegated(make: Callable[[], Any], got: List[Any]) -> None:
    def plain() -> Any:
        yield from make()

    got.extend(plain())


#: name -> (consume(make, got), read to the end)
FORMS: Dict[str, Tuple[Callable[[Callable[[], Any], List[Any]], None], bool]] = {
    "inline": (_inline, True),
    "to_list": (_to_list, True),
    "other_thread": (_other_thread, True),
    "delegated": (_delegated, True),
    "next_then_close": (_next_then_close, False),
    "break_early": (_break_early, False),
    "raise_in_body": (_raise_in_body, False),
    "abandon": (_abandon, False),
}


def _stream_text(events: List[Any]) -> int:
    reader = StreamReader()
    return sum(len(reader.observe(event)) for event in events)


def _entry(entry: str, client: Any, family: str) -> Callable[[], Any]:
    """What the consumer calls for the stream: the event stream, measured by ``entry``."""
    model = CALLS[family][0]

    def body() -> Any:
        return invoke_stream(client, family)["body"]

    if entry == "instrument":
        return body
    if entry == "decorator":
        return track_request("bedrock", model=model, stream=True)(body)

    @track_request("bedrock", model=model)
    def events() -> Any:
        yield from invoke_stream(client, family)["body"]

    return events


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("family", STREAMED)
@pytest.mark.timeout(30)
def test_an_instrumented_stream_read_every_way(
    family: str, form: str, replayed: Any, clean: None
) -> None:
    _check_stream("instrument", family, form, replayed)


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("entry", ["decorator", "generator", "decorator+instrument"])
@pytest.mark.parametrize("family", ["anthropic", "titan"])
@pytest.mark.timeout(30)
def test_a_tracked_stream_read_every_way(
    family: str, entry: str, form: str, replayed: Any, clean: None
) -> None:
    _check_stream(entry, family, form, replayed)


def _check_stream(entry: str, family: str, form: str, replayed: Any) -> None:
    server, client, queue = replayed
    consume, full = FORMS[form]
    queue(family, streamed=True)
    plain = list(invoke_stream(client, family)["body"])
    queue(family, streamed=True)
    if entry in ("instrument", "decorator+instrument"):
        instrument("bedrock")
    got: List[Any] = []
    with capture_metrics(CONFIG) as sink:
        consume(_entry(entry.split("+")[0], client, family), got)
    requests = sink.get_metrics(metric_type="request")
    streams = sink.get_metrics(metric_type="streaming")
    assert len(requests) == 1 and len(streams) == 1, (requests, streams)
    record, streaming = requests[0], streams[0]
    assert got == (plain if full else plain[:K])
    assert streaming.status == ("completed" if full else "cancelled")
    assert streaming.total_chunks == len(got)
    assert streaming.total_chars == _stream_text(got)
    assert record.method == "stream" and record.success
    if full:
        assert streaming.total_chars == reply_chars(family, server)
        assert tokens(record) == expected(family, server, "stream")
        assert record.time_to_first_token_ms is not None
        assert record.duration_ms >= record.time_to_first_token_ms


def test_a_stream_failing_midway_is_recorded_as_an_error(replayed: Any, clean: None) -> None:
    server, client, queue = replayed
    queue("llama", streamed=True, error_after=3)
    instrument("bedrock")
    got: List[Any] = []
    with capture_metrics(CONFIG) as sink, pytest.raises(EventStreamError) as raised:
        for event in invoke_stream(client, "llama")["body"]:
            got.append(event)
    assert len(got) == 3
    (record,) = sink.get_metrics(metric_type="request")
    (streaming,) = sink.get_metrics(metric_type="streaming")
    (error,) = sink.get_metrics(metric_type="error")
    assert not record.success and record.error_class == type(raised.value).__name__
    assert streaming.status == "error" and streaming.total_chunks == 3
    assert "modelStreamErrorException" in (error.message or "")


# ---------------------------------------------------------------------- failures, joins


@pytest.mark.parametrize("streamed", [False, True])
def test_an_error_status_is_raised_unchanged_and_recorded(
    streamed: bool, replayed: Any, clean: None
) -> None:
    server, client, _ = replayed
    server.script(Fault(status=429))
    instrument("bedrock")
    with capture_metrics(CONFIG) as sink, pytest.raises(ClientError) as raised:
        (invoke_stream if streamed else invoke)(client, "anthropic")
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    (record,) = sink.get_metrics(metric_type="request")
    (error,) = sink.get_metrics(metric_type="error")
    assert not record.success and record.error_class == type(raised.value).__name__
    assert record.method == ("stream" if streamed else "generate")
    assert error.message and "ThrottlingException" in error.message


def test_the_request_s_text_is_kept_out_of_the_error_record(replayed: Any, clean: None) -> None:
    server, client, _ = replayed
    server.script(Fault(status=400, echo_request="message"))
    instrument("bedrock")
    with capture_metrics(CONFIG) as sink, pytest.raises(ClientError) as raised:
        invoke(client, "anthropic")
    said = CALLS["anthropic"][1]["messages"][0]["content"]
    assert said in str(raised.value)  # the provider quoted it
    (error,) = sink.get_metrics(metric_type="error")
    assert error.message and said not in error.message


def test_a_file_given_as_the_body_is_not_read_for_redaction(replayed: Any, clean: None) -> None:
    server, client, _ = replayed
    server.script(Fault(status=400, echo_request="message"))
    instrument("bedrock")
    given = io.BytesIO(json.dumps(CALLS["anthropic"][1]).encode())
    with capture_metrics(CONFIG) as sink, pytest.raises(ClientError):
        client.invoke_model(modelId=CALLS["anthropic"][0], body=given)
    (error,) = sink.get_metrics(metric_type="error")
    assert error.message
    assert given.tell() == len(given.getvalue())  # where botocore left it


def test_an_invoke_inside_a_tracked_function_is_measured_once(replayed: Any, clean: None) -> None:
    server, client, queue = replayed
    queue("nova", times=2)
    instrument("bedrock")

    @track_request("bedrock", model="two calls")
    def twice() -> str:
        texts = []
        for _ in range(2):
            body = json.loads(invoke(client, "nova")["body"].read())
            texts.append(body["output"]["message"]["content"][0]["text"])
        return " ".join(texts)

    with capture_metrics(CONFIG) as sink:
        twice()
    (record,) = sink.get_metrics(metric_type="request")
    prompt, completion, cached = expected("nova", server, "body")
    assert tokens(record) == (2 * prompt, 2 * completion, 2 * cached)


def test_other_bedrock_runtime_operations_pass_through(direct: Any, clean: None) -> None:
    instrument("bedrock")
    with capture_metrics(CONFIG) as sink, pytest.raises(ClientError):
        direct[1].apply_guardrail(
            guardrailIdentifier="g", guardrailVersion="1", source="INPUT", content=[]
        )
    assert sink.get_metrics() == []


# ---------------------------------------------------------------------- at exit


EXIT_SCRIPT = textwrap.dedent("""
    import json, sys
    import boto3
    from botocore.config import Config
    from steer_llm_sdk.observability import MetricsCollector, MetricsConfig, instrument

    class FileSink:
        def __init__(self, path):
            self.out = open(path, "a")
        def record(self, m):
            if m.metric_type == "request":
                self.out.write("%s:%s\\n" % (m.success, m.prompt_tokens))
        def flush(self):
            self.out.flush()
        def close(self):
            self.out.close()

    out, url, model, body, half = sys.argv[1:6]
    collector = MetricsCollector(MetricsConfig(), [FileSink(out)])
    instrument("bedrock", collector=collector)
    client = boto3.client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=url,
        aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}))
    kept = client.invoke_model(modelId=model, body=body)
    if half == "half":
        kept["body"].read(4)
    # the process ends holding a body not read to its end
""")


@pytest.mark.parametrize("half", ["unread", "half"])
@pytest.mark.timeout(60)
def test_a_body_held_at_exit_is_recorded(half: str, replayed: Any, tmp_path: Path) -> None:
    server, _, queue = replayed
    queue("titan")
    out = tmp_path / "records.txt"
    model, request = CALLS["titan"]
    proc = spawn.run(
        [sys.executable, "-c", EXIT_SCRIPT, str(out), server.url, model, json.dumps(request)]
        + [half],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().split() == ["True:None"]


@pytest.mark.parametrize("family", ["anthropic", "llama", "titan", "cohere_r"])
def test_local_server_answers_invoke_model_with_its_token_headers(
    module_server: LocalLLMServer, clean: None, family: str
) -> None:
    # LocalLLMServer itself answers InvokeModel in each family's format, headers included,
    # so that any test (or a user's) can run boto3 against it.
    client = _client(module_server.url)
    with closing(client), capture_metrics(CONFIG) as sink:
        instrument("bedrock")
        response = invoke(client, family)
        headers = response["ResponseMetadata"]["HTTPHeaders"]
        json.loads(response["body"].read())
    (record,) = sink.get_metrics(metric_type="request")
    prompt = int(headers["x-amzn-bedrock-input-token-count"])
    completion = int(headers["x-amzn-bedrock-output-token-count"])
    assert prompt > 0 and completion > 0
    assert (record.model, record.prompt_tokens, record.completion_tokens) == (
        CALLS[family][0],
        prompt,
        completion,
    )
