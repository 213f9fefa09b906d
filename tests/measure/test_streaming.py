"""track_request on streams: the end-condition matrix, delegation, TTFT and recorded traffic."""

import gc
import json
import time
import types

import pytest
from support.cassettes import stream_chunks
from support.consuming import FORMS

from steer_llm_sdk.observability import TrackedStream


def finished(collector, sink, count=2):
    assert collector.flush(5)
    assert sink.wait_for(count)
    request = sink.of_type("request")
    streaming = sink.of_type("streaming")
    assert len(request) == 1 and len(streaming) == 1, sink.records
    return request[0], streaming[0]


class ChunkIterator:
    """An iterator object (not a generator), like the openai SDK's Stream."""

    def __init__(self, chunks, fail_at=None):
        self.chunks = list(chunks)
        self.fail_at = fail_at
        self.closed = False
        self.position = 0
        self.response = "http-response"

    def __iter__(self):
        return self

    def __next__(self):
        if self.fail_at is not None and self.position == self.fail_at:
            raise ConnectionError("stream dropped")
        if self.position >= len(self.chunks):
            raise StopIteration
        self.position += 1
        return self.chunks[self.position - 1]

    def close(self):
        self.closed = True


def make_source(kind, collector, chunks=("Hel", "lo", " world"), fail_at=None):
    """A tracked stream factory: a generator function or a function returning an iterator."""
    if kind == "generator":

        @collector.track_request("openai", model="gpt-4o")
        def source():
            for position, chunk in enumerate(chunks):
                if position == fail_at:
                    raise ConnectionError("stream dropped")
                yield chunk

        return source, None
    iterator = ChunkIterator(chunks, fail_at)

    @collector.track_request("openai", model="gpt-4o")
    def source():
        return iterator

    return source, iterator


KINDS = ["generator", "iterator"]


@pytest.mark.parametrize("kind", KINDS)
def test_exhausted(make_collector, sink, kind):
    collector = make_collector([sink])
    source, _ = make_source(kind, collector)
    stream = source()
    assert isinstance(stream, TrackedStream)
    assert "".join(stream) == "Hello world"
    request, streaming = finished(collector, sink)
    assert request.method == "stream" and request.success
    assert request.time_to_first_token_ms is not None
    assert request.duration_ms >= request.time_to_first_token_ms
    assert (streaming.status, streaming.total_chunks, streaming.total_chars) == ("completed", 3, 11)
    assert streaming.request_id == request.request_id
    assert streaming.first_chunk_latency_ms is not None
    assert streaming.chunks_per_second > 0


@pytest.mark.parametrize("kind", KINDS)
def test_error(make_collector, sink, kind):
    collector = make_collector([sink])
    source, _ = make_source(kind, collector, fail_at=2)
    received = []
    with pytest.raises(ConnectionError, match="stream dropped"):
        for chunk in source():
            received.append(chunk)
    assert received == ["Hel", "lo"]
    assert collector.flush(5)
    request = sink.of_type("request")[0]
    streaming = sink.of_type("streaming")[0]
    error = sink.of_type("error")[0]
    assert request.success is False and request.error_category == "connection"
    assert streaming.status == "error" and streaming.total_chunks == 2
    assert error.request_id == request.request_id


@pytest.mark.parametrize("kind", KINDS)
def test_close(make_collector, sink, kind):
    collector = make_collector([sink])
    source, iterator = make_source(kind, collector)
    stream = source()
    assert next(stream) == "Hel"
    stream.close()
    _, streaming = finished(collector, sink)
    assert streaming.status == "cancelled" and streaming.total_chunks == 1
    if iterator is not None:
        assert iterator.closed
    stream.close()  # idempotent: nothing recorded twice
    assert collector.flush(5) and len(sink.records) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_break_then_garbage_collected(make_collector, sink, kind):
    collector = make_collector([sink])
    source, iterator = make_source(kind, collector)
    for _chunk in source():
        break
    gc.collect()
    _, streaming = finished(collector, sink)
    assert streaming.status == "cancelled" and streaming.total_chunks == 1
    if iterator is not None:
        assert iterator.closed


@pytest.mark.parametrize("kind", KINDS)
def test_context_manager(make_collector, sink, kind):
    collector = make_collector([sink])
    source, iterator = make_source(kind, collector)
    with source() as stream:
        assert next(stream) == "Hel"
    _, streaming = finished(collector, sink)
    assert streaming.status == "cancelled"
    if iterator is not None:
        assert iterator.closed


