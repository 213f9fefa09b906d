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

Records are processed one by one on the flush thread, each behind a guard that costs
nothing until it fires (:func:`_each`): a record whose enrichment, sanitising or roll-up
fails is counted, and the rest of its batch goes on.

The caller's thread only appends, wakes and, once per batch, checks that the threads run;
each of these survives an exception raised there by a signal handler (see :mod:`.intake`):
a thread start it interrupted is noticed and redone on a later record, and a thread
replaced that way ends on its own (:meth:`Pipeline.start`).

At interpreter exit on Python 3.12+ no thread may be started: if the threads never ran,
:meth:`Pipeline.drain_inline` processes the queue on the exiting thread. After ``os.fork()``
:meth:`Pipeline.reset_after_fork` gives the child fresh locks, queues, threads and counters;
whatever the parent had queued stays the parent's to deliver.
"""

import time
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

from ..._secrets import redact
from ...pricing import Pricer
from .. import _native
from .._log import describe, rate_limited
from ..models import BaseMetrics
from ..rollup import UsageRollup
from ..sink import MetricsSink, close
from .accounting import Accounting, Drop
from .admit import Admitter
from .channels import (
    STOP,
    Channel,
    FlushMarker,
    arrive,
    flush_sink,
    join_thread,
    make_channels,
    thread_alive,
)
from .enrich import Enricher
from .intake import Admit, Intake, Wake

#: Waits for the flush thread's wake-up at most ``timeout`` seconds (injectable, so tests
#: can drive the batch timeout with a manual clock).
Waiter = Callable[[Wake, float], Any]


def _wait(wake: Wake, timeout: float) -> bool:
    return wake.wait(timeout)


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
        on_fork_noticed: called when a record finds the process forked without Python's
            at-fork hooks, to reset everything those hooks would have (default: this
            pipeline only).
        wait: how the flush thread waits for its wake-up (default :meth:`Wake.wait`).
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
        on_fork_noticed: Optional[Callable[[], None]] = None,
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
        self._on_fork_noticed = on_fork_noticed
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
        self.worker: Optional[Any] = None  # a threading.Thread or _native.NativeThread
        self.thread_idents: frozenset = frozenset()
        self.channels: Tuple[Channel, ...] = tuple(
            make_channels(self._sinks, self.lock, self.sink_queue_size, self._log_failure)
        )
        self.markers_queued = 0
        # A child starts with empty windows: the parent rolls up what it delivered.
        self.rollup = UsageRollup(self.rollup_seconds) if self.rollup_seconds > 0 else None
        self.internal_restarts = 0  # background threads found dead and started again
        self.stop_posted = False
        self.no_threads = False  # starting a thread was refused (interpreter shutdown)

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
        """Start the flush and delivery threads that do not run: all of them the first
        time, later any that died, or whose start was interrupted. Returns whether they run.

        Called on the caller's thread (for the first record of each batch), where an
        exception raised by a signal handler may interrupt ``Thread.start()`` anywhere: the
        thread may then have started, or died at once, or be about to run. So the thread
        is stored before it is started, a later call starts a new one if it does not look
        alive, and a thread that finds itself replaced ends (see :meth:`_run_worker` and
        ``Channel._run``), so that two never work side by side for long.

        At interpreter shutdown (Python 3.12+) starting a thread raises; the records then
        wait for :meth:`drain_inline`, which the exit handler calls.
        """
        with self.lock:
            first = not self.intake.started
            self.intake.started = True
            if self.no_threads:
                return False
            if self.stopping:
                return self.worker is not None
            try:
                self._start_missing(first)
            except RuntimeError:  # at interpreter shutdown: the exit drain delivers
                self.no_threads = True
                return False
            finally:
                self._refresh_idents()
            return True

    def _start_missing(self, first: bool) -> None:
        """Start every thread that does not run (lock held); one that ran before and died
        counts as an internal restart."""
        for channel in self.channels:
            if not channel.alive:
                if not first and channel.thread is not None:
                    self.internal_restarts += 1
                channel.start()
        worker = self.worker
        if worker is None or not thread_alive(worker):
            if not first and worker is not None:
                self.internal_restarts += 1
            worker = _native.new_thread(self._run_worker, "steer-metrics-flush")
            self.worker = worker  # before start(): see start()
            worker.start()

    def _refresh_idents(self) -> None:
        idents = {c.thread.ident for c in self.channels if c.thread is not None}
        if self.worker is not None:
            idents.add(self.worker.ident)
        self.thread_idents = frozenset(idents)

    @property
    def running(self) -> bool:
        worker = self.worker
        return worker is not None and thread_alive(worker)

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
        if thread is not None and thread is not _native.current_thread():
            return join_thread(thread, timeout)
        if thread is None:
            channel.deliver_backlog()
            channel.call(close)
        return True

    # ------------------------------------------------------------------ flush thread
    def _run_worker(self) -> None:
        wake = self.intake.wake
        me = _native.current_thread()
        while self.worker is me:
            self._wait(wake, self.batch_timeout)
            if self.worker is not me:  # replaced while waiting: pass the wake-up on
                wake.set()
                return
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

    def _lose_in_flight(self) -> None:
        """After a batch failed: the records taken and not yet handed to the channels are
        lost; count them."""
        with self.lock:
            lost, self.accounting.in_flight = self.accounting.in_flight, 0
            self.accounting.lose(Drop.INTERNAL_ERROR, lost)

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

    def threads(self) -> List[Any]:
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
        """Move everything queued now through enrichment and admission into the channels.

        Raises only when the pipeline itself failed (each record's steps are guarded): the
        batch's records not yet handed on are then counted as lost, and its flush markers
        complete as failed, so that ``flush()`` says so at once.
        """
        accounting = self.accounting
        while True:
            with self.lock:
                if not self.intake.queue:
                    return
                records, markers = self._take()
                accounting.taken += len(records)
                accounting.in_flight = len(records)
            try:
                self._process(records, markers)
            except BaseException:  # noqa: B036 - counted here, reported by the caller
                self._lose_in_flight()
                for marker in markers:  # those that have not arrived yet
                    marker.failed = True
                    arrive(self.lock, marker)
                raise

    def _process(self, records: List[BaseMetrics], markers: List[FlushMarker]) -> None:
        """Enrich, admit, roll up and dispatch one batch; deliver to inline sinks. Each
        marker leaves ``markers`` as it arrives."""
        accounting = self.accounting
        _each(self.enricher.enrich, records, self._enrich_failed)
        kept, sanitized, filtered, errors, invalid = self.admitter.admit(records)
        with self.lock:
            accounting.in_flight = 0
            accounting.sanitized += sanitized
            accounting.filtered += filtered
            accounting.lose(Drop.FILTER_ERROR, errors)
            accounting.lose(Drop.INVALID, invalid)
            rollup = self.rollup
            if rollup is not None:
                requests = (r for r in kept if r.metric_type == "request")
                _each(rollup.add, requests, self._rollup_failed)
            inline = self._dispatch(kept, markers)
        for channel in inline:  # on this thread, outside the lock
            if kept:
                channel.deliver(kept)
            for marker in markers:
                if not channel.call(flush_sink):
                    marker.failed = True
        while markers:
            arrive(self.lock, markers.pop())

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
        if _native.get_ident() in self.thread_idents:
            return False
        if not self.running:
            if self.stopping:  # after stop(): the sinks are closed; nothing to call
                return not self.intake.queue
            if not self.start():  # only at interpreter shutdown: no thread may start
                return self.drain_inline(time.monotonic() + timeout)
        marker = FlushMarker()
        with self.lock:
            self.markers_queued += 1
            try:
                self.intake.queue.append(marker)
            except BaseException:  # noqa: B036 - a signal handler's, before the append?
                if not any(item is marker for item in self.intake.queue):
                    self.markers_queued -= 1
                raise
        self.intake.wake.set()
        return marker.wait(timeout) and not marker.failed

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
        me = _native.current_thread()
        threads = [self.worker] + [c.thread for c in channels]
        for thread in threads:
            if thread is not None and thread is not me:
                join_thread(thread, max(0.0, deadline - time.monotonic()))
        for channel in channels:
            if channel.thread is None:  # never ran: close on this thread
                channel.call(close)
        return complete and not any(t is not None and thread_alive(t) for t in threads)

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
                channel.call(flush_sink)
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
        if self.enricher.prices is not None:
            self.enricher.prices.after_fork()
        self._init_runtime()
        if self._on_reset is not None:
            self._on_reset()

    def notice_fork(self) -> None:
        """Called when this process turns out to be a child forked without Python's at-fork
        hooks, outside admission (a flush, the exit drain): reset as at admission; what
        the queue holds was the parent's."""
        self._forked_without_hooks(len(self.intake.queue))

    def _forked_without_hooks(self, inherited: int) -> None:
        """The intake found a changed pid: reset the whole process's registered parts
        (``on_fork_noticed``: sinks, identity, every collector, this one included), or at
        least this pipeline, then count the ``inherited`` records the parent delivers."""
        if self._on_fork_noticed is not None:
            self._on_fork_noticed()
        if self.intake.forked():  # not reset by the above (not registered, or it failed)
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

    def _enrich_failed(self, record: BaseMetrics, exc: BaseException) -> None:
        """Enriching ``record`` raised (a price of absurd token counts, say): it is kept with
        what was filled in, and admission checks every field of it, as for a record built
        by user code. An internal error."""
        record._trusted = False
        self._internal_error("enrich", exc)

    def _rollup_failed(self, record: BaseMetrics, exc: BaseException) -> None:
        """Adding ``record`` to its usage window raised: it is delivered without being
        summed. An internal error."""
        self._internal_error("rollup", exc)

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


def _each(
    fn: Callable[[Any], Any],
    records: Iterable[BaseMetrics],
    on_error: Callable[[BaseMetrics, BaseException], None],
) -> None:
    """``fn(record)`` for every record; one that raises goes to ``on_error(record, exc)``
    and the rest are still done. One try per run of records that succeed rather than one
    per record: the loop resumes the same iterator after a failure (a try costs a little
    per entry before Python 3.11)."""
    iterator = iter(records)
    record: Any = None
    while True:
        try:
            for record in iterator:
                fn(record)
            return
        except BaseException as exc:  # noqa: B036 - user code (usage extractors) too
            on_error(record, exc)


__all__ = ["Drop", "Pipeline"]
