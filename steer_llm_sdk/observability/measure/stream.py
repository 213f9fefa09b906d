"""Measuring streams: one meter, one end-exactly-once guard, one way to record the end.

Every entry measures its streams with these (the decorator's :class:`TrackedStream`,
``instrument()``'s proxies, the client's text streams):

* :class:`StreamMeter` iterates a stream and measures it: the first chunk (time to first
  chunk), the first chunk carrying content (time to first token), the gap between
  consecutive chunks (bucketed as they come, :class:`~..models.ChunkGaps`), chunks,
  characters of content, complete JSON values in the text, and the usage the stream reports
  about itself. The per-chunk work is a clock reading, a few comparisons and additions, the
  chunk's reader and a length; nothing per chunk is kept.
* :class:`FinishOnce` ends a stream exactly once. A stream's life is its iteration: the
  meter's generator is what is watched, so the stream ends when that generator is exhausted,
  raises, is closed, or can no longer be reached by anyone (a proxy dropped by an inline
  ``for`` loop leaves the generator alive and the stream open), or at process exit.
* :func:`open_stream` wires a meter, a guard and a record for one call;
  :func:`record_stream` turns a :class:`StreamOutcome` into records.
"""

import weakref
from bisect import bisect_left
from functools import partial
from time import perf_counter
from types import GeneratorType
from typing import Any, Callable, Dict, Generator, List, Optional, Tuple

from ...streaming.json_stream import JsonObjectCounter
from ...streaming.readers import READERS, StreamReader
from .._log import logger
from .._signals import run_each, signal_exception
from ..conventions import DURATION_BUCKETS
from ..models import GAP_HIGHS, GAP_LOWS, ChunkGaps, RequestMetrics
from ..runtime import IDENTITY, at_exit_call, on_fork_call
from .call import (
    StreamOutcome,
    join_failure,
    join_stream,
    record_failure,
    stream_times,
    streaming_record,
)

#: Status of a finished stream.
COMPLETED, ERROR, CANCELLED = "completed", "error", "cancelled"


_INF = float("inf")
_NAN = float("nan")


def _nothing() -> None:
    pass


def _always() -> bool:
    return True


