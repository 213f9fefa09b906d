"""The measured call, pattern by pattern: a generated matrix of every way of measuring a call
(the entries), every way of consuming what it returns (the consumption forms) and every API
shape, each cell replaying one recorded exchange through the official SDK (or SteerLLMClient)
to the local server and checking the records against what the exchange says.

An entry is an inner call (the SDK uninstrumented, the SDK under ``instrument()``, an SDK
stream helper under ``instrument()``, SteerLLMClient) inside an outer form (nothing, a
decorated function, a decorated generator function delegating with ``yield from`` or a
``for`` loop, one yielding only the text of the items, ``with track_request() as m``).
Combinations that are not a program anyone can write are left out (:func:`_left_out` says
why); forms a combination cannot take are skipped with the reason (:func:`_cannot`).

Each cell expects exactly one RequestMetrics per measured call (a ``with track_request()``
block is one call, whatever it streams) and, for a stream, exactly one StreamingMetrics with
the status of how it ended, the items the outermost measured stream delivered, their content
characters, the provider's usage once the stream was read to its end, and the times to the
first chunk and the first content.
"""

import gc
import itertools
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import pytest
from support import spawn
from support.consuming import on_thread
from support.corpus import SDK_WARNINGS, corpus_required
from support.matrix import (
    CLIENT_API,
    FAMILY,
    HELPER_FINAL,
    SHAPES,
    client_call,
    helper_call,
    helper_chunk,
    helper_text,
    item_text,
    one_interaction,
    pick_exchanges,
    sdk_call,
    synthetic_completions,
)
from support.sdk_clients import close_clients, local_sdk_clients, official_sdks

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.observability import MetricsConfig, instrument, track_request, uninstrument
from steer_llm_sdk.reliability import RetryPolicy
from steer_llm_sdk.testing import LocalLLMServer, capture_metrics

pytestmark = SDK_WARNINGS

openai, anthropic, genai, boto3 = official_sdks()

CONFIG = MetricsConfig(flush_on_exit=False, enable_cost_tracking=False)
#: Items the partial forms take before they stop.
K = 2
#: Bound of every wait on a thread.
JOIN = 10.0

INNERS = ("sdk", "instrumented", "helper", "client")
OUTERS = (
    "none",
    "function",
    "generator_yield_from",
    "generator_for",
    "text_generator",
    "context_manager",
)
GENERATORS = ("generator_yield_from", "generator_for", "text_generator")


class Boom(Exception):
    """The consumer's exception: raised in its loop body, or thrown into the stream."""


class Impossible(Exception):
    """The cell's objects cannot take the form (found only once they exist)."""


class Seen:
    """What the consumer received: one list of items per stream, and whether a partial form
    found the stream shorter than it wanted."""

    def __init__(self) -> None:
        self.streams: List[List[Any]] = []
        self.short = False

    def new(self) -> List[Any]:
        self.streams.append([])
        return self.streams[-1]


# ---------------------------------------------------------------------- consumption forms


class Form(NamedTuple):
    kind: str  # "iterator", "helper" (a stream helper's manager) or "blocking"
    full: bool  # read to the end (else stopped after K items)
    run: Callable[[Callable[[], Any], Seen], None]
    calls: int  # measured calls the form makes
    raises: bool  # Boom comes out of the form
    ends: str  # the status of the stream: completed, cancelled or error


FORMS: Dict[str, Form] = {}


def form(
    kind: str, full: bool, calls: int = 1, raises: bool = False, ends: str = ""
) -> Callable[[Any], Any]:
    def register(run: Callable[[Callable[[], Any], Seen], None]) -> Any:
        status = ends or ("completed" if full else "cancelled")
        FORMS[run.__name__] = Form(kind, full, run, calls, raises, status)
        return run

    return register


@form("iterator", full=True)
def inline(make: Callable[[], Any], seen: Seen) -> None:
    got = seen.new()
    for item in make():  # the call in the for statement: nothing else holds the stream
        got.append(item)


@form("iterator", full=True)
def assigned(make: Callable[[], Any], seen: Seen) -> None:
    got = seen.new()
    stream = make()
    for item in stream:
        got.append(item)


@form("iterator", full=True)
def with_block(make: Callable[[], Any], seen: Seen) -> None:
    got = seen.new()
    with make() as stream:
        for item in stream:
            got.append(item)


