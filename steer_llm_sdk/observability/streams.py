"""Measuring streams: one meter, one finish-exactly-once guard, one way to record the end.

Used alike by :class:`~.tracking.TrackedStream` (any iterator wrapped by ``track_request``)
and by the client's text streams:

* :class:`StreamMeter` iterates a stream and measures it: the first chunk, the first chunk
  carrying content (time to first token), the arrival time of every chunk (bucketed later
  into gaps, :class:`~.models.ChunkGaps`), chunks, characters of content, complete JSON
  values in the text, and the usage the stream reports about itself. The per-chunk work is
  a clock reading, a list append, a counter and a length.
* :class:`FinishOnce` makes a stream's end be recorded exactly once, whether it is exhausted,
  fails, is closed, is left through ``with``, or is dropped unstarted or half-read.
* :func:`record_stream` turns a :class:`StreamOutcome` into records.
"""

import weakref
from time import perf_counter
from typing import Any, Callable, Generator, Optional

from ..streaming.json_stream import JsonObjectCounter
from ..streaming.readers import READERS, StreamReader
from ..streaming.usage import TokenUsage
from .models import ChunkGaps, RequestMetrics, StreamingMetrics
from .recording import record_failure

#: Status of a finished stream.
COMPLETED, ERROR, CANCELLED = "completed", "error", "cancelled"


def _nothing() -> None:
    pass


class StreamMeter:
    """Measures one stream while :meth:`measure` iterates it. Not thread-safe: one stream,
    consumed on one thread.

    Args:
        response_format: JSON formats (``json_*``) count complete JSON values in the text.

    Attributes (final once :meth:`measure`'s generator has ended):
        chunks, chars: items yielded, and characters of content among them.
        first, first_token: ``perf_counter()`` at the first item and the first content.
        usage: what the stream reported about itself (a ``StreamReader``).
        gaps: the chunks' arrival times (:class:`~.models.ChunkGaps`).
        status, error: how it ended (``completed``/``error``/``cancelled``).
    """

    __slots__ = (
        "chunks",
        "gaps",
        "chars",
        "first",
        "first_token",
        "usage",
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
        self.usage = StreamReader()
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
    ) -> Generator[Any, Any, Any]:
        """Iterate ``inner``, yielding each item unchanged and measuring it.

        ``send``/``throw`` are forwarded to ``inner`` when it has them; its return value is
        returned. Ends with ``status`` set; an error from ``inner`` is re-raised unchanged.
        ``on_start()`` runs at the first ``next()``, ``on_end()`` once the generator has
        ended in any way (after the measures are final): a consumer that needs nothing else
        iterates this generator directly, one generator step per chunk. With ``text_only``
        it yields the content of each chunk that carries any, instead of the chunks.
        """
        on_start()
        reader = self.usage
        readers = READERS
        gaps = self.gaps
        stamp = gaps.stamps.append
        fold_mask = ChunkGaps.FOLD_EVERY - 1
        json = self.json
        count, chars = self.chunks, self.chars
        first_token = self.first_token
        pending: Any = None  # (callable, argument) forwarded by send()/throw()
        try:
            iterator = iter(inner)
            next_chunk = iterator.__next__
            # An iterator without send(): a sent value is dropped and the next item read;
            # without throw(): a thrown exception is raised here, as a plain loop would.
            send = getattr(iterator, "send", None) or _ignore_sent(next_chunk)
            throw = getattr(iterator, "throw", None)
            while True:
                try:
                    chunk = next_chunk() if pending is None else pending[0](pending[1])
                except StopIteration as stop:
                    self.status = COMPLETED
                    return stop.value
                now = perf_counter()
                stamp(now)
                count += 1
                if not count & fold_mask:  # keep the stamps bounded on long streams
                    gaps.fold()
                try:  # the reader of the chunk's class, without a call to observe()
                    text = chunk if type(chunk) is str else readers[type(chunk)](reader, chunk)
                except Exception:  # an odd chunk passes through, counted, not read
                    reader.errors += 1
                    text = ""
                if text:
                    chars += len(text)
                    if first_token is None:
                        first_token = now
                    if json is not None and type(text) is str:
                        json.feed(text)
                if text_only:
                    if not text or type(text) is not str:  # no text, or tool calls etc.
                        continue
                    chunk = text
                try:
                    sent = yield chunk
                except GeneratorExit:
                    raise
                except BaseException as thrown:
                    if throw is None:
                        raise
                    pending = (throw, thrown)
                    continue
                pending = None if sent is None else (send, sent)
        except GeneratorExit:
            self.status = CANCELLED
            raise
        except BaseException as exc:
            self.status, self.error = ERROR, exc
            raise
        finally:
            self.end = perf_counter()
            self.chunks, self.chars = count, chars
            self.first, self.first_token = gaps.first_stamp(), first_token
            on_end()

    def outcome(self) -> "StreamOutcome":
        """What the stream reported, as measured (usage only if the stream reported it)."""
        outcome = StreamOutcome()
        outcome.status, outcome.error, outcome.end = self.status, self.error, self.end
        outcome.chunks, outcome.chars = self.chunks, self.chars + self.usage.extra_chars
        outcome.first, outcome.first_token = self.first, self.first_token
        outcome.usage = self.usage.usage()
        outcome.response_model = self.usage.model
        outcome.json_objects = 0 if self.json is None else self.json.count
        outcome.read_errors = self.usage.errors
        outcome.gaps = self.gaps
        if outcome.usage is not None:
            outcome.aggregation_method, outcome.aggregation_confidence = "provider", 1.0
        return outcome