class StreamMeter:
    """Measures one stream while :meth:`measure` iterates it. Not thread-safe: one stream,
    consumed on one thread.

    Args:
        response_format: JSON formats (``json_*``) count complete JSON values in the text.

    Attributes (final once :meth:`measure`'s generator has ended):
        chunks, chars: items yielded, and characters of content among them.
        first, first_token: ``perf_counter()`` at the first item and the first content.
        reader: what the stream reported about itself (a ``StreamReader``).
        gaps: the gaps between consecutive chunks, bucketed (:class:`~.models.ChunkGaps`).
        status, error: how it ended (``completed``/``error``/``cancelled``).
    """

    __slots__ = (
        "chunks",
        "gaps",
        "chars",
        "first",
        "first_token",
        "reader",
        "json",
        "status",
        "error",
        "end",
    )

    def __init__(self, response_format: str = "text") -> None:
        self.json: Optional[JsonObjectCounter] = (
            JsonObjectCounter() if response_format.startswith("json") else None
        )
        self.reset()

    def reset(self) -> None:
        """Forget what was measured (a stream that is retried from its start)."""
        self.chunks = self.chars = 0
        self.first: Optional[float] = None
        self.first_token: Optional[float] = None
        self.reader = StreamReader()
        self.gaps = ChunkGaps()
        if self.json is not None:
            self.json = JsonObjectCounter()
        self.status = CANCELLED
        self.error: Optional[BaseException] = None
        self.end = 0.0

    def measure(
        self,
        inner: Any,
        on_start: Callable[[], None] = _nothing,
        on_end: Callable[[], None] = _nothing,
        text_only: bool = False,
        clock: Callable[[], float] = perf_counter,
        control: Any = None,
        reachable: Callable[[], bool] = _always,
    ) -> Generator[Any, Any, Any]:
        """Iterate ``inner``, yielding each item unchanged and measuring it.

        ``send``/``throw`` are forwarded to ``inner`` when it has them. When ``inner`` is a
        generator its return value is returned (as ``yield from`` would); other iterators
        end with None. Ends with ``status`` set; an error from ``inner`` is re-raised
        unchanged. ``on_start()`` runs at the first ``next()``, ``on_end()`` once the
        generator has ended in any way (after the measures are final): a consumer that
        needs nothing else iterates this generator directly, one generator step per chunk.
        With ``text_only`` it yields the content of each chunk that carries any, instead of
        the chunks. ``clock`` is read once per chunk and once at the end (``perf_counter``
        seconds). ``control``, when given, receives what is sent or thrown in instead of
        ``inner`` (a source whose steps run elsewhere, in a context of their own).

        Closed (``close()``) while suspended, it closes ``inner`` (or ``control``) at once
        when ``reachable()`` says someone still holds this generator: an error from that
        close (a generator's own cleanup failing) reaches whoever closed it, as closing
        ``inner`` would raise it, and ends the stream as failed. When it is being collected
        (nobody holds it: ``reachable()`` is False) ``on_end`` closes ``inner`` quietly.
        """
        # Only the chunk loop lives here. What runs once a stream (its start and end) or
        # rarely (a new shortest or longest gap, the first content, a value sent or an
        # exception thrown in) is a function of its own, called when it happens.
        on_start()
        reader = self.reader
        readers = READERS
        gaps = self.gaps
        counts, sums = gaps.counts, gaps.sums
        lows, highs = GAP_LOWS, GAP_HIGHS
        # The gaps between chunks are bucketed here, as they come: consecutive gaps mostly
        # fall in one bucket, so the common step is one chained comparison and one addition
        # to the current run (``run`` gaps in bucket ``index``, from the chunk read at
        # ``origin`` to the last one: their sum is ``last - origin``). A gap outside the
        # run's bucket ends the run and starts one; the first chunk has no gap (``last``
        # starts as NaN, which no comparison admits). A gap outside [shortest, longest]
        # is a new extreme (_stretch), or NaN. Nothing per chunk is kept.
        last = _NAN
        low = shortest = _INF
        high = longest = -_INF
        index = run = 0
        origin = 0.0
        first: Optional[float] = None
        # Chunks are counted by the gaps between them (plus the first) at the end.
        count, chars = self.chunks - sum(counts), self.chars
        noting = True  # until the first content, and for JSON counting (see _note)
        seen: Any = None  # the class of the last chunk read, and its reader
        read: Any = None
        returned: List[Any]  # what a generator returned, through _keep_returned()
        try:
            iterator, returned = _iterate(inner)
            source: Any = iterator
            target = iterator if control is None else control
            while source is not None:
                # A ``for`` loop is the cheapest way to take items. A value sent or an
                # exception thrown in by the consumer goes to the iterator's send()/throw(),
                # whose answer is taken through a one-item source before the loop returns
                # to the iterator (_sent, _thrown, _after).
                for chunk in source:
                    now = clock()
                    gap = now - last
                    if low < gap <= high:
                        run += 1
                    elif first is None:  # the run of the first gap starts here
                        first = origin = now
                    else:  # a gap in another bucket: the run ends, one starts
                        counts[index] += run
                        sums[index] += last - origin
                        origin = last
                        index = bisect_left(DURATION_BUCKETS, gap)
                        low, high = lows[index], highs[index]
                        run = 1
                    if not shortest <= gap <= longest:
                        shortest, longest = _stretch(gap, shortest, longest)
                    last = now
                    cls = type(chunk)
                    if cls is str:
                        text = chunk
                    else:
                        if cls is not seen:  # most streams are of one or two chunk classes
                            seen, read = cls, readers[cls]
                        try:  # the reader of the chunk's class, without a call to observe()
                            text = read(reader, chunk)
                        except Exception:  # an odd chunk passes through, counted, not read
                            reader.errors += 1
                            text = ""
                    chars += len(text)
                    if noting and text:
                        noting = self._note(text, now)
                    if text_only:
                        if not text or type(text) is not str:  # no text, or tool calls etc.
                            continue
                        chunk = text
                    try:
                        sent = yield chunk
                    except BaseException as thrown:
                        source = _thrown(target, thrown, returned, reachable)
                        break
                    if sent is not None:
                        source = _sent(target, sent, source, returned)
                        break
                else:  # the source ran out
                    source = _after(source, iterator)
            self.status = COMPLETED
            return returned[0]
        except BaseException as exc:
            self._stopped(exc)
            raise
        finally:
            self.end = clock()
            _end_run(counts, sums, index, run, last - origin)
            gaps.minimum, gaps.maximum = shortest, longest
            self.chunks = count + sum(counts) + (first is not None)
            self.chars = chars
            self.first = first
            on_end()

    def _note(self, text: str, now: float) -> bool:
        """Note a chunk's content read at ``now``: the first content's time, and the text
        for JSON counting. Returns whether the next content needs noting too."""
        if self.first_token is None:
            self.first_token = now
        json = self.json
        if json is None:
            return False
        if type(text) is str:
            json.feed(text)
        return True

    def _stopped(self, exc: BaseException) -> None:
        """Note how the stream stopped before its end: closed (``cancelled``) or by
        ``exc``."""
        if isinstance(exc, GeneratorExit):
            self.status = CANCELLED
        else:
            self.status, self.error = ERROR, exc

    def capture(self, gen: Any) -> None:
        """Take the measures of ``gen``, this meter's :meth:`measure` generator, while it
        runs on another thread and cannot be closed (at process exit, a consumer blocked
        waiting for its next chunk): they live in the generator's frame until its
        ``finally``, which will not run. Reads the frame under the GIL; changes nothing the
        running generator uses. Does nothing if the frame is gone."""
        frame = getattr(gen, "gi_frame", None)
        if frame is None:
            return
        local = frame.f_locals
        first = local.get("first")
        if first is None:
            return
        counts = self.gaps.counts
        run = local.get("run", 0)
        self.chunks = local.get("count", 0) + sum(counts) + run + 1
        self.chars = local.get("chars", 0)
        self.first = first
        self.end = perf_counter()

    def outcome(self) -> "StreamOutcome":
        """What the stream reported, as measured (usage only if the stream reported it). A
        stream that never started (closed or dropped before its first item) ends now."""
        if self.end == 0.0:
            self.end = perf_counter()
        outcome = StreamOutcome()
        outcome.status, outcome.error, outcome.end = self.status, self.error, self.end
        outcome.chunks, outcome.chars = self.chunks, self.chars + self.reader.extra_chars
        outcome.first, outcome.first_token = self.first, self.first_token
        outcome.usage = self.reader.token_usage()
        outcome.response_model = self.reader.model
        outcome.json_objects = 0 if self.json is None else self.json.count
        outcome.read_errors = self.reader.errors
        outcome.gaps = self.gaps
        if outcome.usage is not None:
            outcome.aggregation_method, outcome.aggregation_confidence = "provider", 1.0
        return outcome


