"""The background side of a collector, split by responsibility.

Data path::

    admission (intake) --append--> queue --flush thread: enrich, admit--> channel backlog
                                                                   --sink thread--> sink

* :mod:`.intake`: the one admission step on the caller's thread, the bounded queue, the
  fork check and the wake-up.
* :mod:`.enrich`: final ids, usage read from stored responses, price.
* :mod:`.admit`: sanitising and the user's filters.
* :mod:`.channels`: one bounded backlog and delivery thread per sink.
* :mod:`.accounting`: every counter, behind one lock, with drop reasons as an enum.

:class:`Pipeline` runs the flush thread and ties the parts together. The flush thread wakes
when a batch is full, when asked to flush or stop, and otherwise every
``batch_timeout_seconds``; it takes everything queued, in batches of ``batch_size``. A record
therefore waits at most the batch timeout plus processing time. An idle process wakes once
per timeout and does nothing else.

``flush()`` puts a marker in the queue. It travels behind every record accepted before it;
the flush thread forwards it to every channel, and each channel calls its sink's ``flush()``
when it gets there. The flush is complete when every channel has passed the marker.

At interpreter exit on Python 3.12+ no thread may be started: if the threads never ran,
:meth:`Pipeline.drain_inline` processes the queue on the exiting thread. After ``os.fork()``
:meth:`Pipeline.reset_after_fork` gives the child fresh locks, queues, threads and counters;
whatever the parent had queued stays the parent's to deliver.
"""

import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

from ..._secrets import redact
from ...pricing import Pricer
from .._log import describe, rate_limited
from ..models import BaseMetrics
from ..rollup import UsageRollup
from ..sinks.base import MetricsSink, close
from .accounting import Accounting, Drop
from .admit import Admitter
from .channels import STOP, Channel, FlushMarker, arrive, make_channels
from .enrich import Enricher
from .intake import Admit, Intake

#: Waits for the flush thread's wake-up event at most ``timeout`` seconds (injectable, so
#: tests can drive the batch timeout with a manual clock).
Waiter = Callable[[threading.Event, float], Any]


def _wait(event: threading.Event, timeout: float) -> bool:
    return event.wait(timeout)


