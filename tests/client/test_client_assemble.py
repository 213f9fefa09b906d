"""The client's streamed chunks, read once: :class:`~steer_llm_sdk.streaming.assemble.Assembler`
reads each decoded chunk for the answer and for the stream's measures at the same time, so
it must give exactly what the readers give (``StreamReader.observe``) on every chunk, note
the same usage, model and finish reason, stop at the shape's last event and hand the events
that carry an error to the protocol. JSON values of a JSON-format stream are parsed once, at
its end (``json_values``)."""

import json
from typing import Any, Dict, List, Tuple

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from support.cassettes import stream_chunks
from support.corpus import cassettes, exchanges
from support.local import local_client, recorded

from steer_llm_sdk.client.streams import json_values
from steer_llm_sdk.errors import ContentFilterError, ServerError
from steer_llm_sdk.streaming import SSEDecoder, StreamReader
from steer_llm_sdk.streaming.assemble import Assembler
from steer_llm_sdk.testing import LocalLLMServer

pytestmark = pytest.mark.timeout(60)

#: The corpus's API shape -> the stream shape the protocols name.
SHAPES = {"chat": "chat", "messages": "anthropic", "responses": "responses"}


def read_both(shape: str, chunks: List[Any]) -> Tuple[List[Any], List[Any], Dict, Dict]:
    """One stream's chunks read by an Assembler (as the client reads them: an exception is
    a chunk not read, counted) and by a StreamReader: (contents, contents, reader state,
    reader state); a content is (value, class)."""
    ours, theirs = StreamReader(), StreamReader()
    assembler = Assembler(shape)
    got, want = [], []
    for chunk in chunks:
        try:
            content = assembler.read(ours, chunk)
        except Exception:
            ours.errors += 1
            content = ""
        got.append((content, type(content)))
        content = theirs.observe(chunk)
        want.append((content, type(content)))
    return got, want, state(ours), state(theirs)


def state(reader: StreamReader) -> Dict[str, Any]:
    return {name: getattr(reader, name) for name in StreamReader.__slots__}


def decoded(text: str) -> List[Any]:
    """The JSON of each event of a recorded SSE body (``[DONE]`` and non-JSON left out)."""
    decoder = SSEDecoder()
    events = decoder.feed(text)
    decoder.close()
    out = []
    for event in events:
        try:
            out.append(json.loads(event.data))
        except ValueError:
            pass
    return out


def recorded_streams() -> List[Tuple[str, str, List[Any]]]:
    """(name, stream shape, chunks) of every streamed chat, messages and Responses exchange
    recorded: the five cassettes beside the tests, and the corpus when it is there."""
    streams = [
        ("openai_chat_stream_include_usage", "chat", None),
        ("openai_chat_stream_no_usage", "chat", None),
        ("anthropic_messages_stream", "anthropic", None),
    ]
    out = [(name, shape, stream_chunks(f"{name}.yaml")) for name, shape, _ in streams]
    for cassette in cassettes():
        for exchange in exchanges(cassette):
            if exchange.shape in SHAPES and exchange.streamed and isinstance(exchange.raw, str):
                out.append((exchange.name, SHAPES[exchange.shape], decoded(exchange.raw)))
    return out


def test_read_gives_what_the_readers_give_on_every_recorded_stream():
    streams = recorded_streams()
    assert len(streams) >= 3
    for name, shape, chunks in streams:
        got, want, ours, theirs = read_both(shape, chunks)
        assert got == want, name
        assert ours == theirs, name