def _end_run(counts: List[int], sums: List[float], index: int, run: int, span: float) -> None:
    """Add a run of ``run`` gaps in bucket ``index``, ``span`` seconds in all, unless
    there is none."""
    if run:
        counts[index] += run
        sums[index] += span


def _stretch(gap: float, shortest: float, longest: float) -> Tuple[float, float]:
    """The shortest and longest gap once ``gap`` is counted too (a NaN changes neither)."""
    if gap < shortest:
        shortest = gap
    if gap > longest:
        longest = gap
    return shortest, longest


def _iterate(inner: Any) -> Tuple[Any, List[Any]]:
    """An iterator over ``inner``, and the list whose first item holds what ``inner``
    returned once it has (a generator's return value; None for other iterators, unless
    their ``send()``/``throw()`` ended them with one)."""
    if type(inner) is GeneratorType:
        returned: List[Any] = [None]
        return _keep_returned(inner, returned), returned
    if type(inner) is Steps:
        return iter(inner), inner.returned
    return iter(inner), [None]


def _keep_returned(gen: Generator[Any, Any, Any], returned: List[Any]) -> Generator[Any, Any, Any]:
    """Delegate to ``gen`` (``send``/``throw`` included) and keep what it returns in
    ``returned[0]``: a ``for`` loop drops the return value of what it iterates."""
    value = returned[0] = yield from gen
    return value