@form("iterator", full=True)
def to_list(make: Callable[[], Any], seen: Seen) -> None:
    seen.streams.append(list(make()))


def _take(iterator: Any, got: List[Any], seen: Seen) -> None:
    for _ in range(K):
        try:
            got.append(next(iterator))
        except StopIteration:
            seen.short = True
            return


@form("iterator", full=False)
def next_then_close(make: Callable[[], Any], seen: Seen) -> None:
    got = seen.new()
    stream = make()
    _take(iter(stream), got, seen)
    stream.close()


@form("iterator", full=False)
def break_early(make: Callable[[], Any], seen: Seen) -> None:
    got = seen.new()
    for item in make():
        got.append(item)
        if len(got) == K:
            break
    else:
        seen.short = True


@form("iterator", full=False, raises=True)
def raise_in_body(make: Callable[[], Any], seen: Seen) -> None:
    got = seen.new()
    for item in make():
        got.append(item)
        if len(got) == K:
            raise Boom
    seen.short = True


@form("iterator", full=False)
def abandon(make: Callable[[], Any], seen: Seen) -> None:
    got = seen.new()
    stream = make()
    iterator = iter(stream)
    _take(iterator, got, seen)
    del stream, iterator
    gc.collect()


@form("iterator", full=False, raises=True, ends="error")
def throw_in(make: Callable[[], Any], seen: Seen) -> None:
    """Boom thrown into the stream at its K-th item: it comes out through the stream."""
    got = seen.new()
    iterator = iter(make())
    throw = getattr(iterator, "throw", None)
    if throw is None:
        raise Impossible(f"{type(iterator).__name__} has no throw()")
    _take(iterator, got, seen)
    if not seen.short:
        throw(Boom())


@form("iterator", full=True)
def other_thread(make: Callable[[], Any], seen: Seen) -> None:
    got = seen.new()
    stream = make()
    on_thread(lambda: got.extend(stream), JOIN)


@form("iterator", full=True, calls=2)
def interleaved(make: Callable[[], Any], seen: Seen) -> None:
    first, second = make(), make()
    pending = [(iter(first), seen.new()), (iter(second), seen.new())]
    while pending:
        for entry in list(pending):
            try:
                entry[1].append(next(entry[0]))
            except StopIteration:
                pending.remove(entry)


@form("iterator", full=True)
def delegated(make: Callable[[], Any], seen: Seen) -> None:
    def plain() -> Any:  # an untracked generator between the stream and the consumer
        yield from make()

    got = seen.new()
    for item in plain():
        got.append(item)


# A stream helper is a context manager; these forms open it and consume what it yields.


@form("helper", full=True)
def helper_iterate(make: Callable[[], Any], seen: Seen) -> None:
    got = seen.new()
    with make() as stream:
        for event in stream:
            got.append(event)


@form("helper", full=True)
def helper_final(make: Callable[[], Any], seen: Seen) -> None:
    seen.new()
    with make() as stream:
        for name in HELPER_FINAL.values():
            if hasattr(stream, name):
                getattr(stream, name)()
                return
        raise Impossible("the helper has no get_final_* method")


@form("helper", full=True)
def helper_until_done(make: Callable[[], Any], seen: Seen) -> None:
    seen.new()
    with make() as stream:
        stream.until_done()


@form("helper", full=True)
def helper_text_stream(make: Callable[[], Any], seen: Seen) -> None:
    got = seen.new()
    with make() as stream:
        if not hasattr(stream, "text_stream"):
            raise Impossible(f"{type(stream).__name__} has no text_stream")
        for text in stream.text_stream:
            got.append(text)


@form("helper", full=True)
def helper_thread(make: Callable[[], Any], seen: Seen) -> None:
    got = seen.new()
    with make() as stream:
        on_thread(lambda: got.extend(stream), JOIN)


@form("helper", full=False)
def helper_break(make: Callable[[], Any], seen: Seen) -> None:
    got = seen.new()
    with make() as stream:
        for event in stream:
            got.append(event)
            if len(got) == K:
                break
        else:
            seen.short = True


@form("helper", full=False, raises=True)
def helper_raise(make: Callable[[], Any], seen: Seen) -> None:
    got = seen.new()
    with make() as stream:
        for event in stream:
            got.append(event)
            if len(got) == K:
                raise Boom
        seen.short = True


@form("helper", full=False)
def helper_next_then_exit(make: Callable[[], Any], seen: Seen) -> None:
    got = seen.new()
    with make() as stream:
        _take(iter(stream), got, seen)