# Chat-completion chunks of every kind the readers tell apart, odd ones included.
_text = st.sampled_from(["", "Hi", " there", "{", '"a": 1}'])
_fragment = st.fixed_dictionaries(
    {},
    optional={
        "index": st.sampled_from([0, 1, None]),
        "id": st.sampled_from(["call_1", "", None]),
        "function": st.one_of(
            st.fixed_dictionaries(
                {}, optional={"name": st.sampled_from(["f", None]), "arguments": _text}
            ),
            st.just("not a function"),
        ),
    },
)
_delta = st.fixed_dictionaries(
    {},
    optional={
        "role": st.just("assistant"),
        "content": st.one_of(st.none(), _text),
        "tool_calls": st.one_of(st.none(), st.lists(_fragment, max_size=2), st.just(5)),
        "reasoning_content": st.one_of(st.none(), _text),
        "reasoning": _text,
        "refusal": st.one_of(st.none(), _text),
    },
)
_choice = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "index": st.sampled_from([0, 1, 2, None]),
            "delta": st.one_of(_delta, st.none(), st.just("odd")),
            "text": _text,
            "finish_reason": st.sampled_from([None, "stop", "length", "tool_calls"]),
        },
    ),
    st.just(7),
)
_usage = st.fixed_dictionaries(
    {"prompt_tokens": st.integers(0, 50), "completion_tokens": st.integers(0, 50)},
    optional={"prompt_tokens_details": st.fixed_dictionaries({"cached_tokens": st.just(3)})},
)
_chat_chunk = st.one_of(
    st.fixed_dictionaries(
        {"choices": st.lists(_choice, max_size=3)},
        optional={"model": st.sampled_from(["gpt-4o", "", None]), "usage": _usage},
    ),
    st.just([]),
    st.just("odd"),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_chat_chunk, max_size=6))
def test_chat_read_gives_what_the_reader_gives(chunks):
    got, want, ours, theirs = read_both("chat", chunks)
    assert got == want
    assert ours == theirs


_block_delta = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["text_delta", "input_json_delta", "thinking_delta", "signature_delta"]
        )
    },
    optional={"text": _text, "partial_json": _text, "thinking": _text},
)
_anthropic_event = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("content_block_delta"), "index": st.sampled_from([0, 1])},
        optional={"delta": st.one_of(_block_delta, st.just("odd"))},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("content_block_start"),
            "index": st.sampled_from([0, 1]),
            "content_block": st.fixed_dictionaries(
                {"type": st.sampled_from(["text", "tool_use"]), "id": st.just("t1")},
                optional={"name": st.just("f"), "input": st.just({"x": 1})},
            ),
        }
    ),
    st.just(
        {"type": "message_start", "message": {"model": "claude", "usage": {"input_tokens": 9}}}
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("message_delta"),
            "delta": st.fixed_dictionaries({}, optional={"stop_reason": st.just("end_turn")}),
        },
        optional={"usage": st.fixed_dictionaries({"output_tokens": st.integers(0, 9)})},
    ),
    st.just({"type": "message_stop"}),
    st.just({"type": ["unhashable"]}),
)
_responses_event = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                [
                    "response.output_text.delta",
                    "response.refusal.delta",
                    "response.function_call_arguments.delta",
                    "response.reasoning_summary_text.delta",
                    "response.custom_tool_call_input.delta",
                ]
            ),
            "output_index": st.sampled_from([0, 1]),
        },
        optional={"delta": st.one_of(_text, st.just(3))},
    ),
    st.just(
        {"type": "response.output_item.added", "output_index": 1, "item": {"type": "function_call"}}
    ),
    st.just({"type": "response.created", "response": {"model": "gpt-4o"}}),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["response.completed", "response.incomplete"]),
            "response": st.fixed_dictionaries(
                {"status": st.sampled_from(["completed", "incomplete"])},
                optional={"usage": st.just({"input_tokens": 5, "output_tokens": 2})},
            ),
        }
    ),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_anthropic_event, max_size=6))
def test_anthropic_read_gives_what_the_reader_gives(chunks):
    got, want, ours, theirs = read_both("anthropic", chunks)
    assert got == want
    assert ours == theirs


@settings(max_examples=200, deadline=None)
@given(st.lists(_responses_event, max_size=6))
def test_responses_read_gives_what_the_reader_gives(chunks):
    got, want, ours, theirs = read_both("responses", chunks)
    assert got == want
    assert ours == theirs


def test_the_answer_is_assembled_from_the_same_read():
    reader = StreamReader()
    assembler = Assembler("chat")
    for chunk in (
        {"model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"choices": [{"index": 0, "delta": {"content": "Hi"}}, {"index": 1, "text": "Yo"}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{"}}
                        ]
                    },
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]},
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    ):
        assembler.read(reader, chunk)
    first, second = assembler.choices()
    assert (first.text, first.finish_reason) == ("Hi", "tool_calls")
    assert [(c.id, c.name, c.arguments) for c in first.tool_calls] == [("c1", "f", {})]
    assert second.text == "Yo"  # a legacy completion choice's text is the answer too
    assert reader.finish_reason == "tool_calls" and reader.model == "m"


