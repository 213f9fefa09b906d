"""The pipeline of one collector: the flush thread's loop and the parts it ties together
(see the package docstring for the data path)."""

import time
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

from ..._secrets import redact
from ...pricing import Pricer
from .. import _native
from .._log import describe, rate_limited
from ..models import BaseMetrics, trust
from ..rollup import UsageRollup
from ..runtime.forks import threads_stall_forks
from ..sink import MetricsSink, close
from ..tracing import SpanStage
from .accounting import Accounting, Drop
from .admit import Admitter
from .channels import STOP, Channel, FlushMarker, arrive, flush_sink, make_channels
from .enrich import Enricher
from .intake import Admit, Intake, Wake
from .threads import Threads, join_thread

#: Waits for the flush thread's wake-up at most ``timeout`` seconds (injectable, so tests
#: can drive the batch timeout with a manual clock).
Waiter = Callable[[Wake, float], Any]


def _wait(wake: Wake, timeout: float) -> bool:
    return wake.wait(timeout)


#: The deadline of one delivery on the caller's thread (checked between batches).
INLINE_DEADLINE_SECONDS = 5.0


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
        trace_spans: start a GenAI span for each admitted call that kept a context, and
            attach the sink that ends them (see :mod:`..tracing`).
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
        trace_spans: bool = False,
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
        self.spans = SpanStage(trace_spans, self.add_sink, self._internal_error)
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
        self.threads = Threads(self._run_worker)
        # In a uWSGI master forking without Python's fork hooks, a thread of ours running
        # when it forks leaves the GIL held in that worker for good (threads_stall_forks):
        # there no thread starts, and each record is delivered on the caller's thread.
        self.deliver_at_once = threads_stall_forks()
        self.threads.refused = self.deliver_at_once
        self.channels: Tuple[Channel, ...] = tuple(
            make_channels(self._sinks, self.lock, self.sink_queue_size, self._log_failure)
        )
        self.markers_queued = 0
        # A child starts with empty windows: the parent rolls up what it delivered.
        self.rollup = UsageRollup(self.rollup_seconds) if self.rollup_seconds > 0 else None
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
        """Start the flush and delivery threads that do not run: all of them the first
        time, later any that died, or whose start was interrupted (see :mod:`.threads`).
        Returns whether they run. Called on the caller's thread, for the first record of
        each batch.

        At interpreter shutdown (Python 3.12+) starting a thread raises; the records then
        wait for :meth:`drain_inline`, which the exit handler calls.
        """
        with self.lock:
            first = not self.intake.started
            self.intake.started = True
            threads = self.threads
            if threads.refused:
                if self.deliver_at_once:
                    self.drain_inline(time.monotonic() + INLINE_DEADLINE_SECONDS)
                return False
            if self.stopping:
                return threads.worker is not None
            try:
                threads.start_missing(self.channels, first)
            except RuntimeError:  # at interpreter shutdown: the exit drain delivers
                return False
            return True

    @property
    def running(self) -> bool:
        """Whether the flush thread runs."""
        return self.threads.running

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
            if self.threads.worker is not None:
                channel.start()
                self.threads.refresh(self.channels)

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
        threads = self.threads
        while threads.worker is me:
            self._wait(wake, self.batch_timeout)
            if threads.worker is not me:  # replaced while waiting: pass the wake-up on
                wake.set()
                return
            wake.clear()
            self.intake.wake_pending = False
            try:
                self._drain()
                self._roll_up(final=False)
                if self.stopping and not self.intake.queue:
                    self._roll_up(final=True)  # the open windows, before the sinks close
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
            if self.threads.worker is None:
                return
            self.intake.wake.set()
        except BaseException:  # noqa: B036 - runs from a garbage-collection finalizer
            pass

    def join(self, deadline: float) -> bool:
        """Wait until ``deadline`` (``time.monotonic()``) for every background thread but
        the calling one to end; returns whether none is left alive. Never raises."""
        return self.threads.join(self.channels, deadline)

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
        while True:
            with self.lock:
                if not self.intake.queue:
                    return
                records, markers = self._take()
                self.accounting.take(len(records))
            self._run_batch(records, markers)

    def _run_batch(self, records: List[BaseMetrics], markers: List[FlushMarker]) -> None:
        """:meth:`_process` one batch already counted as taken; if the pipeline itself
        fails, count what was not handed on as lost, complete the markers that have not
        arrived as failed (so that ``flush()`` says so at once) and raise."""
        try:
            self._process(records, markers)
        except BaseException:  # noqa: B036 - counted here, reported by the caller
            self.accounting.lose_in_flight()
            for marker in markers:  # those that have not arrived yet
                marker.failed = True
                arrive(self.lock, marker)
            raise

    def _process(self, records: List[BaseMetrics], markers: List[FlushMarker]) -> None:
        """Enrich, admit, start spans, roll up and dispatch one batch; deliver to nonblocking
        sinks. Each marker leaves ``markers`` as it arrives."""
        self.spans.refresh()
        enricher = self.enricher
        _each(enricher.enrich, enricher.pending(records), self._enrich_failed)
        kept, sanitized, filtered, errors, invalid = self.admitter.admit(records)
        self.spans.start(kept)  # after the filters: a filtered record gets no span
        with self.lock:
            self.accounting.settle(sanitized, filtered, errors, invalid)
            rollup = self.rollup
            if rollup is not None:
                requests = (r for r in kept if r.metric_type == "request")
                _each(rollup.add, requests, self._rollup_failed)
            direct, refused = self._dispatch(kept, markers)
        for channel, count in refused:  # said outside the lock: logging is the app's code
            channel.refused(count)
        for channel in direct:  # on this thread, outside the lock
            if kept:
                channel.deliver(kept)
            for marker in markers:
                if not channel.call(flush_sink):
                    marker.failed = True
        while markers:
            arrive(self.lock, markers.pop())

    def _roll_up(self, final: bool) -> None:
        """The roll-up stage's output: the windows that have ended (every open one when
        ``final``) as UsageMetrics, taken and processed as a batch of their own straight
        to the channels (they never enter the caller-side queue). On the flush thread, or
        on the thread draining inline."""
        with self.lock:
            rollup = self.rollup
            if rollup is None or not len(rollup):
                return
            ready: List[BaseMetrics] = list(rollup.take(None if final else self.clock()))
            if not ready:
                return
            self.accounting.take(len(ready))
        self._run_batch(ready, [])

    def _dispatch(
        self, kept: List[BaseMetrics], markers: List[FlushMarker]
    ) -> Tuple[List[Channel], List[Tuple[Channel, int]]]:
        """Offer a batch and markers to every channel (lock held); returns the channels the
        flush thread delivers to itself, and each channel that refused records with how
        many."""
        direct = []
        refused = []
        for channel in self.channels:
            if channel.nonblocking:
                direct.append(channel)
                channel.accept_direct(kept)
                continue
            if kept:
                count = channel.offer(kept)
                if count:
                    refused.append((channel, count))
            for marker in markers:
                channel.post(marker)
        return direct, refused

    # ------------------------------------------------------------------ flush / stop
    def flush(self, timeout: float) -> bool:
        """Wait until everything accepted before the call reached every sink and each sink's
        ``flush()`` returned. Returns False at the deadline, when a sink's ``flush()`` raised
        (an OTLP export that failed), or at once when called from one of this pipeline's own
        threads (which cannot wait for themselves)."""
        if _native.get_ident() in self.threads.idents:
            return False
        if not self.running:
            if self.stopping:  # after stop(): the sinks are closed; nothing to call
                self.refuse_late()
                return True
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
        complete = self.flush(max(0.0, deadline - time.monotonic()))
        self.stopping = True
        threads = self.threads
        worker = threads.worker
        self.intake.wake.set()
        if worker is not None and worker is not _native.current_thread():
            # The flush thread rolls up the open windows and tells the channels to stop.
            join_thread(worker, max(0.0, deadline - time.monotonic()))
        self._post_stop()  # in case it could not (stuck, or never ran)
        channels = self.channels
        ended = threads.join(channels, deadline)
        for channel in channels:
            if channel.thread is None:  # never ran: close on this thread
                channel.call(close)
        if not self.running:
            self.refuse_late()
        return complete and ended

    def refuse_late(self) -> None:
        """After the flush thread's last pass (stopped, and not running): count what is
        still queued as ``after_shutdown``. A thread that was already inside the admission
        function when :meth:`close` took effect queues its record after that pass, where
        nothing will ever deliver it. Flush markers among it complete, failed. Called again
        wherever the counts are read or awaited, for a record queued later still."""
        with self.lock:
            queue = self.intake.queue
            if not queue:
                return
            records = 0
            while queue:
                item = queue.popleft()
                if type(item) is FlushMarker:
                    self.markers_queued -= 1
                    item.failed = True
                    arrive(self.lock, item)
                else:
                    records += 1
            self.accounting.lost_queued(Drop.AFTER_SHUTDOWN, records)

    def drain_inline(self, deadline: float) -> bool:
        """Deliver everything queued on the calling thread (threads not running).

        Used at interpreter exit when no thread may be started, and by ``flush()`` before the
        threads ever ran. Sinks are called directly, so ``deadline`` is checked between
        batches only.
        """
        with self.lock:  # re-entrant: serialises concurrent inline drains
            while self.intake.queue:
                if time.monotonic() > deadline:
                    return False
                self._drain()
                for channel in self.channels:
                    channel.deliver_backlog()
            self._roll_up(final=True)  # after every request, so the last windows hold them
            for channel in self.channels:
                channel.deliver_backlog()
                channel.call(flush_sink)
        return True

    # ------------------------------------------------------------------ accounting
    def snapshot(self) -> dict:
        """Consistent copy of every counter (see ``CollectorStats``)."""
        if self.stopping and not self.running:
            self.refuse_late()
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
        self.accounting.lost(Drop.FORK, inherited)

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
        trust(record, False)
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


__all__ = ["Pipeline"]