@form("blocking", full=True)
def call(make: Callable[[], Any], seen: Seen) -> None:
    seen.new().append(make())


# ---------------------------------------------------------------------- the cells


class Cell(NamedTuple):
    shape: str
    inner: str
    outer: str
    form: str

    @property
    def streamed(self) -> bool:
        return bool(SHAPES[self.shape][1])

    @property
    def kind(self) -> str:
        """The kind of object the consumer holds (which forms apply)."""
        if not self.streamed:
            return "blocking"
        if self.inner == "helper" and self.outer in ("none", "context_manager"):
            return "helper"
        return "iterator"

    @property
    def id(self) -> str:
        return "-".join(self)


def _left_out(shape: str, inner: str, outer: str) -> Optional[str]:
    """Why an entry (inner call in outer form, for a shape) is no program, or None."""
    streamed = SHAPES[shape][1]
    if inner == "sdk" and outer == "none":
        return "nothing measures an uninstrumented SDK call"
    if inner == "sdk" and outer == "context_manager" and streamed:
        return "nothing reads an uninstrumented stream inside `with track_request()`"
    if inner == "helper" and shape not in HELPER_FINAL:
        return "the SDK has no stream helper for this API"
    if inner == "helper" and outer == "function":
        return "a function returning a helper's manager returns no stream"
    if inner == "client" and shape not in CLIENT_API:
        return "SteerLLMClient does not speak this API"
    if not streamed and outer in GENERATORS:
        return "a blocking call is no stream to yield from"
    return None


def _sdk_stream_is_context_manager(shape: str) -> bool:
    import types

    from botocore.eventstream import EventStream

    kinds = {"gemini": types.GeneratorType, "converse": EventStream, "messages": anthropic.Stream}
    return hasattr(kinds.get(shape, openai.Stream), "__enter__")


def _cannot(cell: Cell) -> Optional[str]:
    """Why a cell's consumer cannot take its form, or None."""
    if cell.form != "with_block":
        return None
    if cell.outer in GENERATORS:
        return "a generator is not a context manager"
    sdk_stream = cell.inner == "instrumented" and cell.outer in ("none", "context_manager")
    if sdk_stream and not _sdk_stream_is_context_manager(cell.shape):
        return "the SDK's stream is not a context manager"
    return None


def _cells() -> List[Any]:
    cells = []
    for shape, inner, outer, name in itertools.product(SHAPES, INNERS, OUTERS, FORMS):
        if _left_out(shape, inner, outer) is not None:
            continue
        cell = Cell(shape, inner, outer, name)
        if FORMS[name].kind != cell.kind:
            continue  # the form is for another kind of object
        reason = _cannot(cell)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        cells.append(pytest.param(cell, id=cell.id, marks=marks))
    return cells


CELLS = _cells()


# ---------------------------------------------------------------------- the environment


class Env:
    """The module's server, clients, recorded exchanges (one cassette each) and, per shape,
    the items the SDK's stream delivers unmeasured."""

    def __init__(self, server: LocalLLMServer, folder: Path) -> None:
        self.server = server
        self.clients = local_sdk_clients(server.url)
        # No metrics configuration: the clients record into the default collector, which
        # capture_metrics() swaps for each cell like every other entry's records.
        self.steer = {
            api: SteerLLMClient(
                openai_base_url=server.openai_base_url,
                anthropic_base_url=server.anthropic_base_url,
                openai_api_key="test",
                anthropic_api_key="test",
                environ={},
                retry_policy=RetryPolicy(max_attempts=1),
                openai_api=api,
            )
            for api in set(CLIENT_API.values())
        }
        self.exchanges = pick_exchanges()
        self.exchanges["completions"] = synthetic_completions(folder)
        self.cassettes = {
            name: one_interaction(exchange, folder, name)
            for name, exchange in self.exchanges.items()
        }
        self.raw: Dict[str, List[Any]] = {}

    def exchange(self, shape: str) -> Any:
        found = self.exchanges.get(shape)
        if found is None:
            pytest.skip(f"no usable recorded {shape} exchange (is the corpus there?)")
        return found

    def model(self, shape: str) -> str:
        return self.exchange(shape).model or "model"

    def queue(self, shape: str, times: int) -> None:
        for _ in range(times):
            self.server.replay(self.cassettes[shape])

    def raw_items(self, shape: str) -> List[Any]:
        """The items the uninstrumented SDK stream delivers (read once)."""
        if shape not in self.raw:
            uninstrument()
            self.queue(shape, 1)
            try:
                self.raw[shape] = list(sdk_call(shape, self.clients, self.model(shape))())
            finally:
                self.server._replays.clear()
        return self.raw[shape]

    def validated(self, shape: str) -> bool:
        """Whether our per-item text agrees with the corpus' oracle on the whole stream (so
        that it can say what a part of the stream holds)."""
        chars = self.exchange(shape).expected()[1]
        got = sum(len(item_text(shape, item)) for item in self.raw_items(shape))
        return chars is not None and got == chars