@pytest.mark.parametrize(
    "shape, last",
    [
        ("anthropic", {"type": "message_stop"}),
        ("responses", {"type": "response.completed", "response": {"status": "completed"}}),
    ],
)
def test_the_shapes_last_event_ends_the_read(shape, last):
    assembler = Assembler(shape)
    assembler.read(StreamReader(), {"type": "ping"})
    assert not assembler.ended
    assembler.read(StreamReader(), last)
    assert assembler.ended
    assembler.reset()
    assert not assembler.ended


class Carried(Exception):
    pass


def carrying(checked: List[Any]) -> Any:
    """A check that notes each chunk it is given and raises :class:`Carried`."""

    def check(event: Any) -> None:
        checked.append(event)
        raise Carried

    return check


@pytest.mark.parametrize(
    "shape, chunk",
    [
        ("anthropic", {"type": "error", "error": {"type": "overloaded_error"}}),
        ("responses", {"type": "error", "message": "boom"}),
    ],
)
def test_an_error_event_goes_to_the_check_first_and_raises_at_once(shape, chunk):
    checked: List[Any] = []
    reader = StreamReader()
    with pytest.raises(Carried):
        Assembler(shape, carrying(checked)).read(reader, chunk)
    assert checked == [chunk]
    assert state(reader) == state(StreamReader())  # nothing read before the check


@pytest.mark.parametrize(
    "shape, chunk, finish",
    [
        (
            "chat",
            {
                "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 2},
            },
            "content_filter",
        ),
        (
            "anthropic",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "refusal"},
                "usage": {"output_tokens": 2},
            },
            "refusal",
        ),
        (
            "responses",
            {
                "type": "response.failed",
                "response": {"status": "failed", "usage": {"input_tokens": 7, "output_tokens": 2}},
            },
            "failed",
        ),
        (
            "responses",
            {
                "type": "response.incomplete",
                "response": {
                    "status": "incomplete",
                    "usage": {"input_tokens": 7, "output_tokens": 2},
                },
            },
            "incomplete",
        ),
    ],
)
def test_a_chunk_that_ends_the_answer_early_is_read_and_its_error_held_to_the_end(
    shape, chunk, finish
):
    # The provider bills an answer it stopped: the chunk's usage is read (and any that
    # follows it), and the check's error raised only when the stream ends.
    checked: List[Any] = []
    reader = StreamReader()
    assembler = Assembler(shape, carrying(checked))
    assembler.read(reader, chunk)
    assert checked == [chunk]
    assert reader.finish_reason == finish
    assert reader.completion_tokens == 2
    with pytest.raises(Carried):
        assembler.finish(reader)
    assembler.finish(reader)  # raised once


# ---------------------------------------------------------------------- through the client
def cassette(tmp_path, path: str, events: List[Tuple[str, Any]]) -> str:
    """A cassette of one streamed answer at ``path``: ``(event name or "", data)`` each."""
    body = "".join(
        (f"event: {name}\n" if name else "")
        + f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
        for name, data in events
    )
    interaction = {
        "request": {"method": "POST", "uri": f"http://recorded{path}"},
        "response": {
            "status": {"code": 200},
            "headers": {"content-type": ["text/event-stream"]},
            "body": {"string": body},
        },
    }
    file = tmp_path / "stream.yaml"
    file.write_text(yaml.safe_dump({"version": 1, "interactions": [interaction]}))
    return str(file)


def anthropic_events(*middle: Tuple[str, Any]) -> List[Tuple[str, Any]]:
    start = {
        "type": "message_start",
        "message": {"model": "claude-x", "usage": {"input_tokens": 3}},
    }
    text = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Hi"},
    }
    return [("message_start", start), ("content_block_delta", text), *middle]


def test_anthropic_stream_ends_at_message_stop(tmp_path):
    after = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "X"},
    }
    stop = {"type": "message_stop"}
    path = cassette(tmp_path, "/v1/messages", anthropic_events(("message_stop", stop), ("", after)))
    with LocalLLMServer() as server, local_client(server) as client:
        server.replay(path)
        result = client.stream_with_usage("hi", model="claude-3-5-haiku", retries=0)
        assert result.text == "Hi"  # nothing read past the end
        (streaming,) = recorded(client, "streaming")
        assert streaming.total_chunks == 3