@pytest.mark.parametrize("kind", KINDS)
def test_context_manager_exhausted(make_collector, sink, kind):
    collector = make_collector([sink])
    source, _ = make_source(kind, collector)
    with source() as stream:
        assert list(stream) == ["Hel", "lo", " world"]
    _, streaming = finished(collector, sink)
    assert streaming.status == "completed"


@pytest.mark.parametrize("kind", KINDS)
def test_never_iterated_is_recorded_once(make_collector, sink, kind):
    collector = make_collector([sink])
    source, iterator = make_source(kind, collector)
    began = time.perf_counter()
    stream = source()
    del stream
    gc.collect()
    ended = time.perf_counter()
    request, streaming = finished(collector, sink)
    assert streaming.status == "cancelled" and streaming.total_chunks == 0
    # It ends when it is dropped: its duration is the time until then.
    assert 0.0 <= request.duration_ms <= (ended - began) * 1000.0
    if iterator is not None:
        assert iterator.closed


@pytest.mark.parametrize("started", [False, True])
def test_dropped_inside_a_reference_cycle_is_recorded_once(make_collector, sink, started):
    # Collected by the cycle collector, not by reference counting: the watching weak
    # reference must outlive the cycle for its callback to run.
    collector = make_collector([sink])

    @collector.track_request("openai", model="m")
    def chunks():
        yield from "abc"

    holder = {"stream": chunks()}
    holder["self"] = holder
    if started:
        next(holder["stream"])
    del holder
    gc.collect()
    _, streaming = finished(collector, sink)
    assert streaming.status == "cancelled"
    assert streaming.total_chunks == (1 if started else 0)


def test_send_and_throw_are_delegated(make_collector, sink):
    collector = make_collector([sink])

    @collector.track_request("openai", model="m")
    def echo():
        received = yield "ready"
        while True:
            try:
                received = yield f"got {received}"
            except ValueError:
                received = yield "handled"

    stream = echo()
    assert next(stream) == "ready"
    assert stream.send("a") == "got a"
    assert stream.throw(ValueError("x")) == "handled"
    assert stream.send("b") == "got b"
    stream.close()
    _, streaming = finished(collector, sink)
    assert streaming.total_chunks == 4 and streaming.status == "cancelled"


def test_send_that_ends_the_generator_returns_its_value(make_collector, sink):
    collector = make_collector([sink])

    @collector.track_request("openai", model="m")
    def until_stop():
        while (yield "more?") != "stop":
            pass
        return "stopped"

    stream = until_stop()
    assert next(stream) == "more?"
    assert stream.send("go") == "more?"
    assert next(stream) == "more?"  # back on the generator after an answer to send()
    with pytest.raises(StopIteration) as info:
        stream.send("stop")
    assert info.value.value == "stopped"
    _, streaming = finished(collector, sink)
    assert streaming.status == "completed" and streaming.total_chunks == 3


class Echo(ChunkIterator):
    """An iterator object with send() and throw(), not a generator."""

    def send(self, value):
        if value == "end":
            raise StopIteration("ended by send")
        return f"got {value}"

    def throw(self, exc):
        return f"caught {type(exc).__name__}"


def test_send_and_throw_reach_an_iterator_object_that_has_them(make_collector, sink):
    collector = make_collector([sink])
    echo = Echo(["a", "b", "c"])
    stream = collector.track_request("openai", model="m", stream=True)(lambda: echo)()
    assert next(stream) == "a"
    assert stream.send(1) == "got 1"
    assert stream.throw(KeyError("k")) == "caught KeyError"
    assert next(stream) == "b"
    with pytest.raises(StopIteration) as info:
        stream.send("end")
    assert info.value.value == "ended by send"
    request, streaming = finished(collector, sink)
    assert streaming.status == "completed" and streaming.total_chunks == 4
    yielded = ["a", "got 1", "caught KeyError", "b"]
    assert request.success and streaming.total_chars == sum(map(len, yielded))


def test_send_and_throw_into_an_iterator_without_them(make_collector, sink):
    # As a plain loop over the iterator would: a value sent is dropped and the next item
    # read; an exception thrown is raised to the consumer and ends the stream.
    collector = make_collector([sink])
    source, iterator = make_source("iterator", collector, chunks="abcd")
    stream = source()
    assert next(stream) == "a"
    assert stream.send("dropped") == "b"
    with pytest.raises(KeyError):
        stream.throw(KeyError("k"))
    request, streaming = finished(collector, sink)
    assert streaming.status == "error" and streaming.total_chunks == 2
    assert not request.success and request.error_class == "KeyError"
    assert iterator.closed