ALL_SHAPES_NEED_CORPUS = [s for s in SHAPES if s != "completions"]


@pytest.fixture(scope="module")
def env(module_server: LocalLLMServer, tmp_path_factory: Any) -> Any:
    made = Env(module_server, tmp_path_factory.mktemp("matrix"))
    missing = [s for s in ALL_SHAPES_NEED_CORPUS if s not in made.exchanges]
    if missing and corpus_required():
        raise RuntimeError(f"the recorded corpus has no usable exchange for {missing}")
    try:
        yield made
    finally:
        for client in made.steer.values():
            client.close()
        close_clients(*made.clients.values())
        uninstrument()


# ---------------------------------------------------------------------- running a cell


def _producer(cell: Cell, env: Env) -> Callable[[], Any]:
    """What the consumer calls: it returns the stream (or helper manager, or response)."""
    shape, inner, outer = cell.shape, cell.inner, cell.outer
    model = env.model(shape)
    if inner == "helper":
        source = helper_call(shape, env.clients, model)
    elif inner == "client":
        source = client_call(shape, env.steer, model)
    else:
        source = sdk_call(shape, env.clients, model)
    if outer in ("none", "context_manager"):
        return source
    tracker = track_request(FAMILY[shape], model=model, stream=cell.streamed)
    if outer == "function":
        return tracker(source)
    return _generator(cell, source, track_request(FAMILY[shape], model=model))


def _generator(cell: Cell, source: Callable[[], Any], tracker: Any) -> Callable[[], Any]:
    """A tracked generator function of the cell's outer form over ``source``'s items."""
    if cell.inner == "helper":

        def items() -> Any:  # the helper opened and read inside the generator's body
            with source() as stream:
                yield from stream

        text_of: Callable[[Any], str] = helper_text
    else:
        items = source

        def text_of(item: Any) -> str:
            return item_text(cell.shape, item)

    if cell.outer == "generator_yield_from":

        @tracker
        def delegating() -> Any:
            yield from items()

        return delegating
    if cell.outer == "generator_for":

        @tracker
        def looping() -> Any:
            for item in items():  # noqa: UP028 - the for-loop form is the point
                yield item

        return looping

    @tracker
    def texts() -> Any:
        for item in items():
            text = text_of(item)
            if text:
                yield text

    return texts


def _run(cell: Cell, env: Env, seen: Seen) -> bool:
    """Run the cell's code; whether Boom came out of it."""
    make = _producer(cell, env)
    run = FORMS[cell.form].run
    try:
        if cell.outer != "context_manager":
            run(make, seen)
        else:
            with track_request(FAMILY[cell.shape], model=env.model(cell.shape)) as metrics:
                if cell.inner == "sdk":  # blocking: the user hands the response over
                    response = make()
                    seen.new().append(response)
                    metrics.set_response(response)
                else:
                    run(make, seen)
    except Boom:
        return True
    return False


@pytest.mark.parametrize("cell", CELLS)
def test_cell(cell: Cell, env: Env) -> None:
    env.exchange(cell.shape)
    if cell.streamed:
        env.raw_items(cell.shape)  # the baseline, read before anything is measured
    form_ = FORMS[cell.form]
    env.queue(cell.shape, form_.calls)
    if cell.inner in ("instrumented", "helper"):
        instrument()
    else:
        uninstrument()
    seen = Seen()
    try:
        with capture_metrics(CONFIG) as sink:
            try:
                raised = _run(cell, env, seen)
            except Impossible as exc:
                pytest.skip(str(exc))
    finally:
        uninstrument()
        env.server._replays.clear()
    if seen.short:
        pytest.skip(f"the stream delivers fewer than {K} items here: no partial reading")
    requests = sink.get_metrics(metric_type="request")
    streams = sink.get_metrics(metric_type="streaming")
    problems = Checker(cell, env, seen, raised).check(requests, streams)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------- the expectations


