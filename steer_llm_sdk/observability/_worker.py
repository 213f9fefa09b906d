"""The background side of a collector: queue, flush thread, one delivery thread per sink.

Data path::

    submit() --append--> queue --flush thread: batch, sanitise, filter--> channel backlog
                                                                   --sink thread--> sink

* ``submit()`` runs on the caller's thread: no lock on the accepting path, one ``deque.append``
  (atomic), a length check for the bound, and rarely an ``Event.set()`` to wake the flush thread.
* The flush thread wakes when a batch is full, when asked to flush or stop, and otherwise every
  ``batch_timeout_seconds``; it takes everything queued, in batches of ``batch_size``. A record
  therefore waits at most ``batch_timeout_seconds`` plus processing time. An idle process wakes
  once per timeout and does nothing else.
* Each sink has its own channel: a bounded backlog of batches and a delivery thread. A sink that
  hangs fills only its own backlog (overflow is counted as that sink's ``queue_full``) and
  never delays the others.
* ``flush()`` puts a marker in the queue. It travels behind every record accepted before it;
  the flush thread forwards it to every channel, and each channel calls its sink's ``flush()``
  when it gets there. The flush is complete when every channel has passed the marker.

Counters are kept under one re-entrant lock (re-entrant because a garbage-collected stream
wrapper may record from inside a locked section on the same thread), held only for counting
and queue moves, never while a filter or sink runs.

At interpreter exit on Python 3.12+ no thread may be started: if the threads never ran,
:meth:`Pipeline.drain_inline` processes the queue on the exiting thread. After ``os.fork()``
:meth:`Pipeline.reset_after_fork` gives the child fresh locks, queues, threads and counters;
whatever the parent had queued stays the parent's to deliver.
"""

import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from .._secrets import redact
from ..pricing import PriceTable
from ._ids import resolve_ids
from ._log import rate_limited
from ._usage import complete_from_response
from .filters import as_callable
from .models import BaseMetrics, sanitize
from .sinks.base import MetricsSink, close, sink_name

_STOP = object()


class FlushMarker:
    """Travels through the pipeline behind the records accepted before a ``flush()``."""

    __slots__ = ("remaining", "done")

    def __init__(self) -> None:
        self.remaining = 1  # the flush thread's own arrival; channels are added when forwarded
        self.done = threading.Event()


class Channel:
    """One sink's backlog, delivery thread and counters. Guarded by the pipeline lock.

    A sink that declares ``nonblocking = True`` (it never waits on I/O, locks held for long,
    or other threads) is delivered to directly by the flush thread instead: no backlog, no
    thread, one GIL hand-off less per batch.
    """

    __slots__ = (
        "sink",
        "name",
        "inline",
        "backlog",
        "wake",
        "pending",
        "received",
        "delivered",
        "failed",
        "errors",
        "dropped",
        "thread",
    )

    def __init__(self, sink: MetricsSink, name: str, lock: threading.RLock) -> None:
        self.sink = sink
        self.name = name
        self.inline = getattr(sink, "nonblocking", False) is True
        self.backlog: Deque[Any] = deque()
        self.wake = threading.Condition(lock)
        self.pending = 0  # records in the backlog or being delivered
        self.received = 0
        self.delivered = 0
        self.failed = 0  # records in calls that raised
        self.errors = 0  # calls that raised (record, record_batch, flush, close)
        self.dropped = 0  # records refused because the backlog was full
        self.thread: Optional[threading.Thread] = None


