"""``with_raw_response`` and ``with_streaming_response`` under ``instrument()``: the openai and
anthropic SDKs then return the raw response (headers, status, ``parse()``; for the second, a
body the caller reads inside a ``with`` block) instead of the parsed object. Each call is one
record with the usage the server reported, however its body or stream is read, and the
caller gets the SDK's own response back."""

import copy
import gc
import json
import socket
import threading
from typing import Any, Callable, Dict, List, Tuple

import pytest
import wrapt
from support import consuming
from support.sdk_clients import closing

from steer_llm_sdk.observability import instrument, track_request, uninstrument
from steer_llm_sdk.testing import LocalLLMServer, capture_metrics

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

pytestmark = pytest.mark.timeout(60)

USER = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def server():
    with LocalLLMServer(reply_words=7) as local:
        yield local


@pytest.fixture
def clients(server):
    # Instrumented before the clients are made: ``with_raw_response`` keeps the bound
    # ``create`` it first saw (the SDKs cache it per client).
    instrument("openai", "anthropic")
    made = (
        openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0),
        anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="test", max_retries=0),
    )
    try:
        with closing(*made):
            yield made
    finally:
        uninstrument()


#: The two ways the SDKs hand back the response itself.
RAW, STREAMED = "with_raw_response", "with_streaming_response"


def _chat(client: Any, how: str = RAW, **extra: Any) -> Any:
    return getattr(client.chat.completions, how).create(model="gpt-4o-mini", messages=USER, **extra)


def _message(client: Any, how: str = RAW, **extra: Any) -> Any:
    return getattr(client.messages, how).create(
        model="claude-haiku-4-5", max_tokens=100, messages=USER, **extra
    )


def _requests(sink: Any) -> List[Any]:
    return sink.get_metrics(metric_type="request")


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_a_blocking_raw_response_is_one_record_with_its_usage(sdk, clients):
    client = clients[0] if sdk == "openai" else clients[1]
    with capture_metrics() as sink:
        raw = (_chat if sdk == "openai" else _message)(client)
        assert raw.status_code == 200 and raw.headers.get("content-type", "").startswith(
            "application/json"
        )
        parsed = raw.parse()
    assert not isinstance(raw, wrapt.ObjectProxy)  # the SDK's own object, unwrapped
    usage = parsed.usage
    expected = (
        (usage.prompt_tokens, usage.completion_tokens)
        if sdk == "openai"
        else (usage.input_tokens, usage.output_tokens)
    )
    (record,) = _requests(sink)
    assert record.success and record.method == "generate" and record.provider == sdk
    assert (record.prompt_tokens, record.completion_tokens) == expected
    assert record.response_model == parsed.model


def test_a_raw_response_never_parsed_is_still_read_for_usage(clients):
    with capture_metrics() as sink:
        raw = _chat(clients[0])
        assert raw.status_code == 200  # only the headers are wanted
    (record,) = _requests(sink)
    assert record.completion_tokens == 7 and record.prompt_tokens


def _raw_stream(sdk: str, clients: Any, how: str = RAW) -> Any:
    if sdk == "openai":
        return _chat(clients[0], how, stream=True, stream_options={"include_usage": True})
    return _message(clients[1], how, stream=True)


def _check_stream(sink: Any, sdk: str, chunks: int, full: bool) -> None:
    """One call, its chunks as read; read to its end, the usage the server reported."""
    (record,) = _requests(sink)
    (streaming,) = sink.get_metrics(metric_type="streaming")
    assert record.method == "stream" and record.provider == sdk
    assert record.time_to_first_chunk_ms is not None
    assert streaming.total_chunks == chunks
    if full:
        assert chunks > 7 and record.success and record.time_to_first_token_ms is not None
        assert record.completion_tokens == 7 and record.prompt_tokens
    else:
        assert chunks == consuming.K
        # What the chunks read reported: openai's usage comes last, anthropic's
        # message_start says 1 output token so far.
        assert record.completion_tokens == (None if sdk == "openai" else 1)


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
@pytest.mark.parametrize("form", list(consuming.FORMS))
def test_a_raw_stream_is_one_record_however_it_is_read(sdk, form, clients):
    consume, full = consuming.FORMS[form]
    with capture_metrics() as sink:
        raw = _raw_stream(sdk, clients)
        assert raw.parse() is raw.parse()  # one stream, as the SDK caches it
        chunks = len(consume(raw.parse))
        del raw  # the raw response holds its stream: a stream left unfinished ends with it
        gc.collect()
    _check_stream(sink, sdk, chunks, full)


def test_a_raw_stream_never_parsed_is_recorded_once_when_dropped(clients):
    with capture_metrics() as sink:
        raw = _chat(clients[0], stream=True)
        assert raw.status_code == 200
        del raw
        gc.collect()
    (record,) = _requests(sink)
    assert record.method == "stream" and record.completion_tokens is None


def test_a_raw_call_inside_a_tracked_function_hands_its_usage_to_it(clients):
    @track_request("openai", model="gpt-4o-mini")
    def ask() -> Any:
        return _chat(clients[0]).parse()

    with capture_metrics() as sink:
        answer = ask()
    (record,) = _requests(sink)
    assert record.completion_tokens == answer.usage.completion_tokens == 7