class Checker:
    """What a cell's records must say, as a list of the problems found."""

    def __init__(self, cell: Cell, env: Env, seen: Seen, raised: bool) -> None:
        self.cell, self.env, self.seen, self.raised = cell, env, seen, raised
        self.form = FORMS[cell.form]
        self.exchange = env.exchange(cell.shape)
        self.usage, self.chars = self.exchange.expected()
        self.problems: List[str] = []

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            self.problems.append(what)

    def check(self, requests: List[Any], streams: List[Any]) -> List[str]:
        cell = self.cell
        self.expect(self.raised == self.form.raises, f"Boom raised: {self.raised}")
        if cell.outer == "context_manager":
            self.check_block(requests, streams)
        elif not cell.streamed:
            self.check_blocking(requests, streams)
        else:
            self.check_streams(requests, streams)
        return self.problems

    # -------------------------------------------------------------- usage
    def has_usage_source(self) -> bool:
        """Whether anything in the cell reads the provider's usage: a joined call, or the
        owner's own items when they are the SDK's chunks."""
        return self.cell.inner != "sdk" or self.cell.outer != "text_generator"

    def check_tokens(self, record: Any, times: int = 1) -> None:
        if not (self.form.full and self.has_usage_source()):
            return
        want = tuple(None if v is None else v * times for v in self.usage)
        got = (record.prompt_tokens, record.completion_tokens, record.cached_tokens)
        self.expect(got == want, f"tokens (prompt, completion, cached) {got}, expected {want}")

    # -------------------------------------------------------------- the three kinds
    def check_blocking(self, requests: List[Any], streams: List[Any]) -> None:
        self.expect(len(requests) == 1, f"{len(requests)} RequestMetrics, expected 1")
        self.expect(not streams, f"{len(streams)} StreamingMetrics for a blocking call")
        for record in requests[:1]:
            self.expect(record.success, f"success={record.success} ({record.error_class})")
            self.expect(record.method == "generate", f"method={record.method}")
            self.check_tokens(record)

    def check_block(self, requests: List[Any], streams: List[Any]) -> None:
        """``with track_request() as m``: one call, whatever ran inside; it failed when Boom
        left the block."""
        self.expect(len(requests) == 1, f"{len(requests)} RequestMetrics, expected 1")
        self.expect(len(streams) <= 1, f"{len(streams)} StreamingMetrics, expected at most 1")
        for record in requests[:1]:
            self.expect(
                record.success is not self.raised,
                f"success={record.success} ({record.error_class}); Boom left the block: "
                f"{self.raised}",
            )
            if self.raised:
                self.expect(record.error_class == "Boom", f"error_class={record.error_class}")
            self.check_tokens(record, times=self.form.calls)
        if not self.cell.streamed or self.cell.inner == "sdk":
            return  # nothing in the block measures a stream
        # The block is recorded as the stream its joined call measured: as that call would
        # be on its own, read the same way.
        self.expect(len(streams) == 1, f"{len(streams)} StreamingMetrics, expected 1")
        if len(requests) != 1 or len(streams) != 1:
            return
        record, streaming = requests[0], streams[0]
        self.expect(record.method == "stream", f"method={record.method}")
        alone = Checker(self.cell._replace(outer="none"), self.env, self.seen, self.raised)
        delivered = self.seen.streams or [[]]
        status = self.form.ends
        self.expect(streaming.status == status, f"status={streaming.status}, expected {status}")
        chunks = [alone.expected_chunks(got) for got in delivered]
        if None not in chunks:
            want = sum(c for c in chunks if c is not None)
            self.expect(
                streaming.total_chunks == want, f"chunks={streaming.total_chunks}, expected {want}"
            )
        chars = [alone.expected_chars(got) for got in delivered]
        if None not in chars:
            want = sum(c for c in chars if c is not None)
            self.expect(
                streaming.total_chars == want, f"chars={streaming.total_chars}, expected {want}"
            )
        alone.check_times(record, streaming, chars[0] if len(chars) == 1 else None)
        self.problems += alone.problems

    def check_streams(self, requests: List[Any], streams: List[Any]) -> None:
        calls = self.form.calls
        self.expect(len(requests) == calls, f"{len(requests)} RequestMetrics, expected {calls}")
        self.expect(len(streams) == calls, f"{len(streams)} StreamingMetrics, expected {calls}")
        by_id = {s.request_id: s for s in streams}
        delivered = self.seen.streams
        self.expect(
            len({len(d) for d in delivered}) == 1,
            f"the streams delivered {[len(d) for d in delivered]} items",
        )
        for record in requests:
            streaming = by_id.get(record.request_id)
            if streaming is None:
                self.problems.append(f"no StreamingMetrics for request {record.request_id}")
                continue
            self.check_stream(record, streaming, delivered[0] if delivered else [])

    def check_stream(self, record: Any, streaming: Any, got: List[Any]) -> None:
        status = self.form.ends
        self.expect(streaming.status == status, f"status={streaming.status}, expected {status}")
        failed = status == "error"
        self.expect(
            record.success is not failed and record.error_class == ("Boom" if failed else None),
            f"success={record.success} ({record.error_class}), expected {not failed}",
        )
        self.expect(record.method == "stream", f"method={record.method}")
        chunks = self.expected_chunks(got)
        if chunks is not None:
            self.expect(
                streaming.total_chunks == chunks,
                f"chunks={streaming.total_chunks}, expected {chunks} ({len(got)} delivered)",
            )
        elif got:
            self.expect(
                streaming.total_chunks >= 1,
                f"chunks={streaming.total_chunks}, expected >= 1 ({len(got)} delivered)",
            )
        chars = self.expected_chars(got)
        if chars is not None:
            self.expect(
                streaming.total_chars == chars, f"chars={streaming.total_chars}, expected {chars}"
            )
        self.check_tokens(record)
        self.check_times(record, streaming, chars)

    def check_times(self, record: Any, streaming: Any, chars: Optional[int]) -> None:
        first_chunk = getattr(record, "time_to_first_chunk_ms", "missing")
        first_token = record.time_to_first_token_ms
        if streaming.total_chunks:
            self.expect(isinstance(first_chunk, float), f"time_to_first_chunk_ms={first_chunk}")
        self.expect(
            streaming.first_chunk_latency_ms == first_chunk,
            f"first_chunk_latency_ms={streaming.first_chunk_latency_ms}, "
            f"time_to_first_chunk_ms={first_chunk}",
        )
        if chars is None:
            chars = self.content_seen()
        if chars:
            self.expect(first_token is not None, "time_to_first_token_ms is None")
        if isinstance(first_chunk, float) and first_token is not None:
            self.expect(
                first_chunk <= first_token,
                f"time_to_first_chunk_ms={first_chunk} > time_to_first_token_ms={first_token}",
            )
        if first_token is not None:
            self.expect(
                record.duration_ms is not None and record.duration_ms >= first_token,
                f"duration_ms={record.duration_ms} < time_to_first_token_ms={first_token}",
            )

    # -------------------------------------------------------------- counts
    def reads_other_items(self) -> bool:
        """Whether the measured stream reads items other than those the consumer gets: a
        helper read directly (its raw stream is measured, its events are not chunks) or the
        client read directly (it measures the events it decodes, and yields text)."""
        return self.cell.outer == "none" and self.cell.inner in ("helper", "client")

    def items_are_chunks(self) -> bool:
        """Whether the consumer's items are the SDK's own chunks."""
        cell = self.cell
        return cell.inner in ("sdk", "instrumented") and cell.outer in (
            "none",
            "function",
            "generator_yield_from",
            "generator_for",
        )

    def items_are_text(self) -> bool:
        cell = self.cell
        return cell.outer == "text_generator" or (
            cell.inner == "client" and cell.outer != "context_manager"
        )

    def read_items(self, got: List[Any]) -> Optional[List[Any]]:
        """For :meth:`reads_other_items`: the SDK chunks the measured stream read to deliver
        ``got``, or None when they cannot be told."""
        shape = self.cell.shape
        raw = self.env.raw_items(shape)
        if self.form.full:
            return raw
        if self.cell.inner == "helper":
            chunks = [helper_chunk(event) for event in got]
            return [chunk for chunk in chunks if chunk is not None]
        # The client: up to the chunk of the last text delivered, when its decoded events
        # are the SDK's chunks one for one and its texts are their texts.
        if len(self.exchange.events()) != len(raw):
            return None
        texts = [i for i, item in enumerate(raw) if item_text(shape, item)]
        if not got or [item_text(shape, raw[i]) for i in texts[: len(got)]] != got:
            return None
        return raw[: texts[len(got) - 1] + 1]

    def expected_chunks(self, got: List[Any]) -> Optional[int]:
        """Items the outermost measured stream delivered; None when not known exactly."""
        if not self.reads_other_items():
            return len(got)
        if self.cell.inner == "client" and self.form.full:
            return len(self.exchange.events())  # the SSE events it decoded
        read = self.read_items(got)
        return None if read is None else len(read)

    def expected_chars(self, got: List[Any]) -> Optional[int]:
        """Content characters among the delivered items; None when not known exactly."""
        shape = self.cell.shape
        if self.reads_other_items():
            if self.form.full:
                return self.chars  # all the content read, text or not
            read = self.read_items(got)
            if read is None or not self.env.validated(shape):
                return None
            return sum(len(item_text(shape, item)) for item in read)
        if self.items_are_text():
            return sum(len(text) for text in got)
        if self.items_are_chunks():
            if self.form.full:
                return self.chars
            if self.env.validated(shape):
                return sum(len(item_text(shape, item)) for item in got)
        return None  # a helper's events yielded by a generator: no content oracle

    def content_seen(self) -> Optional[int]:
        """Content characters the consumer saw by our own reading, for the time to first
        token when no exact count is known (Bedrock has no oracle)."""
        if self.items_are_chunks():
            got = self.seen.streams[0] if self.seen.streams else []
            return sum(len(item_text(self.cell.shape, item)) for item in got)
        return None