class _Answer:
    """What an iterator's ``send()`` or ``throw()`` answers, as a one-item iterator; if the
    call ended the iterator instead, ``ended`` is set and its return value is put in
    ``returned[0]``."""

    __slots__ = ("_call", "_argument", "_returned", "ended")

    def __init__(self, call: Callable[[Any], Any], argument: Any, returned: List[Any]) -> None:
        self._call: Optional[Callable[[Any], Any]] = call
        self._argument = argument
        self._returned = returned
        self.ended = False

    def __iter__(self) -> "_Answer":
        return self

    def __next__(self) -> Any:
        call, self._call = self._call, None
        if call is None:
            raise StopIteration
        try:
            return call(self._argument)
        except StopIteration as stop:
            self.ended, self._returned[0] = True, stop.value
            raise StopIteration from None


def _thrown(
    target: Any, thrown: BaseException, returned: List[Any], reachable: Callable[[], bool]
) -> Any:
    """The source to read after ``thrown`` was thrown in at a yield: the answer of the
    iterator's ``throw()``. ``close()``'s GeneratorExit closes the iterator first (see
    :meth:`StreamMeter.measure`) and is raised again where the items are taken, as a plain
    loop would raise it; so is an exception thrown into an iterator without ``throw()``."""
    if isinstance(thrown, GeneratorExit):
        close = getattr(target, "close", None)
        return _raising(thrown, close if reachable() else None)
    throw = getattr(target, "throw", None)
    if throw is None:
        return _raising(thrown)
    return _Answer(throw, thrown, returned)


def _raising(
    exc: BaseException, first: Optional[Callable[[], Any]] = None
) -> Generator[Any, None, None]:
    """An iterator whose first step calls ``first()`` if given (what it raises propagates)
    and raises ``exc`` (a generator: nothing runs before that step)."""
    try:
        if first is not None:
            first()
        raise exc
    finally:
        del exc  # the traceback keeps this frame: it must not keep ``exc`` (a cycle)
    yield


def _sent(target: Any, sent: Any, source: Any, returned: List[Any]) -> Any:
    """The source to read after ``sent`` was sent in: the answer of the iterator's
    ``send()``; for an iterator without one, ``source`` again (the value is dropped and
    the next item read)."""
    send = getattr(target, "send", None)
    if send is None:
        return source
    return _Answer(send, sent, returned)


def _after(source: Any, iterator: Any) -> Any:
    """The source to read once ``source`` has run out: ``iterator`` again after an answer
    was taken; None once the stream is over (``iterator`` ran out, or the call answered
    ended it)."""
    if source is iterator or source.ended:
        return None
    return iterator