def _ignore_sent(next_chunk: Callable[[], Any]) -> Callable[[Any], Any]:
    return lambda value: next_chunk()


class FinishOnce:
    """Calls ``finish()`` exactly once for a stream object, however it ends.

    A started stream's own ``finally`` calls :meth:`finish`. One that is never started
    (created, maybe ``iter()``'d, then dropped) runs none of its code, so the stream object's
    collection is watched too: ``weakref.finalize(watched, ...)``. For a started stream the
    finalizer finds the work done. Thread-safety: one stream is consumed on one thread.
    """

    __slots__ = ("started", "finished", "_finish", "__weakref__")

    def __init__(self, watched: Any, finish: Callable[[], None]) -> None:
        self.started = False
        self.finished = False
        self._finish = finish
        weakref.finalize(watched, self.finish_unstarted)

    def finish(self) -> bool:
        """Run ``finish()`` unless it already ran. Returns whether it ran now."""
        if self.finished:
            return False
        self.finished = self.started = True
        self._finish()
        return True

    def finish_unstarted(self) -> None:
        """End a stream that never started (closed or dropped before the first item).

        A started stream records in its own ``finally``, which CPython runs after the
        weakref callbacks of a collected generator: stand aside for it."""
        if not self.started:
            self.finish()


class StreamOutcome:
    """What a finished stream reports; turned into records by :func:`record_stream`.

    Times are ``perf_counter()`` readings; ``usage`` is None when nothing counted tokens.
    """

    __slots__ = (
        "status",
        "error",
        "chunks",
        "chars",
        "first",
        "first_token",
        "end",
        "usage",
        "response_model",
        "json_objects",
        "aggregation_method",
        "aggregation_confidence",
        "read_errors",
        "gaps",
    )

    def __init__(self) -> None:
        self.gaps: Optional[ChunkGaps] = None
        self.read_errors = 0  # chunks of a shape no reader understood (passed through)
        self.status = CANCELLED
        self.error: Optional[BaseException] = None
        self.chunks = 0
        self.chars = 0
        self.first: Optional[float] = None
        self.first_token: Optional[float] = None
        self.end = 0.0
        self.usage: Optional[TokenUsage] = None
        self.response_model: Optional[str] = None
        self.json_objects = 0
        self.aggregation_method = "none"
        self.aggregation_confidence = 0.0


def record_stream(collector: Any, metrics: RequestMetrics, outcome: StreamOutcome) -> None:
    """Emit a stream's RequestMetrics, its StreamingMetrics (if enabled) and, on error, an
    ErrorMetrics, through the collector's admission step. Never raises."""
    try:
        if outcome.read_errors:
            collector._pipeline.accounting.internal_error(outcome.read_errors)
        start = metrics._start
        elapsed = outcome.end - start
        metrics.method = "stream"
        metrics.duration_ms = elapsed * 1000.0
        if outcome.first_token is not None:
            metrics.time_to_first_token_ms = (outcome.first_token - start) * 1000.0
        if outcome.usage is not None:
            metrics.set_usage(*outcome.usage)
            if outcome.aggregation_method not in ("provider", "none"):
                metrics.tokens_estimated = True
        if outcome.response_model is not None:
            metrics.response_model = outcome.response_model
        if outcome.error is not None:
            record_failure(collector, metrics, outcome.error, outcome.end)
        else:
            collector._admit(metrics)
        if collector.config.enable_streaming_metrics:
            first = outcome.first
            streaming = StreamingMetrics(
                **metrics.request_fields(),
                total_chunks=outcome.chunks,
                total_chars=outcome.chars,
                chunks_per_second=outcome.chunks / elapsed if elapsed > 0 else None,
                first_chunk_latency_ms=None if first is None else (first - start) * 1000.0,
                json_objects_found=outcome.json_objects,
                aggregation_method=outcome.aggregation_method,
                aggregation_confidence=outcome.aggregation_confidence,
                status=outcome.status,
                response_model=metrics.response_model,
                error_class=metrics.error_class,
            )
            streaming._gaps = outcome.gaps
            streaming._trusted = True
            collector._admit(streaming)
    except Exception:  # never into user code
        pass