def test_generator_return_value_is_kept(make_collector, sink):
    collector = make_collector([sink])

    @collector.track_request("openai", model="m")
    def gen():
        yield "x"
        return "done"

    def consumer():
        return (yield from gen())

    outer = consumer()
    assert next(outer) == "x"
    with pytest.raises(StopIteration) as info:
        next(outer)
    assert info.value.value == "done"


def test_attributes_of_wrapped_stream_are_reachable(make_collector, sink):
    collector = make_collector([sink])
    source, _ = make_source("iterator", collector)
    stream = source()
    assert stream.response == "http-response"
    list(stream)


def test_stream_records_carry_context_attributes(make_collector, sink):
    from steer_llm_sdk.observability import metrics_context

    collector = make_collector([sink])
    source, _ = make_source("generator", collector)
    with metrics_context(tenant="acme"):
        stream = source()
    list(stream)
    request, streaming = finished(collector, sink)
    assert request.attributes == {"tenant": "acme"} == streaming.attributes


def test_streaming_metrics_can_be_switched_off(make_collector, sink):
    collector = make_collector([sink], enable_streaming_metrics=False)
    source, _ = make_source("generator", collector)
    list(source())
    assert collector.flush(5)
    assert [r.metric_type for r in sink.records] == ["request"]


def test_json_objects_counted_incrementally(make_collector, sink):
    collector = make_collector([sink])
    pieces = ['{"a": 1', ', "b": "}{"}', '\n{"c": [1, {"d": 2}]}', " [1,", "2]"]

    @collector.track_request("openai", model="m", response_format="json_object")
    def gen():
        yield from pieces

    assert "".join(gen()) == "".join(pieces)
    _, streaming = finished(collector, sink)
    assert streaming.json_objects_found == 3


# ------------------------------------------------------------------ recorded provider traffic


def test_openai_recorded_stream_with_usage(make_collector, sink):
    chunks = stream_chunks("openai_chat_stream_include_usage.yaml")
    final = chunks[-1]
    assert final["choices"] == [] and final["usage"]

    collector = make_collector([sink])

    @collector.track_request("openai", model="gpt-4")
    def replay():
        yield from chunks

    list(replay())
    request, streaming = finished(collector, sink)
    usage = final["usage"]
    assert request.prompt_tokens == usage["prompt_tokens"]
    assert request.completion_tokens == usage["completion_tokens"]
    assert request.total_tokens == usage["total_tokens"]
    assert request.response_model == chunks[0]["model"]
    assert streaming.aggregation_method == "provider"
    assert streaming.aggregation_confidence == 1.0
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert streaming.total_chars == len(text)
    assert streaming.total_chunks == len(chunks)


def test_openai_role_only_first_chunk_is_not_a_token(make_collector, sink):
    chunks = stream_chunks("openai_chat_stream_include_usage.yaml")
    assert chunks[0]["choices"][0]["delta"]["content"] == ""
    collector = make_collector([sink])
    marks = []

    @collector.track_request("openai", model="gpt-4")
    def replay():
        for chunk in chunks:
            marks.append(chunk)
            yield chunk

    stream = replay()
    next(stream)  # role-only chunk: no token yet
    time.sleep(0.02)  # not synchronisation: a gap the TTFT must include
    list(stream)
    request, streaming = finished(collector, sink)
    assert request.time_to_first_token_ms - streaming.first_chunk_latency_ms >= 15


def test_openai_recorded_stream_without_usage(make_collector, sink):
    chunks = stream_chunks("openai_chat_stream_no_usage.yaml")
    assert all(not c.get("usage") for c in chunks)
    collector = make_collector([sink])

    @collector.track_request("openai", model="gpt-4")
    def replay():
        yield from chunks

    list(replay())
    request, streaming = finished(collector, sink)
    assert request.prompt_tokens is None and request.completion_tokens is None
    assert streaming.aggregation_method == "none" and streaming.aggregation_confidence == 0.0