class FinishOnce:
    """Calls ``finish()`` exactly once for a stream, however it ends.

    ``watched`` is the meter's generator: whoever iterates the stream holds it (a proxy or
    wrapper holds it too), so it is collected only when nothing can iterate the stream any
    more. A started stream's own ``finally`` calls :meth:`finish` (at exhaustion, error,
    ``close()``, or when the collected generator is closed by the interpreter). One never
    started runs none of its code, so the generator's collection is watched too, by a weak
    reference whose callback ends it; for a started stream the callback finds the work done.
    The weak reference is held from a module-level table until the stream ends (a reference
    collected with its stream would never call back), which also lets the exit drain end
    streams still open when the process ends (:func:`end_open_streams`), taking their
    measures with ``capture(generator)`` when the generator is running on another thread.
    Thread-safety: one stream is consumed by one thread at a time.
    """

    __slots__ = ("started", "finished", "_finish", "_ref", "_capture")

    def __init__(
        self,
        watched: Any,
        finish: Callable[[], None],
        capture: Optional[Callable[[Any], None]] = None,
    ) -> None:
        self.started = False
        self.finished = False
        self._finish = finish
        self._capture = capture
        # Much cheaper than weakref.finalize (~0.2 µs against ~2.7 µs a stream).
        self._ref: Any = weakref.ref(watched, self._collected)
        _OPEN[id(self)] = self

    def finish(self) -> bool:
        """Run ``finish()`` unless it already ran. Returns whether it ran now."""
        if self.finished:
            return False
        self.finished = self.started = True
        _OPEN.pop(id(self), None)
        self._ref = None  # the reference's callback holds this object: break the cycle
        self._finish()
        return True

    def forget(self) -> None:
        """Never end this stream: another measurement took it over (or, in a forked child,
        the parent records it)."""
        self.finished = self.started = True
        _OPEN.pop(id(self), None)
        self._ref = None

    def finish_unstarted(self) -> None:
        """End a stream that never started (closed or dropped before the first item).

        A started stream records in its own ``finally``, which CPython runs after the
        weakref callbacks of a collected generator: stand aside for it."""
        if not self.started:
            self.finish()

    def _collected(self, _: Any) -> None:
        self.finish_unstarted()  # finish() leaves the table; a started stream's finally will

    def _end_at_exit(self) -> None:
        """Close the stream (a suspended one records what it measured in its ``finally``)
        or, if it cannot be closed now (running on a thread that is still alive, waiting for
        its next chunk), record what it measured so far."""
        ref = self._ref
        watched = None if ref is None else ref()
        close_quietly(watched)
        if self.finished:
            return
        if watched is not None and self._capture is not None and self.started:
            self._capture(watched)
        self.finish()


def close_quietly(obj: Any) -> None:
    """Call ``obj.close()`` if it has one; an error from it is swallowed (the stream is
    being abandoned, and nothing may raise into the caller)."""
    closer = getattr(obj, "close", None)
    if closer is not None:
        try:
            closer()
        except Exception as exc:
            timeout = signal_exception(exc)
            if timeout is not None:
                raise timeout


#: Streams not yet ended, by ``id()`` of their FinishOnce (their objects may be unhashable).
_OPEN: Dict[int, FinishOnce] = {}


def end_open_streams() -> int:
    """End every stream of this process that is still open, as ``cancelled`` (see
    :class:`FinishOnce`). Called by the exit drain before the collectors deliver their last
    records. Returns how many were ended. A stream that fails to end is skipped; a signal
    handler's exception raised while one ends is raised once the others are ended too."""
    ended = [0]

    def end(once: FinishOnce) -> None:
        once._end_at_exit()
        ended[0] += 1

    run_each([partial(end, once) for once in list(_OPEN.values())])
    return ended[0]


def _forget_inherited_streams() -> None:
    """In a forked child: streams opened before the fork belong to the parent, which
    records them; the child must not record them a second time."""
    for once in list(_OPEN.values()):
        once.forget()
    _OPEN.clear()


_hinted = False


def _hint_missing_usage(provider: Optional[str]) -> None:
    """Say once per process why a stream's tokens are missing, naming the option."""
    global _hinted
    _hinted = True
    logger.warning(
        "steer_llm_sdk: a %s stream ended without the provider's token usage, so its "
        "tokens and cost are unknown. For OpenAI-compatible chat completions pass "
        "stream_options={'include_usage': True} (the SDK then sends usage in the last "
        "chunk); this is said once per process",
        provider or "LLM",
    )