class Pipeline:
    """Queue and threads of one collector. Thread-safe; see the module docstring.

    Args:
        sinks: the initial sinks.
        batch_size, batch_timeout: batching (records, seconds).
        max_queue_size: bound of the main queue.
        sink_queue_size: bound of each channel backlog, in records.
        filters: callables or ``.filter`` objects, run on the flush thread.
        max_attributes, max_attribute_length: limits applied by sanitising.
        prices: the pricer for cost, or None.
        on_reset: called after the pipeline was given fresh state for a forked child
            (the collector then chooses its admission function again).
        wait: how the flush thread waits for its wake-up (default ``Event.wait``).
        rollup_seconds: > 0 to sum delivered requests into UsageMetrics per period
            (see ``MetricsConfig.usage_rollup_seconds``).
        clock: wall clock of the roll-up windows (default ``time.time``).
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
        prices: Optional[Pricer] = None,
        on_reset: Optional[Callable[[], None]] = None,
        wait: Waiter = _wait,
        rollup_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rollup_seconds = rollup_seconds
        self.clock = clock
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout
        self.sink_queue_size = sink_queue_size
        self._wait = wait
        self._on_reset = on_reset
        self._sinks: List[MetricsSink] = list(sinks)
        self.enricher = Enricher(prices, max_attribute_length, self._log_failure)
        self.admitter = Admitter(filters, max_attributes, max_attribute_length, self._log_failure)
        self.accounting = Accounting()
        self.intake = Intake(
            self.accounting,
            batch_size,
            max_queue_size,
            max_attributes,
            max_attribute_length,
            self.start,
            self._forked_without_hooks,
        )
        self._init_runtime()

    def _init_runtime(self) -> None:
        """(Re)create every lock, queue, thread handle and counter."""
        self.accounting = Accounting()
        self.lock = self.accounting.lock
        self.intake.accounting = self.accounting
        self.intake.reset()
        self.stopping = False
        self.worker: Optional[threading.Thread] = None
        self.thread_idents: frozenset = frozenset()
        self.channels: Tuple[Channel, ...] = tuple(
            make_channels(self._sinks, self.lock, self.sink_queue_size, self._log_failure)
        )
        self.markers_queued = 0
        # A child starts with empty windows: the parent rolls up what it delivered.
        self.rollup = UsageRollup(self.rollup_seconds) if self.rollup_seconds > 0 else None
        self.internal_restarts = 0  # background threads found dead and started again
        self.stop_posted = False

    # ------------------------------------------------------------------ caller side
    @property
    def closed(self) -> bool:
        return self.intake.closed

    @property
    def queue(self) -> Any:
        return self.intake.queue

    def admission(self, enabled: bool, sample: Optional[Callable[[BaseMetrics], bool]]) -> Admit:
        """The admission function for this state (see :meth:`Intake.admission`)."""
        return self.intake.admission(enabled, sample)

    def start(self) -> bool:
        """Start the flush and delivery threads once. Returns whether they run.

        At interpreter shutdown (Python 3.12+) starting a thread raises; the records then
        wait for :meth:`drain_inline`, which the exit handler calls.
        """
        with self.lock:
            if self.intake.started:
                return self._revive()
            self.intake.started = True
            try:
                for channel in self.channels:
                    channel.start()
                worker = threading.Thread(
                    target=self._run_worker, name="steer-metrics-flush", daemon=True
                )
                worker.start()
            except RuntimeError:
                return False
            self.worker = worker
            self._refresh_idents()
            return True

    def _revive(self) -> bool:
        """Restart a background thread that died anyway (lock held). Returns whether the
        threads run."""
        if self.worker is None or self.stopping:
            return self.worker is not None
        try:
            if not self.worker.is_alive():
                self.internal_restarts += 1
                self.worker = threading.Thread(
                    target=self._run_worker, name="steer-metrics-flush", daemon=True
                )
                self.worker.start()
            for channel in self.channels:
                if not channel.alive:
                    self.internal_restarts += 1
                    channel.start()
        except RuntimeError:  # at interpreter shutdown: the exit drain delivers
            return False
        self._refresh_idents()
        return True

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
            sinks = [c.sink for c in self.channels] + [sink]
            channel = make_channels(sinks, self.lock, self.sink_queue_size, self._log_failure)[-1]
            self._sinks.append(sink)
            self.channels = self.channels + (channel,)
            if self.worker is not None:
                channel.start()
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
            channel.post(STOP)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        if thread is None:
            channel.deliver_backlog()
            channel.call(close)
        return True

    # ------------------------------------------------------------------ flush thread
    def _run_worker(self) -> None:
        wake = self.intake.wake
        while True:
            self._wait(wake, self.batch_timeout)
            wake.clear()
            self.intake.wake_pending = False
            try:
                self._drain()
                if self.rollup is not None and self.rollup_due():
                    self._drain()
            except BaseException as exc:  # noqa: B036 - nothing may end this thread
                self._internal_error("flush thread", exc)
            if self.stopping and not self.intake.queue:
                self._post_stop()
                return

    def _post_stop(self) -> None:
        """Tell every channel to close its sink and end, once."""
        with self.lock:
            if self.stop_posted:
                return
            self.stop_posted = True
            for channel in self.channels:
                channel.post(STOP)

    def stop_soon(self) -> None:
        """Refuse new records, deliver what is queued, close the sinks and end the threads,
        all on the background threads: for a collector that was dropped without
        ``shutdown()``. Returns at once; never raises."""
        try:
            self.close()
            self.stopping = True
            if self.worker is None:
                return
            self.intake.wake.set()
        except BaseException:  # noqa: B036 - runs from a garbage-collection finalizer
            pass

    def threads(self) -> "list[threading.Thread]":
        """The background threads that exist (alive or not)."""
        return [t for t in [self.worker] + [c.thread for c in self.channels] if t is not None]

    def _take(self) -> Tuple[List[BaseMetrics], List[FlushMarker]]:
        """Up to one batch from the queue, records and flush markers apart (lock held)."""
        queue = self.intake.queue
        items = [queue.popleft() for _ in range(min(len(queue), self.batch_size))]
        if not self.markers_queued:
            return items, []
        records = [r for r in items if type(r) is not FlushMarker]
        markers = [m for m in items if type(m) is FlushMarker]
        self.markers_queued -= len(markers)
        return records, markers

    def _drain(self) -> None:
        """Move everything queued now through enrichment and admission into the channels."""
        accounting = self.accounting
        while True:
            with self.lock:
                if not self.intake.queue:
                    return
                records, markers = self._take()
                accounting.taken += len(records)
                accounting.in_flight = len(records)
            enrich = self.enricher.enrich
            for record in records:
                enrich(record)
            kept, sanitized, filtered, errors = self.admitter.admit(records)
            with self.lock:
                accounting.in_flight = 0
                accounting.sanitized += sanitized
                accounting.filtered += filtered
                accounting.dropped[Drop.FILTER_ERROR] += errors
                rollup = self.rollup
                if rollup is not None:
                    for record in kept:
                        if record.metric_type == "request":
                            rollup.add(record)  # type: ignore[arg-type]
                inline = self._dispatch(kept, markers)
            for channel in inline:  # on this thread, outside the lock
                if kept:
                    channel.deliver(kept)
                for marker in markers:
                    if not channel.call(_flush):
                        marker.failed = True
            for marker in markers:
                arrive(self.lock, marker)

    def rollup_due(self, final: bool = False) -> bool:
        """Queue the roll-ups of windows that have ended (all open ones when ``final``), as
        records of their own. Returns whether any were queued."""
        with self.lock:
            rollup = self.rollup
            if rollup is None or not len(rollup):
                return False
            ready = rollup.take(None if final else self.clock())
            self.intake.queue.extend(ready)
            return bool(ready)

    def _dispatch(self, kept: List[BaseMetrics], markers: List[FlushMarker]) -> List[Channel]:
        """Offer a batch and markers to every channel (lock held); returns the channels the
        flush thread delivers to itself."""
        inline = []
        for channel in self.channels:
            if channel.inline:
                inline.append(channel)
                channel.accept_inline(kept)
                continue
            if kept:
                channel.offer(kept)
            for marker in markers:
                channel.post(marker)
        return inline

    # ------------------------------------------------------------------ flush / stop
    def flush(self, timeout: float) -> bool:
        """Wait until everything accepted before the call reached every sink and each sink's
        ``flush()`` returned. Returns False at the deadline, when a sink's ``flush()`` raised
        (an OTLP export that failed), or at once when called from one of this pipeline's own
        threads (which cannot wait for themselves)."""
        if threading.get_ident() in self.thread_idents:
            return False
        if not self.running:
            if self.stopping:  # after stop(): the sinks are closed; nothing to call
                return not self.intake.queue
            if not self.start():  # only at interpreter shutdown: no thread may start
                return self.drain_inline(time.monotonic() + timeout)
        marker = FlushMarker()
        with self.lock:
            self.markers_queued += 1
            self.intake.queue.append(marker)
        self.intake.wake.set()
        return marker.done.wait(timeout) and not marker.failed

    def close(self) -> None:
        """Refuse records from now on (counted as ``after_shutdown``)."""
        self.intake.closed = True

    def stop(self, timeout: float) -> bool:
        """Flush, then stop the threads and close the sinks, all within ``timeout``.

        Records still queued at the deadline stay counted as pending.
        """
        deadline = time.monotonic() + timeout
        self.close()
        self._final_rollups(timeout / 2)
        complete = self.flush(max(0.0, deadline - time.monotonic()))
        self.stopping = True
        self._post_stop()
        channels = self.channels
        self.intake.wake.set()
        me = threading.current_thread()
        threads = [self.worker] + [c.thread for c in channels]
        for thread in threads:
            if thread is not None and thread is not me:
                thread.join(max(0.0, deadline - time.monotonic()))
        for channel in channels:
            if channel.thread is None:  # never ran: close on this thread
                channel.call(close)
        return complete and not any(t is not None and t.is_alive() for t in threads)

    def drain_inline(self, deadline: float) -> bool:
        """Deliver everything queued on the calling thread (threads not running).

        Used at interpreter exit when no thread may be started, and by ``flush()`` before the
        threads ever ran. Sinks are called directly, so ``deadline`` is checked between
        batches only.
        """
        with self.lock:  # re-entrant: serialises concurrent inline drains
            self._drain()  # requests first, so the last windows include them
            self.rollup_due(final=True)
            while self.intake.queue:
                if time.monotonic() > deadline:
                    return False
                self._drain()
                for channel in self.channels:
                    channel.deliver_backlog()
            for channel in self.channels:
                channel.deliver_backlog()
                channel.call(_flush)
        return True

    def _final_rollups(self, timeout: float) -> None:
        """At shutdown: let the requests still queued reach the windows (within
        ``timeout``), then queue every open window; they are delivered the usual way."""
        if self.rollup is None:
            return
        if self.running:
            self.flush(timeout)
        self.rollup_due(final=True)

    # ------------------------------------------------------------------ accounting
    def snapshot(self) -> dict:
        """Consistent copy of every counter (see ``CollectorStats``)."""
        with self.lock:
            return self.accounting.snapshot(
                len(self.intake.queue), self.markers_queued, self.channels
            )

    def reset_after_fork(self) -> None:
        """In a forked child: new locks, queues, counters; threads start on the next record."""
        self._init_runtime()
        rate_limited.reset()
        if self._on_reset is not None:
            self._on_reset()

    def _forked_without_hooks(self, inherited: int) -> None:
        self.reset_after_fork()
        self.accounting.drop(Drop.FORK, inherited)

    # ------------------------------------------------------------------ diagnostics
    def _internal_error(self, where: str, exc: BaseException) -> None:
        self.accounting.internal_error()
        rate_limited.warning(
            f"internal:{where}",
            "steer_llm_sdk metrics internal error",
            where=where,
            error=type(exc).__name__,
            message=redact(describe(exc)),
        )

    def _log_failure(self, key: str, who: Any, exc: BaseException) -> None:
        """Log a failure of user code (or of the pipeline, for ``sanitize``/``internal:*``
        keys, which are counted as internal errors). Never raises."""
        if key == "sanitize" or key.startswith("internal:"):
            self._internal_error(key, exc)
            return
        try:
            component = getattr(who, "__qualname__", None) or type(who).__name__
        except BaseException:  # noqa: B036
            component = "component"
        rate_limited.warning(
            key,
            "steer_llm_sdk metrics component failed",
            component=component,
            error=type(exc).__name__,
            message=redact(describe(exc)),
        )


def _flush(sink: MetricsSink) -> None:
    sink.flush()


__all__ = ["Drop", "Pipeline"]
