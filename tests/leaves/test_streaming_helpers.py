"""Pure streaming helpers: usage extraction, SSE decoding, incremental JSON counting."""

import json
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st
from support.cassettes import response_body, stream_chunks

from steer_llm_sdk.streaming import (
    JsonObjectCounter,
    SSEDecoder,
    StreamUsage,
    extract_model,
    extract_usage,
)


def test_extract_usage_openai_recorded_nonstream():
    body = json.loads(response_body("openai_chat_nonstream.yaml"))
    usage = extract_usage(body)
    reported = body["usage"]
    assert usage.prompt_tokens == reported["prompt_tokens"]
    assert usage.completion_tokens == reported["completion_tokens"]
    assert usage.total_tokens == reported["total_tokens"]
    assert usage.cached_tokens == reported["prompt_tokens_details"]["cached_tokens"]
    assert extract_model(body) == body["model"]


def test_extract_usage_shapes():
    anthropic = SimpleNamespace(
        usage=SimpleNamespace(
            input_tokens=3,
            output_tokens=4,
            cache_read_input_tokens=10,
            cache_creation_input_tokens=None,
        )
    )
    assert tuple(extract_usage(anthropic)) == (13, 4, 17, 10, None, None)
    writes = {
        "usage": {
            "input_tokens": 3,
            "output_tokens": 4,
            "cache_read_input_tokens": 10,
            "cache_creation_input_tokens": 20,
        }
    }
    assert tuple(extract_usage(writes)) == (33, 4, 37, 10, None, 20)
    chat = {
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 30,
            "completion_tokens_details": {"reasoning_tokens": 24},
        }
    }
    assert extract_usage(chat).reasoning_tokens == 24
    responses_api = {
        "usage": {
            "input_tokens": 20,
            "output_tokens": 5,
            "input_tokens_details": {"cached_tokens": 8},
        }
    }
    assert tuple(extract_usage(responses_api)) == (20, 5, 25, 8, None, None)
    responses_api["usage"]["output_tokens_details"] = {"reasoning_tokens": 3}
    assert extract_usage(responses_api).reasoning_tokens == 3
    assert extract_usage({"usage": None}) is None
    assert extract_usage(object()) is None
    assert extract_usage({"usage": {"prompt_tokens": True}}) is None


def test_stream_usage_anthropic_running_total_is_taken_not_added():
    usage = StreamUsage()
    usage.observe(
        {
            "type": "message_start",
            "message": {"model": "claude", "usage": {"input_tokens": 12, "output_tokens": 1}},
        }
    )
    assert (
        usage.observe(
            {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}}
        )
        == "Hi"
    )
    usage.observe(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 5},
        }
    )
    usage.observe({"type": "message_delta", "usage": {"output_tokens": 9}})
    assert tuple(usage.usage()) == (12, 9, 21, None, None, None)
    assert usage.model == "claude" and usage.finish_reason == "end_turn"


def test_stream_usage_openai_chunks_recorded():
    usage = StreamUsage()
    texts = [usage.observe(c) for c in stream_chunks("openai_chat_stream_include_usage.yaml")]
    assert texts[0] == ""  # role-only first chunk
    assert usage.finish_reason == "stop"
    assert usage.usage() is not None
    assert "".join(texts).startswith('"This is a test')


def test_sse_decoder_line_rules():
    decoder = SSEDecoder()
    events = decoder.feed(": keep-alive\r\nevent: ping\r\ndata: a\r\ndata:  b\r\n\r\n")
    assert [(e.event, e.data) for e in events] == [("ping", "a\n b")]
    events = decoder.feed("id: 7\rretry: 10\rdata: x\r\r")
    assert (events[0].id, events[0].retry, events[0].event) == ("7", 10, "message")
    assert decoder.feed("event: only\n\n") == []  # no data: nothing dispatched
    decoder.feed("data: unterminated")
    assert decoder.close() == []


sse_text = response_body("anthropic_messages_stream.yaml")


@given(st.lists(st.integers(0, len(sse_text)), max_size=20))
def test_sse_decoder_is_independent_of_read_boundaries(cuts):
    whole = SSEDecoder().feed(sse_text)
    decoder = SSEDecoder()
    events = []
    points = sorted(set(cuts))
    for start, end in zip([0] + points, points + [len(sse_text)]):
        events.extend(decoder.feed(sse_text[start:end]))
    assert events == whole and len(whole) > 5


@given(
    st.lists(st.integers(0, 10), max_size=6).map(
        lambda shape: (
            json.dumps([{"k": '}\\"{' * n, "v": [n, {"x": "]"}]} for n in shape])[1:-1]
            if shape
            else ""
        )
    ),
    st.lists(st.integers(0, 400), max_size=15),
)
def test_json_counter_same_count_for_any_split(text, cuts):
    expected = JsonObjectCounter()
    expected.feed(text)
    counter = JsonObjectCounter()
    points = sorted(set(min(c, len(text)) for c in cuts))
    for start, end in zip([0] + points, points + [len(text)]):
        counter.feed(text[start:end])
    assert counter.count == expected.count == text.count('"k"')


def test_json_counter_basics():
    counter = JsonObjectCounter()
    assert counter.feed('{"a": "{not}"} [1, 2] ') == 2
    assert counter.feed('{"b": "\\"}"') == 0
    assert counter.feed("}") == 1
    assert counter.feed("]]]") == 0 and counter.count == 3