def record_stream(
    collector: Any, metrics: RequestMetrics, outcome: StreamOutcome, sensitive: Any = None
) -> None:
    """End a stream's call, once: its RequestMetrics, its StreamingMetrics (if enabled)
    and, on error, an ErrorMetrics, through the collector's admission step. Usage the
    stream reported is set on the record unless calls that joined it handed theirs over
    (read on the flush thread). ``sensitive``: see :data:`.call.Sensitive`. Never raises,
    except an exception a signal handler raised while it ran."""
    if metrics._ended:
        return
    try:
        if outcome.read_errors:
            collector.count_internal_errors(outcome.read_errors)
        start = metrics._start
        elapsed = outcome.end - start
        metrics.duration_ms = elapsed * 1000.0
        stream_times(metrics, outcome)
        if outcome.usage is not None and not metrics._joined:
            metrics.set_usage(*outcome.usage)
            if outcome.aggregation_method not in ("provider", "none"):
                metrics.tokens_estimated = True
        elif not _hinted and not metrics._joined and outcome.status == "completed":
            _hint_missing_usage(metrics.provider)
        if outcome.response_model is not None:
            metrics.response_model = outcome.response_model
        if outcome.error is not None:
            record_failure(collector, metrics, outcome.error, outcome.end, sensitive)
        else:
            metrics._ended = True
            collector.admit(metrics)
        if collector.config.enable_streaming_metrics:
            collector.admit(streaming_record(metrics, outcome, elapsed))
    except Exception as exc:  # never into user code
        timeout = signal_exception(exc)
        if timeout is not None:
            raise timeout
    finally:
        metrics._ended = True


class Steps:
    """A generator whose every step runs in ``context`` (a ``contextvars.Context`` of its
    own): what its body sets there is never seen by whoever advances it, and it sees
    neither what they set nor what another request set on the same thread.

    Iterating gives a C-level iterator (one ``Context.run`` per step, no Python frame);
    ``send``, ``throw`` and ``close`` run in the context too. ``returned[0]`` is what the
    generator returned, once it has."""

    __slots__ = ("_gen", "_context", "returned")

    def __init__(self, gen: Generator[Any, Any, Any], context: Any) -> None:
        self.returned: List[Any] = [None]
        self._gen = _keep_returned(gen, self.returned)
        self._context = context

    def __iter__(self) -> Any:
        return iter(partial(self._context.run, self._gen.__next__), _NEVER)

    def send(self, value: Any) -> Any:
        return self._context.run(self._gen.send, value)

    def throw(self, *args: Any) -> Any:
        return self._context.run(self._gen.throw, *args)

    def close(self) -> None:
        self._context.run(self._gen.close)


#: A value no generator yields: the end marker of Steps' C-level iterator, never reached.
_NEVER = object()


def open_stream(
    collector: Any,
    metrics: RequestMetrics,
    inner: Any,
    restart_clock: bool = False,
    owner: Optional[RequestMetrics] = None,
    sensitive: Any = None,
) -> "tuple[Generator[Any, Any, Any], FinishOnce]":
    """Start measuring ``inner`` as the stream of the call ``metrics``: returns the meter's
    generator (iterate it to consume the stream) and its end guard.

    The stream's end records the call (:func:`record_stream`) or, with ``owner``, hands
    what it measured and reported to the call it joined (:func:`.call.join_stream`). An
    unfinished ``inner`` is closed at the end (its connection released). ``inner`` may be
    a :class:`Steps`. With ``restart_clock`` the call's clock restarts at the first item (a
    generator function runs nothing of its body until then). ``sensitive`` (see
    :data:`.call.Sensitive`) is what the error record of a failed stream must not show.
    """
    meter = StreamMeter(metrics.response_format)
    control = inner if type(inner) is Steps else None

    def finish() -> None:
        try:
            if meter.status != COMPLETED:
                close_quietly(inner)
        finally:  # a signal handler's exception from closing it still leaves the record
            outcome = meter.outcome()
            if owner is None:
                record_stream(collector, metrics, outcome, sensitive)
            else:
                join_stream(owner, outcome, outcome.usage)
                if outcome.error is not None and sensitive is not None:
                    join_failure(owner, sensitive)

    def start() -> None:
        once.started = True
        if restart_clock:
            metrics._start = perf_counter()

    def end() -> None:
        once.finish()

    def reachable() -> bool:  # False while the generator is being collected
        ref = once._ref
        return ref is not None and ref() is not None

    gen = meter.measure(inner, start, end, control=control, reachable=reachable)
    once = FinishOnce(gen, finish, meter.capture)
    return gen, once


on_fork_call(_forget_inherited_streams, IDENTITY)
at_exit_call(end_open_streams)