def test_the_matrix_is_generated_from_the_lists():
    ids = [p.id for p in CELLS]
    assert len(ids) == len(set(ids))
    assert {p.values[0].form for p in CELLS} == set(FORMS)
    assert {(p.values[0].inner, p.values[0].outer) for p in CELLS} >= {
        ("instrumented", outer) for outer in OUTERS
    }


# ---------------------------------------------------------------------- process exit

EXIT_SCRIPT = """
import json, sys, threading
import openai
from steer_llm_sdk.observability import MetricsConfig, configure, instrument
from steer_llm_sdk.testing import Fault, LocalLLMServer

DAEMON = sys.argv[2] == "daemon"


class JsonLines:
    name = "json-lines"

    def __init__(self, path):
        self.out = open(path, "a", encoding="utf-8")

    def record(self, metrics):
        self.out.write(json.dumps(metrics.to_dict(), default=str) + "\\n")
        self.out.flush()

    def flush(self):
        self.out.flush()

    def close(self):
        self.out.close()


configure(MetricsConfig(enable_cost_tracking=False), [JsonLines(sys.argv[1])])
instrument("openai")
server = LocalLLMServer(reply_words=8).start()
server.script(Fault(stall_after=2, stall=30))  # two events, then nothing for 30 s
client = openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0)
stream = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "hi"}],
    stream=True,
    stream_options={"include_usage": True},
)
two = threading.Event()


def consume():
    iterator = iter(stream)
    next(iterator)
    next(iterator)
    two.set()
    if DAEMON:
        next(iterator)  # blocks in the read: the server stalls


thread = threading.Thread(target=consume, daemon=DAEMON)
thread.start()
assert two.wait(10), "two chunks did not come"
if not DAEMON:
    thread.join(10)  # done with two chunks; the stream stays open, held by the module
"""


@pytest.mark.parametrize("thread", ["daemon", "non_daemon"])
def test_a_stream_open_at_process_exit_is_recorded_cancelled(thread, tmp_path):
    out = tmp_path / "records.jsonl"
    env = dict(os.environ, PYTHONPATH=str(spawn.ROOT), PYTHONWARNINGS="ignore")
    proc = spawn.run(
        [sys.executable, "-c", textwrap.dedent(EXIT_SCRIPT), str(out), thread],
        env=env,
        capture_output=True,
        text=True,
        timeout=40,
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    requests = [r for r in records if r["metric_type"] == "request"]
    streams = [r for r in records if r["metric_type"] == "streaming"]
    assert len(requests) == 1, records
    assert len(streams) == 1, records
    assert streams[0]["status"] == "cancelled", streams[0]
    assert streams[0]["total_chunks"] == 2, streams[0]
    assert requests[0]["time_to_first_token_ms"] is not None, requests[0]
    assert requests[0]["time_to_first_chunk_ms"] is not None, requests[0]
