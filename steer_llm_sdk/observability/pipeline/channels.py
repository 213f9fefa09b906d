"""Channels: one per sink, each with a bounded backlog, its own delivery thread and counters.

A sink that hangs fills only its own backlog (overflow is counted as that sink's
``dropped``) and never delays the others. A sink that declares ``nonblocking = True`` (it never
waits on I/O, locks held for long, or other threads) is delivered to by the flush thread
itself: no backlog, no thread, one GIL hand-off less per batch.
"""

from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional

from .. import _native
from .._log import rate_limited
from .._native import Empty, SimpleQueue
from ..models import BaseMetrics
from ..sink import MetricsSink, close, sink_name
from .accounting import OnFailure
from .intake import Wake
from .threads import thread_alive

STOP = object()  # ends a delivery thread after the sink is closed


class FlushMarker:
    """Travels through the pipeline behind the records accepted before a ``flush()``; done
    when every channel has passed it.

    The caller of ``flush()`` waits on the caller's thread, which a signal handler's
    exception may interrupt: ``threading.Event.wait()`` could be left holding the event's
    lock there, and the background thread that then completes the marker would block on it
    for good. The marker is completed by a token put in a ``queue.SimpleQueue`` instead
    (C code both ways, interrupted cleanly or not at all).
    """

    __slots__ = ("remaining", "_done", "failed")

    def __init__(self) -> None:
        self.remaining = 1  # the flush thread's own arrival; channels are added when forwarded
        self._done: SimpleQueue[None] = SimpleQueue()
        self.failed = False  # a sink's flush() raised (an export failed, say)

    def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for every stage to pass; returns whether they
        did. For the one thread that asked for the flush."""
        return _native.wait_slices(self._taken, timeout)

    def _taken(self, timeout: float) -> bool:
        try:
            self._done.get(True, timeout)
        except Empty:
            return False
        return True


class Channel:
    """One sink's backlog, delivery thread and counters; counters and backlog are guarded by
    the pipeline's lock (passed in)."""

    __slots__ = (
        "sink",
        "name",
        "nonblocking",
        "lock",
        "limit",
        "on_failure",
        "backlog",
        "wake",
        "pending",
        "received",
        "delivered",
        "failed",
        "errors",
        "dropped",
        "thread",
        "stopped",
    )

    def __init__(
        self, sink: MetricsSink, name: str, lock: Any, limit: int, on_failure: OnFailure
    ) -> None:
        self.sink = sink
        self.name = name
        self.nonblocking = getattr(sink, "nonblocking", False) is True
        self.lock = lock
        self.limit = limit  # backlog bound, in records
        self.on_failure = on_failure
        self.backlog: Deque[Any] = deque()
        self.wake = Wake()  # a token per backlog item posted; C calls both ways
        self.pending = 0  # records in the backlog or being delivered
        self.received = 0
        self.delivered = 0
        self.failed = 0  # records in calls that raised
        self.errors = 0  # calls that raised (record, record_batch, flush, close)
        self.dropped = 0  # records refused: the backlog was full, or the channel stopped
        self.thread: Optional[Any] = None  # a threading.Thread or _native.NativeThread
        self.stopped = False  # STOP was posted: nothing offered later will be delivered

    def counters(self) -> Dict[str, int]:
        return {
            "received": self.received,
            "delivered": self.delivered,
            "failed": self.failed,
            "errors": self.errors,
            "dropped": self.dropped,
            "pending": self.pending,
        }

    # ------------------------------------------------------------------ flush thread side
    @property
    def alive(self) -> bool:
        """Whether records dispatched to this channel will be delivered (nonblocking, or its
        thread runs)."""
        return self.nonblocking or (self.thread is not None and thread_alive(self.thread))

    def start(self) -> None:
        """Start a delivery thread (none for a nonblocking sink), replacing the current one
        (lock held; see ``Pipeline.start``)."""
        if self.nonblocking:
            return
        thread = _native.new_thread(self._run, f"steer-metrics-sink-{self.name}")
        self.thread = thread  # before start(): an interrupted start is noticed as not alive
        thread.start()

    def offer(self, batch: List[BaseMetrics]) -> int:
        """Append to the backlog within its bound (lock held). Returns how many records
        were refused (counted as ``dropped``): those beyond the bound, or all of them once
        :data:`STOP` was posted (a batch the flush thread finished after a ``shutdown()``
        deadline); the caller says so once it has released the lock (:meth:`refused`)."""
        self.received += len(batch)
        room = 0 if self.stopped else self.limit - self.pending
        if room < len(batch):
            refused = len(batch) - max(room, 0)
            self.dropped += refused
            if room <= 0:
                return refused
            batch = batch[:room]
        else:
            refused = 0
        self.backlog.append(batch)
        self.pending += len(batch)
        self.wake.set()
        return refused

    def refused(self, count: int) -> None:
        """Log that :meth:`offer` refused ``count`` records (without the lock: a logging
        handler is the application's code, and may be slow)."""
        if self.stopped:
            event, key = "steer_llm_sdk sink is closed; dropping records for it", "closed"
        else:
            event, key = "steer_llm_sdk sink is not keeping up; dropping records for it", "full"
        rate_limited.warning(f"sink_queue_{key}:{self.name}", event, sink=self.name, dropped=count)

    def accept_direct(self, batch: List[BaseMetrics]) -> None:
        """Count a batch the flush thread will deliver itself (lock held)."""
        self.received += len(batch)
        self.pending += len(batch)

    def post(self, item: Any) -> None:
        """Queue a flush marker or :data:`STOP` (lock held)."""
        if type(item) is FlushMarker:
            item.remaining += 1
        elif item is STOP:
            self.stopped = True
        self.backlog.append(item)
        self.wake.set()

    # ------------------------------------------------------------------ delivery
    def _run(self) -> None:
        me = _native.current_thread()
        wake = self.wake
        while True:
            with self.lock:
                replaced = self.thread is not me
                item = self.backlog.popleft() if self.backlog and not replaced else None
            if replaced:  # (see Pipeline.start): end
                wake.set()  # the wake-up may have been meant for the new one
                return
            if item is None:
                # Tokens are put after the item is appended (lock held), so an item that
                # arrives after the check above leaves a token: no wake-up is lost.
                wake.wait(_native.TIMEOUT_MAX)
                continue
            try:
                if not self.handle(item):
                    return
            except BaseException as exc:  # noqa: B036 - nothing may end this thread
                self.on_failure("internal:channel", self.sink, exc)

    def handle(self, item: Any) -> bool:
        """Deliver one backlog item; False after :data:`STOP`."""
        if item is STOP:
            self.call(close)
            return False
        if type(item) is FlushMarker:
            if not self.call(flush_sink):
                item.failed = True
            arrive(self.lock, item)
        else:
            self.deliver(item)
        return True

    def deliver_backlog(self) -> None:
        """Deliver what the backlog holds on the calling thread (threads not running)."""
        while self.backlog:
            item = self.backlog.popleft()
            if item is not STOP:
                self.handle(item)

    def deliver(self, batch: List[BaseMetrics]) -> None:
        """Hand one batch to the sink, counting per record when the sink has no batch call.

        ``record_batch`` gets a list of its own: every channel is given the same ``batch``,
        and a sink that changes what it got (filters it, appends to it) must change neither
        what the other sinks get nor the counts, which are of ``batch`` as it came."""
        sink = self.sink
        size = len(batch)
        ok = errors = 0
        record_batch = getattr(sink, "record_batch", None)
        try:
            if record_batch is not None:
                try:
                    record_batch(list(batch))
                    ok = size
                except BaseException as exc:  # noqa: B036 - user code: SystemExit too
                    errors = 1
                    self.on_failure(f"sink_error:{self.name}", sink, exc)
            else:
                record = sink.record
                for metrics in batch:
                    try:
                        record(metrics)
                        ok += 1
                    except BaseException as exc:  # noqa: B036
                        errors += 1
                        self.on_failure(f"sink_error:{self.name}", sink, exc)
        finally:
            # Settled even when the loop is left early: by a signal handler's exception
            # raised while a failure was logged on the caller's thread (inline delivery),
            # which is the caller's. What was not handed to the sink counts as failed.
            with self.lock:
                self.delivered += ok
                self.failed += size - ok
                self.errors += errors
                self.pending -= size

    def call(self, fn: Callable[[MetricsSink], None]) -> bool:
        """``fn(sink)`` (flush or close), counting a failure. Returns whether it succeeded."""
        try:
            fn(self.sink)
        except BaseException as exc:  # noqa: B036
            with self.lock:
                self.errors += 1
            self.on_failure(f"sink_error:{self.name}", self.sink, exc)
            return False
        return True


def arrive(lock: Any, marker: FlushMarker) -> None:
    """One more stage has passed ``marker``."""
    with lock:
        marker.remaining -= 1
        if marker.remaining == 0:
            marker._done.put(None)


def make_channels(
    sinks: List[MetricsSink], lock: Any, limit: int, on_failure: OnFailure
) -> List[Channel]:
    """One channel per sink, named uniquely (``name``, ``name#2``, ...)."""
    seen: Dict[str, int] = {}
    channels = []
    for sink in sinks:
        base = sink_name(sink)
        count = seen.get(base, 0) + 1
        seen[base] = count
        name = base if count == 1 else f"{base}#{count}"
        channels.append(Channel(sink, name, lock, limit, on_failure))
    return channels


def flush_sink(sink: MetricsSink) -> None:
    """``sink.flush()``, as the callable that ``Channel.call`` counts failures of."""
    sink.flush()


__all__ = [
    "STOP",
    "Channel",
    "FlushMarker",
    "arrive",
    "flush_sink",
    "close",
    "make_channels",
]