class Pipeline:
    """Queue and threads of one collector. Thread-safe; see the module docstring.

    Args:
        sinks: the initial sinks.
        batch_size, batch_timeout: batching (records, seconds).
        max_queue_size: bound of the main queue.
        sink_queue_size: bound of each channel backlog, in records.
        filters: callables or ``.filter`` objects, run on the flush thread.
        max_attributes, max_attribute_length: limits applied by ``sanitize``.
    """

    def __init__(
        self,
        sinks: Sequence[MetricsSink],
        batch_size: int,
        batch_timeout: float,
        max_queue_size: int,
        sink_queue_size: int,
        filters: Sequence[Any],
        max_attributes: int,
        max_attribute_length: int,
        prices: Optional[PriceTable] = None,
    ) -> None:
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.max_queue_size = max_queue_size
        # Above this many queued records, record() yields the GIL once (see yield_to_flush).
        self.high_water = max(1, max_queue_size // 2)
        self.sink_queue_size = sink_queue_size
        self.filters: Tuple[Callable[[BaseMetrics], Any], ...] = tuple(
            as_callable(f) for f in filters
        )
        self.max_attributes = max_attributes
        self.max_attribute_length = max_attribute_length
        self.prices = prices
        self._unpriced: set = set()  # models already warned about
        self._sinks: List[MetricsSink] = list(sinks)
        self.closed = False
        self._init_runtime()

    def _init_runtime(self) -> None:
        """(Re)create every lock, queue, thread handle and counter."""
        self.lock = threading.RLock()
        self.queue: Deque[Any] = deque()
        self.wake = threading.Event()
        self.wake_pending = False
        self.started = False
        self.stopping = False
        self.worker: Optional[threading.Thread] = None
        self.thread_idents: frozenset = frozenset()
        self.channels: Tuple[Channel, ...] = ()
        names: Dict[str, int] = {}
        channels = []
        for sink in self._sinks:
            channels.append(Channel(sink, _unique_name(sink, names), self.lock))
        self.channels = tuple(channels)
        self.markers_queued = 0
        self.taken = 0  # records the flush thread took from the queue
        self.in_flight = 0
        self.sampled_out = 0
        self.filtered = 0
        self.sanitized = 0
        self.internal_errors = 0
        self.dropped: Dict[str, int] = {
            "queue_full": 0,
            "after_shutdown": 0,
            "filter_error": 0,
            "invalid": 0,
            "fork": 0,
        }

    # ------------------------------------------------------------------ caller side
    def submit(self, record: BaseMetrics) -> bool:
        """Enqueue a record without blocking. Returns False (and counts why) if refused.

        Above the high-water mark (half the queue) the calling thread yields the GIL once
        (``time.sleep(0)``) before enqueueing. It does not wait for anything: it gives the
        flush thread, which otherwise queues behind every busy thread for the GIL, a chance to
        run, so that a burst from many threads is delivered instead of dropped.
        """
        if self.closed:
            self.count("after_shutdown")
            return False
        queue = self.queue
        if len(queue) >= self.high_water:
            self.wake.set()
            time.sleep(0)
        if len(queue) >= self.max_queue_size:
            self.count("queue_full")
            rate_limited.warning(
                "queue_full",
                "steer_llm_sdk metrics queue full; dropping records",
                max_queue_size=self.max_queue_size,
            )
            return False
        queue.append(record)
        if not self.started:
            self.start()
        if len(queue) >= self.batch_size and not self.wake_pending:
            self.wake_pending = True
            self.wake.set()
        return True

    def count(self, reason: str) -> None:
        """Count one caller-side event: ``sampled_out``, ``sanitized`` or a drop reason."""
        with self.lock:
            if reason == "sampled_out":
                self.sampled_out += 1
            elif reason == "sanitized":
                self.sanitized += 1
            else:
                self.dropped[reason] += 1

    def start(self) -> bool:
        """Start the flush and delivery threads once. Returns whether they run.

        At interpreter shutdown (Python 3.12+) starting a thread raises; the records then
        wait for :meth:`drain_inline`, which the exit handler calls.
        """
        with self.lock:
            if self.started:
                return self.worker is not None
            self.started = True
            try:
                for channel in self.channels:
                    self._start_channel(channel)
                worker = threading.Thread(
                    target=self._run_worker, name="steer-metrics-flush", daemon=True
                )
                worker.start()
            except RuntimeError:
                return False
            self.worker = worker
            self._refresh_idents()
            return True

    def _start_channel(self, channel: Channel) -> None:
        if channel.inline:
            return
        thread = threading.Thread(
            target=self._run_channel,
            args=(channel,),
            name=f"steer-metrics-sink-{channel.name}",
            daemon=True,
        )
        thread.start()
        channel.thread = thread

    def _refresh_idents(self) -> None:
        idents = {c.thread.ident for c in self.channels if c.thread is not None}
        if self.worker is not None:
            idents.add(self.worker.ident)
        self.thread_idents = frozenset(idents)

    @property
    def running(self) -> bool:
        worker = self.worker
        return worker is not None and worker.is_alive()

    # ------------------------------------------------------------------ sinks
    @property
    def sinks(self) -> Tuple[MetricsSink, ...]:
        return tuple(self._sinks)

    def add_sink(self, sink: MetricsSink) -> None:
        with self.lock:
            names: Dict[str, int] = {}
            for channel in self.channels:
                _unique_name(channel.sink, names)
            channel = Channel(sink, _unique_name(sink, names), self.lock)
            self._sinks.append(sink)
            self.channels = self.channels + (channel,)
            if self.worker is not None:
                self._start_channel(channel)
                self._refresh_idents()

    def remove_sink(self, sink: MetricsSink, timeout: float) -> bool:
        """Detach ``sink`` after it received what was already dispatched to it."""
        with self.lock:
            found = [c for c in self.channels if c.sink is sink]
            if not found:
                return False
            channel = found[0]
            self.channels = tuple(c for c in self.channels if c is not channel)
            self._sinks = [s for s in self._sinks if s is not sink]
            thread = channel.thread
            channel.backlog.append(_STOP)
            channel.wake.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        if thread is None:
            self._deliver_backlog_inline(channel)
            self._call(channel, close, channel.sink)
        return True

    # ------------------------------------------------------------------ flush thread
    def _run_worker(self) -> None:
        wake = self.wake
        while True:
            wake.wait(self.batch_timeout)
            wake.clear()
            self.wake_pending = False
            try:
                self._drain()
            except Exception as exc:  # a bug here must not kill delivery for good
                self._internal_error("flush thread", exc)
            if self.stopping and not self.queue:
                return

    def _drain(self) -> None:
        """Move everything queued now through filters into the channels."""
        while True:
            with self.lock:
                queue = self.queue
                size = len(queue)
                if size == 0:
                    return
                items = [queue.popleft() for _ in range(min(size, self.batch_size))]
                if self.markers_queued:
                    records = [r for r in items if type(r) is not FlushMarker]
                    markers = [m for m in items if type(m) is FlushMarker]
                    self.markers_queued -= len(markers)
                else:
                    records, markers = items, []
                self.taken += len(records)
                self.in_flight = len(records)
            kept, sanitized, filtered, errors = self._process(records)
            with self.lock:
                self.in_flight = 0
                self.sanitized += sanitized
                self.filtered += filtered
                self.dropped["filter_error"] += errors
                inline = []
                for channel in self.channels:
                    if channel.inline:
                        inline.append(channel)
                        channel.received += len(kept)
                        channel.pending += len(kept)
                        continue
                    if kept:
                        self._offer(channel, kept)
                    for marker in markers:
                        marker.remaining += 1
                        channel.backlog.append(marker)
                        channel.wake.notify()
            for channel in inline:  # on this thread, outside the lock
                if kept:
                    self._deliver(channel, kept)
                if markers:
                    self._call(channel, _flush_sink, channel.sink)
            for marker in markers:
                self._arrive(marker)

    def _process(self, records: List[BaseMetrics]) -> Tuple[List[BaseMetrics], int, int, int]:
        """Sanitise and filter, without the lock.

        Returns:
            (kept records, how many were sanitised, filtered out, dropped by a filter error).
        """
        max_attrs, max_len = self.max_attributes, self.max_attribute_length
        filters = self.filters
        kept: List[BaseMetrics] = []
        sanitized = filtered = errors = 0
        for record in records:
            if type(record.request_id) is int or type(record.parent_request_id) is int:
                resolve_ids(record)
            if record.metric_type == "request":
                if record._response is not None:  # type: ignore[attr-defined]
                    try:
                        complete_from_response(record, max_len)  # type: ignore[arg-type]
                    except Exception as exc:  # a user usage_extractor failed; keep the record
                        self._log_failure("usage_extractor", record, exc)
                if self.prices is not None and record.cost_usd is None:  # type: ignore[attr-defined]
                    self._price(record)
            model = record.model
            # The common case, inlined: built by the SDK, a short model name, no attributes.
            if not (
                record._trusted
                and not record.attributes
                and (model is None or (type(model) is str and len(model) <= max_len))
            ):
                try:
                    if sanitize(record, max_attrs, max_len):
                        sanitized += 1
                except Exception as exc:  # a record of a foreign subclass with odd fields
                    self._internal_error("sanitize", exc)
            if not filters:
                kept.append(record)
                continue
            if type(record.attributes) is not dict:  # the shared read-only ambient mapping
                record.attributes = dict(record.attributes)  # filters may change their copy
            for flt in filters:
                try:
                    result = flt(record)
                except Exception as exc:
                    errors += 1
                    self._log_failure("filter_error", flt, exc)
                    break
                if result is None:
                    filtered += 1
                    break
                if not isinstance(result, BaseMetrics):
                    errors += 1
                    self._log_failure(
                        "filter_error", flt, TypeError(f"returned {type(result).__name__}")
                    )
                    break
                record = result
            else:
                kept.append(record)
        return kept, sanitized, filtered, errors

    def _price(self, record: Any) -> None:
        """Fill ``cost_usd`` from the price table; warn once per model without a price."""
        prices = self.prices
        if prices is None or record.prompt_tokens is None or record.completion_tokens is None:
            return
        model = record.response_model if record.response_model in prices else record.model
        cost = prices.cost(
            model, record.prompt_tokens, record.completion_tokens, record.cached_tokens
        )
        if cost is not None:
            record.cost_usd = cost
        elif model not in self._unpriced and len(self._unpriced) < 1000:
            self._unpriced.add(model)
            rate_limited.warning(
                f"unpriced:{model}",
                "steer_llm_sdk has no price for this model; cost_usd is None",
                model=model,
                provider=record.provider,
            )

    def _offer(self, channel: Channel, batch: List[BaseMetrics]) -> None:
        """Append to a channel's backlog within its bound (lock held)."""
        channel.received += len(batch)
        room = self.sink_queue_size - channel.pending
        if room < len(batch):
            refused = len(batch) - max(room, 0)
            channel.dropped += refused
            rate_limited.warning(
                f"sink_queue_full:{channel.name}",
                "steer_llm_sdk sink is not keeping up; dropping records for it",
                sink=channel.name,
                dropped=refused,
            )
            if room <= 0:
                return
            batch = batch[:room]
        channel.backlog.append(batch)
        channel.pending += len(batch)
        channel.wake.notify()

    def _arrive(self, marker: FlushMarker) -> None:
        with self.lock:
            marker.remaining -= 1
            if marker.remaining == 0:
                marker.done.set()

    # ------------------------------------------------------------------ delivery threads
    def _run_channel(self, channel: Channel) -> None:
        while True:
            with self.lock:
                while not channel.backlog:
                    channel.wake.wait()
                item = channel.backlog.popleft()
            if item is _STOP:
                self._call(channel, close, channel.sink)
                return
            if type(item) is FlushMarker:
                self._call(channel, _flush_sink, channel.sink)
                self._arrive(item)
                continue
            self._deliver(channel, item)

    def _deliver(self, channel: Channel, batch: List[BaseMetrics]) -> None:
        """Hand one batch to the sink, counting per record when the sink has no batch call."""
        sink = channel.sink
        ok = bad = errors = 0
        record_batch = getattr(sink, "record_batch", None)
        if record_batch is not None:
            try:
                record_batch(batch)
                ok = len(batch)
            except Exception as exc:
                bad, errors = len(batch), 1
                self._log_failure(f"sink_error:{channel.name}", sink, exc)
        else:
            record = sink.record
            for metrics in batch:
                try:
                    record(metrics)
                    ok += 1
                except Exception as exc:
                    bad += 1
                    errors += 1
                    self._log_failure(f"sink_error:{channel.name}", sink, exc)
        with self.lock:
            channel.delivered += ok
            channel.failed += bad
            channel.errors += errors
            channel.pending -= len(batch)

    def _call(self, channel: Channel, fn: Callable[[MetricsSink], None], sink: Any) -> None:
        try:
            fn(sink)
        except Exception as exc:
            with self.lock:
                channel.errors += 1
            self._log_failure(f"sink_error:{channel.name}", sink, exc)

    # ------------------------------------------------------------------ flush / stop
    def flush(self, timeout: float) -> bool:
        """Wait until everything accepted before the call reached every sink and each sink's
        ``flush()`` returned. Returns False at the deadline, or at once when called from one of
        this pipeline's own threads (which cannot wait for themselves)."""
        if threading.get_ident() in self.thread_idents:
            return False
        if not self.running:
            return self.drain_inline(time.monotonic() + timeout)
        marker = FlushMarker()
        with self.lock:
            self.markers_queued += 1
            self.queue.append(marker)
        self.wake.set()
        return marker.done.wait(timeout)

    def stop(self, timeout: float) -> bool:
        """Flush, then stop the threads and close the sinks, all within ``timeout``.

        Records still queued at the deadline stay counted as pending.
        """
        deadline = time.monotonic() + timeout
        self.closed = True
        complete = self.flush(timeout)
        with self.lock:
            self.stopping = True
            channels = self.channels
            for channel in channels:
                channel.backlog.append(_STOP)
                channel.wake.notify()
        self.wake.set()
        me = threading.current_thread()
        threads = [self.worker] + [c.thread for c in channels]
        for thread in threads:
            if thread is not None and thread is not me:
                thread.join(max(0.0, deadline - time.monotonic()))
        for channel in channels:
            if channel.thread is None:  # never ran: close on this thread
                self._call(channel, close, channel.sink)
        return complete and not any(t is not None and t.is_alive() for t in threads)

    def drain_inline(self, deadline: float) -> bool:
        """Deliver everything queued on the calling thread (threads not running).

        Used at interpreter exit when no thread may be started, and by ``flush()`` before the
        threads ever ran. Sinks are called directly, so ``deadline`` is checked between
        batches only.
        """
        with self.lock:  # re-entrant: serialises concurrent inline drains
            while self.queue:
                if time.monotonic() > deadline:
                    return False
                self._drain()
                for channel in self.channels:
                    self._deliver_backlog_inline(channel)
            for channel in self.channels:
                self._deliver_backlog_inline(channel)
                self._call(channel, _flush_sink, channel.sink)
        return True

    def _deliver_backlog_inline(self, channel: Channel) -> None:
        while channel.backlog:
            item = channel.backlog.popleft()
            if type(item) is FlushMarker:
                self._arrive(item)
            elif item is not _STOP:
                self._deliver(channel, item)

    # ------------------------------------------------------------------ accounting
    def snapshot(self) -> Dict[str, Any]:
        """Consistent copy of every counter (see ``CollectorStats``)."""
        with self.lock:
            queued = len(self.queue) - self.markers_queued + self.in_flight
            accepted = self.taken + len(self.queue) - self.markers_queued
            dropped = dict(self.dropped)
            return {
                # Drops decided before a record entered the queue; filter_error is counted
                # among the accepted ones the flush thread took.
                "recorded": self.sampled_out
                + accepted
                + sum(n for reason, n in dropped.items() if reason != "filter_error"),
                "sampled_out": self.sampled_out,
                "filtered": self.filtered,
                "dropped": dropped,
                "sanitized": self.sanitized,
                "queued": queued,
                "internal_errors": self.internal_errors,
                "sinks": {
                    c.name: {
                        "received": c.received,
                        "delivered": c.delivered,
                        "failed": c.failed,
                        "errors": c.errors,
                        "dropped": c.dropped,
                        "pending": c.pending,
                    }
                    for c in self.channels
                },
            }

    def reset_after_fork(self) -> None:
        """In a forked child: new locks, queues, counters; threads start on the next record."""
        self._init_runtime()
        rate_limited.reset()

    # ------------------------------------------------------------------ diagnostics
    def _internal_error(self, where: str, exc: BaseException) -> None:
        with self.lock:
            self.internal_errors += 1
        rate_limited.warning(
            f"internal:{where}",
            "steer_llm_sdk metrics internal error",
            where=where,
            error=type(exc).__name__,
            message=redact(str(exc))[:200],
        )

    def _log_failure(self, key: str, who: Any, exc: BaseException) -> None:
        rate_limited.warning(
            key,
            "steer_llm_sdk metrics component failed",
            component=getattr(who, "__qualname__", None) or type(who).__name__,
            error=type(exc).__name__,
            message=redact(str(exc))[:200],
        )


def _flush_sink(sink: MetricsSink) -> None:
    sink.flush()


def _unique_name(sink: MetricsSink, seen: Dict[str, int]) -> str:
    base = sink_name(sink)
    count = seen.get(base, 0) + 1
    seen[base] = count
    return base if count == 1 else f"{base}#{count}"