def test_anthropic_recorded_stream_takes_running_total(make_collector, sink):
    events = stream_chunks("anthropic_messages_stream.yaml")
    start = [e for e in events if e["type"] == "message_start"][0]["message"]["usage"]
    deltas = [e for e in events if e["type"] == "message_delta"]
    collector = make_collector([sink])

    @collector.track_request("anthropic", model="claude-3-5-haiku")
    def replay():
        yield from events

    list(replay())
    request, streaming = finished(collector, sink)
    expected_prompt = (
        start["input_tokens"]
        + (start.get("cache_read_input_tokens") or 0)
        + (start.get("cache_creation_input_tokens") or 0)
    )
    assert request.prompt_tokens == expected_prompt
    assert request.completion_tokens == deltas[-1]["usage"]["output_tokens"]
    assert request.total_tokens == expected_prompt + deltas[-1]["usage"]["output_tokens"]
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert streaming.total_chars == len(text)
    assert request.response_model == json.loads(json.dumps(events[0]))["message"]["model"]


def test_closing_a_metered_stream_early_leaves_no_reference_cycle():
    # The meter re-raises close()'s GeneratorExit where the items are taken; an exception
    # kept by the frame that raised it would make a cycle per early close, left to the
    # garbage collector (which SDK streams and request threads then pay for). Only what the
    # collector finds of the meter's own frames counts: other threads make garbage too.
    from steer_llm_sdk.observability.measure import stream

    codes = {f.__code__ for f in vars(stream).values() if isinstance(f, types.FunctionType)}
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            metered = stream.StreamMeter().measure(iter(["a"] * 10))
            next(metered)
            metered.close()
        del metered
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [o for o in gc.garbage if type(o) is types.FrameType and o.f_code in codes]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []


class _CleanupFailed(Exception):
    pass


def _failing_cleanup_source(kind, collector):
    """A tracked stream whose own cleanup raises ``_CleanupFailed`` when it is closed: a
    generator with a raising ``finally``, or an iterator whose ``close()`` raises."""
    if kind == "generator":

        @collector.track_request("openai", model="gpt-4o")
        def source():
            try:
                yield from ("Hel", "lo")
            finally:
                raise _CleanupFailed("cleanup")

        return source

    class Closing(ChunkIterator):
        def close(self):
            raise _CleanupFailed("cleanup")

    @collector.track_request("openai", model="gpt-4o")
    def returning():
        return Closing(["Hel", "lo"])

    return returning


@pytest.mark.parametrize("way", ["close", "with"])
@pytest.mark.parametrize("kind", KINDS)
def test_an_error_of_the_stream_s_own_cleanup_reaches_whoever_closes_it(
    make_collector, sink, kind, way
):
    """As closing the source itself would raise it: ``close()`` or the end of a ``with``
    block gives the caller its own exception, and the call is recorded once, failed."""
    collector = make_collector([sink])
    stream = _failing_cleanup_source(kind, collector)()
    assert next(stream) == "Hel"
    with pytest.raises(_CleanupFailed, match="cleanup"):
        if way == "close":
            stream.close()
        else:
            with stream:
                pass
    request, streaming = finished(collector, sink, count=3)
    assert request.error_class == "_CleanupFailed" and streaming.status == "error"


@pytest.mark.parametrize("kind", KINDS)
def test_a_dropped_stream_s_failing_cleanup_is_not_reported_to_anyone(make_collector, sink, kind):
    """Dropped half read, the stream is closed by the collector: its cleanup's error has no
    one to reach and is dropped; the call is recorded once, cancelled."""
    collector = make_collector([sink])
    stream = _failing_cleanup_source(kind, collector)()
    assert next(stream) == "Hel"
    del stream
    gc.collect()
    _, streaming = finished(collector, sink)
    assert streaming.status == "cancelled"


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("kind", KINDS)
def test_each_way_of_consuming_a_stream_whose_cleanup_fails(make_collector, sink, kind, form):
    """Every way users consume a stream, over a source whose cleanup raises: the caller gets
    that exception where the source alone would give it (a generator's ``finally`` runs at
    its end too; an iterator's ``close()`` only when closed), and the call is recorded once:
    failed with it then, cancelled when the stream was left without a close."""
    consume, full = FORMS[form]
    collector = make_collector([sink])
    source = _failing_cleanup_source(kind, collector)
    raises = form == "next_then_close" or (kind == "generator" and full)
    if raises:
        with pytest.raises(_CleanupFailed, match="cleanup"):
            consume(source)
    else:
        assert consume(source)
    gc.collect()  # a stream left half read ends when collected
    assert collector.flush(5)
    (request,) = sink.of_type("request")
    (streaming,) = sink.of_type("streaming")
    if raises:
        assert request.error_class == "_CleanupFailed" and streaming.status == "error"
    else:
        assert streaming.status in ("completed", "cancelled") and request.success