def test_other_extra_headers_leave_the_call_as_it_is(clients):
    with capture_metrics() as sink:
        answer = clients[0].chat.completions.create(
            model="gpt-4o-mini", messages=USER, extra_headers={"x-trace": "1"}
        )
    (record,) = _requests(sink)
    assert type(answer).__name__ == "ChatCompletion"
    assert record.completion_tokens == answer.usage.completion_tokens


# ``with_streaming_response``: the body is the caller's to read, inside the ``with`` block.


def _streamed(sdk: str, clients: Any, **extra: Any) -> Any:
    if sdk == "openai":
        return _chat(clients[0], STREAMED, **extra)
    return _message(clients[1], STREAMED, **extra)


#: How a blocking answer's body is read: (way, read, whether its usage is then known).
BODY_READS: List[Tuple[str, Callable[[Any], Any], bool]] = [
    ("parse", lambda response: response.parse(), True),
    ("json", lambda response: response.json(), True),
    ("read", lambda response: response.read(), True),
    ("text", lambda response: response.text(), True),
    ("iter_bytes", lambda response: b"".join(response.iter_bytes()), False),
    ("unread", lambda response: response.status_code, False),
]


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
@pytest.mark.parametrize("way", [name for name, _, _ in BODY_READS])
def test_a_streamed_response_is_one_record_however_its_body_is_read(sdk, way, clients):
    _, read, usage_known = next(entry for entry in BODY_READS if entry[0] == way)
    with capture_metrics() as sink, _streamed(sdk, clients) as response:
        assert isinstance(response, (openai.APIResponse, anthropic.APIResponse))
        read(response)
        if way != "iter_bytes":  # a body read in pieces cannot be read again
            read(response)  # read twice: still one end
    (record,) = _requests(sink)
    assert record.success and record.method == "generate" and record.provider == sdk
    if usage_known:
        assert record.completion_tokens == 7 and record.prompt_tokens
    else:
        assert record.completion_tokens is None


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
@pytest.mark.parametrize("form", list(consuming.FORMS))
def test_a_streamed_response_s_stream_is_one_record_however_it_is_read(sdk, form, clients):
    consume, full = consuming.FORMS[form]
    with capture_metrics() as sink, _raw_stream(sdk, clients, STREAMED) as response:
        assert response.parse() is response.parse()
        chunks = len(consume(response.parse))
    _check_stream(sink, sdk, chunks, full)


def test_a_streamed_response_s_stream_never_parsed_is_recorded_once(clients):
    with capture_metrics() as sink, _chat(clients[0], STREAMED, stream=True) as response:
        assert response.status_code == 200
    (record,) = _requests(sink)
    assert record.method == "stream" and record.completion_tokens is None


def test_a_streamed_response_inside_a_tracked_function_hands_its_usage_to_it(clients):
    @track_request("openai", model="gpt-4o-mini")
    def ask() -> Any:
        with _chat(clients[0], STREAMED) as response:
            response.json()  # the body read twice is handed over once
            return response.parse()

    with capture_metrics() as sink:
        answer = ask()
    (record,) = _requests(sink)
    assert record.completion_tokens == answer.usage.completion_tokens == 7


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_a_streamed_response_parsed_as_another_type_keeps_its_usage(sdk, clients):
    with capture_metrics() as sink, _streamed(sdk, clients) as response:
        body = response.parse(to=Dict[str, Any])
    (record,) = _requests(sink)
    usage = body["usage"]
    expected = usage.get("completion_tokens", usage.get("output_tokens"))
    assert record.success and record.completion_tokens == expected == 7


def test_a_streamed_response_looks_like_the_sdk_s_own(clients):
    with capture_metrics(), _chat(clients[0], STREAMED) as response:
        assert repr(response) == repr(response.__wrapped__)
        assert repr(response).startswith("<APIResponse")
        assert type(copy.copy(response)) is openai.APIResponse


_TRUNCATED_ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
).encode()


@pytest.fixture(scope="module")
def truncating_server():
    """A server on 127.0.0.1 that announces a whole JSON answer and sends half of it."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                while len(rest) < length:
                    rest += conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(_TRUNCATED_ANSWER) + _TRUNCATED_ANSWER[:40]
                )

    worker = threading.Thread(target=serve, daemon=True)
    worker.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        listener.close()
        worker.join(5)


@pytest.mark.parametrize("way", ["parse", "json", "read", "text", "iter_bytes"])
def test_a_streamed_response_whose_body_fails_is_recorded_failed(way, truncating_server):
    instrument("openai")
    client = openai.OpenAI(base_url=truncating_server, api_key="test", max_retries=0)
    try:
        with (
            closing(client),
            capture_metrics() as sink,
            pytest.raises(Exception) as raised,
            _chat(client, STREAMED) as response,
        ):
            read = getattr(response, way)
            if way == "iter_bytes":
                b"".join(read())
            else:
                read()
    finally:
        uninstrument()
    (record,) = _requests(sink)
    (error,) = sink.get_metrics(metric_type="error")
    assert not record.success and record.error_class == type(raised.value).__name__
    assert error.error_class == record.error_class