def test_anthropic_error_event_told_by_its_type_raises(tmp_path):
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    path = cassette(tmp_path, "/v1/messages", anthropic_events(("", error)))
    with LocalLLMServer() as server, local_client(server) as client:
        server.replay(path)
        with pytest.raises(ServerError) as caught:
            client.stream_with_usage("hi", model="claude-3-5-haiku", retries=0)
        assert caught.value.status_code == 529 and "busy" in str(caught.value)
        (request,) = recorded(client, "request")
        assert not request.success and request.error_class == "ServerError"


def responses_events(done: Dict[str, Any]) -> List[Tuple[str, Any]]:
    text = {"type": "response.output_text.delta", "output_index": 0, "delta": "Hi"}
    return [("response.output_text.delta", text), (done["type"], done)]


@pytest.mark.parametrize(
    "done, raised",
    [
        ({"type": "response.failed", "response": {"status": "failed"}}, ServerError),
        (
            {
                "type": "response.incomplete",
                "response": {
                    "status": "incomplete",
                    "incomplete_details": {"reason": "content_filter"},
                },
            },
            ContentFilterError,
        ),
        (
            {
                "type": "response.incomplete",
                "response": {
                    "status": "incomplete",
                    "incomplete_details": {"reason": "max_output_tokens"},
                    "usage": {"input_tokens": 4, "output_tokens": 1},
                },
            },
            None,
        ),
    ],
)
def test_responses_stream_ends_as_its_last_event_says(tmp_path, done, raised):
    path = cassette(tmp_path, "/v1/responses", responses_events(done))
    with (
        LocalLLMServer() as server,
        local_client(server, openai_api="responses") as client,
    ):
        server.replay(path)
        if raised is not None:
            with pytest.raises(raised):
                client.stream_with_usage("hi", model="gpt-4o", retries=0)
            return
        result = client.stream_with_usage("hi", model="gpt-4o", retries=0)
        assert (result.text, result.finish_reason) == ("Hi", "length")
        assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (4, 1)


@pytest.mark.allow_internal_errors
def test_a_chunk_that_cannot_be_read_is_counted_and_passed_over(tmp_path):
    chunk = {"model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
    odd = {"choices": [{"index": 0, "delta": {"tool_calls": 5}}]}  # not a list
    events = [("", chunk), ("", odd), ("", chunk), ("", "[DONE]")]
    path = cassette(tmp_path, "/v1/chat/completions", events)
    with LocalLLMServer() as server, local_client(server) as client:
        server.replay(path)
        result = client.stream_with_usage("hi", model="gpt-4o", retries=0)
        assert result.text == "HiHi"
        (streaming,) = recorded(client, "streaming")
        assert streaming.total_chunks == 3 and streaming.status == "completed"
        assert client.metrics_collector.stats().internal_errors == 1


# ---------------------------------------------------------------------- JSON values
def test_json_values_are_the_top_level_values():
    text = 'Here: {"a": 1} and [2, 3], then {bad} {"c": {"d": null}}'
    assert json_values(text) == [{"a": 1}, [2, 3], {"c": {"d": None}}]


def test_a_value_that_does_not_parse_is_passed_over_whole():
    # A stream cut off inside a value: the complete value nested in it is not top-level,
    # and the text is read once (each start is tried from where the last one stopped).
    assert json_values('{"a": {"b": 1}, "c": [') == []
    assert json_values('{"a": {"b": 1}, oops} {"d": 2}') == [{"d": 2}]


def test_json_stream_values_parsed_once_at_the_end(tmp_path):
    pieces = ['{"answer"', ": 1}", " and ", '{"b": [1, 2]', "}"]
    chunks = [
        {"model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces
    ]
    path = cassette(tmp_path, "/v1/chat/completions", [*(("", c) for c in chunks), ("", "[DONE]")])
    with LocalLLMServer() as server, local_client(server) as client:
        server.replay(path)
        result = client.stream_with_usage(
            "hi", model="gpt-4o", response_format="json_object", retries=0
        )
        assert result.json_objects == [{"answer": 1}, {"b": [1, 2]}]
        (streaming,) = recorded(client, "streaming")
        assert streaming.json_objects_found == 2
