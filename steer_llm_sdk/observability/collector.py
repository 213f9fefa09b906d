"""MetricsCollector: the entry point of records into the pipeline, and its accounting.

Module-level helpers manage a process-wide default collector (:func:`configure`,
:func:`get_collector`, :func:`flush`, :func:`shutdown`), deliver pending records at
interpreter exit, and reset every collector in a forked child.
"""

import atexit
import os
import threading
import time
import weakref
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

from ..pricing import load_pricing
from ._log import rate_limited
from ._worker import Pipeline
from .config import MetricsConfig
from .models import BaseMetrics, sanitize
from .sampling import Sampler
from .sinks.base import MetricsSink
from .sinks.in_memory import InMemoryMetricsSink

_getpid = os.getpid
_live: "weakref.WeakSet[MetricsCollector]" = weakref.WeakSet()


class SinkStats:
    """Delivery counters of one sink.

    Attributes:
        received: records dispatched to this sink since it was added.
        delivered: records its ``record``/``record_batch`` accepted.
        failed: records in calls that raised.
        errors: calls that raised (including ``flush`` and ``close``).
        dropped: records refused because the sink's backlog was full.
        pending: records waiting in its backlog or being delivered.

    Invariant: ``received == delivered + failed + dropped + pending``.
    """

    __slots__ = ("received", "delivered", "failed", "errors", "dropped", "pending")

    def __init__(
        self, received: int, delivered: int, failed: int, errors: int, dropped: int, pending: int
    ) -> None:
        self.received = received
        self.delivered = delivered
        self.failed = failed
        self.errors = errors
        self.dropped = dropped
        self.pending = pending

    def to_dict(self) -> Dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"SinkStats({self.to_dict()})"


class CollectorStats:
    """A consistent snapshot of a collector's accounting.

    Attributes:
        recorded: every record offered to ``record()`` (while enabled).
        sampled_out: refused by sampling.
        filtered: dropped by a filter returning None.
        dropped: refused or lost, by reason: ``queue_full``, ``after_shutdown``,
            ``filter_error``, ``invalid`` (not a metrics record), ``fork`` (inherited from
            the parent by a child forked without Python's fork hooks).
        sanitized: records kept with clamped, truncated or stringified values.
        queued: accepted records not yet through the filters.
        pending: ``queued`` plus every sink's ``pending``.
        internal_errors: failures inside the pipeline itself (should stay 0).
        sinks: name -> :class:`SinkStats`.

    For every sink present since the collector was created:
    ``recorded == sampled_out + filtered + sum(dropped.values()) + queued + delivered + failed
    + sink dropped + sink pending``. Once idle (``pending == 0``) that is the promise that
    nothing is lost without a counter.
    """

    __slots__ = (
        "recorded",
        "sampled_out",
        "filtered",
        "dropped",
        "sanitized",
        "queued",
        "pending",
        "internal_errors",
        "sinks",
    )

    def __init__(self, snapshot: Dict[str, Any]) -> None:
        self.recorded: int = snapshot["recorded"]
        self.sampled_out: int = snapshot["sampled_out"]
        self.filtered: int = snapshot["filtered"]
        self.dropped: Dict[str, int] = snapshot["dropped"]
        self.sanitized: int = snapshot["sanitized"]
        self.queued: int = snapshot["queued"]
        self.internal_errors: int = snapshot["internal_errors"]
        self.sinks: Dict[str, SinkStats] = {
            name: SinkStats(**values) for name, values in snapshot["sinks"].items()
        }
        self.pending: int = self.queued + sum(s.pending for s in self.sinks.values())

    def unaccounted(self, sink: str) -> int:
        """``recorded`` minus every term of the invariant for ``sink``; 0 when nothing is
        missing (for a sink present since the collector was created)."""
        s = self.sinks[sink]
        return self.recorded - (
            self.sampled_out
            + self.filtered
            + sum(self.dropped.values())
            + self.queued
            + s.delivered
            + s.failed
            + s.dropped
            + s.pending
        )

    def to_dict(self) -> Dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__ if name != "sinks"}
        out["dropped"] = dict(self.dropped)
        out["sinks"] = {name: s.to_dict() for name, s in self.sinks.items()}
        return out

    def __repr__(self) -> str:
        return f"CollectorStats({self.to_dict()})"


class MetricsCollector:
    """Takes records from any thread and delivers them to sinks in the background.

    Args:
        config: a :class:`MetricsConfig` (default: all defaults).
        sinks: where records go; more can be added with :meth:`add_sink`.

    Raises:
        TypeError: ``config`` is not a MetricsConfig, or a sink lacks ``record``/``flush``.

    Thread-safe. ``record()`` never blocks and never raises; ``flush()`` and ``shutdown()``
    return by their deadline even if a sink hangs.
    """

    def __init__(
        self, config: Optional[MetricsConfig] = None, sinks: Iterable[MetricsSink] = ()
    ) -> None:
        if config is None:
            config = MetricsConfig()
        if not isinstance(config, MetricsConfig):
            raise TypeError(f"config must be a MetricsConfig, got {type(config).__name__}")
        sinks = list(sinks)
        for sink in sinks:
            _check_sink(sink)
        self.config = config
        self._enabled = config.enabled
        self._sampler = Sampler(
            config.request_sampling_rate,
            config.streaming_sampling_rate,
            config.error_sampling_rate,
        )
        self._pipeline = Pipeline(
            sinks,
            batch_size=config.batch_size,
            batch_timeout=config.batch_timeout_seconds,
            max_queue_size=config.max_queue_size,
            sink_queue_size=config.sink_queue_size,
            filters=config.filters,
            max_attributes=config.max_attributes,
            max_attribute_length=config.max_attribute_length,
            prices=load_pricing(config.pricing) if config.enable_cost_tracking else None,
        )
        # What the tracker's inlined enqueue reads on every call, one attribute away: a flag
        # (no sampling to decide, not shut down), the queue (replaced only after a fork) and
        # the pipeline's constant thresholds.
        self._fast_path = not self._sampler.active
        self._queue = self._pipeline.queue
        self._high_water = self._pipeline.high_water
        self._batch_size = self._pipeline.batch_size
        self._pid = _getpid()
        _live.add(self)

    # ------------------------------------------------------------------ recording
    @property
    def enabled(self) -> bool:
        return self._enabled

    def record(self, metrics: BaseMetrics) -> bool:
        """Offer one record to the pipeline. Never blocks, never raises.

        Runs on the caller's thread: the enabled check, the sampling decision and one
        enqueue. Validation, filters and sinks run in the background.

        Returns:
            True if the record was accepted, False if it was refused (disabled, sampled out,
            queue full, after shutdown, not a metrics record); every refusal except
            "disabled" is counted in :meth:`stats`.
        """
        try:
            if not self._enabled:
                return False
            if not isinstance(metrics, BaseMetrics):
                self._pipeline.count("invalid")
                return False
            sampler = self._sampler
            if sampler.active and not sampler.sample(metrics):
                self._pipeline.count("sampled_out")
                return False
            if not metrics._trusted:
                # Records built or touched by user code are validated here, on the caller's
                # thread, so the flush thread's per-record work stays small (under the GIL its
                # time is taken from every other thread).
                config = self.config
                if sanitize(metrics, config.max_attributes, config.max_attribute_length):
                    self._pipeline.count("sanitized")
                metrics._trusted = True
            # Pipeline.submit() inlined (the tracker inlines the same step).
            queue = self._queue
            if self._pipeline.closed or len(queue) >= self._high_water:
                return self._pipeline.submit(metrics)  # yield, refuse or count: the slow path
            queue.append(metrics)
            size = len(queue)
            if size == 1 or size >= self._batch_size:
                return self._first_or_full(size)
            return True
        except Exception as exc:  # never into user code
            try:
                self._pipeline._internal_error("record", exc)
            except Exception:
                pass
            return False

    def _first_or_full(self, size: int) -> bool:
        """The record just queued is the first of a batch or fills one: check for a fork,
        start the threads if needed, wake the flush thread when the batch is full.

        The pid check lives here rather than on every record (a getpid() system call costs
        about as much as the rest of ``record()``). ``os.fork()`` is handled exactly by the
        at-fork hook; this check catches forks made from C without Python's hooks (uWSGI
        without ``py-call-uwsgi-fork-hooks``). Such a child inherits the parent's queue; what
        it holds when the fork is noticed is dropped and counted as ``dropped["fork"]``,
        because the parent delivers its own copy of those records.
        """
        pipeline = self._pipeline
        if self._pid != _getpid():
            inherited = len(pipeline.queue)
            self._after_fork()
            with pipeline.lock:
                pipeline.dropped["fork"] += inherited
            return False
        if not pipeline.started:
            pipeline.start()
        if size >= pipeline.batch_size and not pipeline.wake_pending:
            pipeline.wake_pending = True
            pipeline.wake.set()
        return True

    def track_request(
        self,
        provider: str,
        model: Optional[str] = None,
        method: str = "generate",
        response_format: str = "text",
        **options: Any,
    ) -> Any:
        """Measure a call: a context manager yielding the RequestMetrics, or a decorator.

        See :func:`steer_llm_sdk.observability.track_request` for the options.
        """
        from .tracking import Tracker

        return Tracker(self, provider, model, method, response_format, **options)

    # ------------------------------------------------------------------ sinks
    @property
    def sinks(self) -> Tuple[MetricsSink, ...]:
        """The current sinks, in the order they were added."""
        return self._pipeline.sinks

    def add_sink(self, sink: MetricsSink) -> None:
        """Start delivering to ``sink`` too (records dispatched from now on)."""
        _check_sink(sink)
        self._pipeline.add_sink(sink)

    def remove_sink(self, sink: MetricsSink, timeout: Optional[float] = None) -> bool:
        """Stop delivering to ``sink`` once it has what was already dispatched to it, then
        close it. Returns False if it was not attached or did not finish by the deadline."""
        return self._pipeline.remove_sink(sink, self._timeout(timeout))

    # ------------------------------------------------------------------ flush and shutdown
    def flush(self, timeout: Optional[float] = None) -> bool:
        """Deliver everything accepted before this call and flush every sink.

        Args:
            timeout: seconds to wait at most; None means ``config.shutdown_timeout_seconds``.

        Returns:
            True once every such record reached every sink and each sink's ``flush()``
            returned; False at the deadline (``stats().pending`` says what is left), or at
            once when called from a filter or sink (which run on the threads that would have
            to do the work). Never raises.
        """
        try:
            if self._pid != _getpid():
                self._after_fork()
            return self._pipeline.flush(self._timeout(timeout))
        except Exception as exc:
            self._pipeline._internal_error("flush", exc)
            return False

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Flush, stop the background threads and close the sinks, within ``timeout``.

        Later records are refused and counted as ``dropped["after_shutdown"]``. Idempotent.

        Returns:
            True if everything was delivered and every thread stopped in time.
        """
        self._fast_path = False
        try:
            return self._pipeline.stop(self._timeout(timeout))
        except Exception as exc:
            self._pipeline._internal_error("shutdown", exc)
            return False

    @property
    def is_shutdown(self) -> bool:
        return self._pipeline.closed

    def stats(self) -> CollectorStats:
        """A consistent snapshot of the accounting (see :class:`CollectorStats`)."""
        return CollectorStats(self._pipeline.snapshot())

    def _timeout(self, timeout: Optional[float]) -> float:
        if timeout is None:
            return self.config.shutdown_timeout_seconds
        return max(0.0, float(timeout))

    # ------------------------------------------------------------------ process lifecycle
    def _after_fork(self) -> None:
        self._pid = _getpid()
        self._pipeline.reset_after_fork()
        self._queue = self._pipeline.queue

    def _at_exit(self) -> None:
        if not self.config.flush_on_exit or self._pipeline.closed:
            return
        timeout = self.config.shutdown_timeout_seconds
        if self._pid != _getpid():
            self._after_fork()
        if not self._pipeline.running:
            self._fast_path = False
            self._pipeline.closed = True
            self._pipeline.drain_inline(time.monotonic() + timeout)
        self.shutdown(timeout)

    def __repr__(self) -> str:
        names = ", ".join(type(s).__name__ for s in self.sinks)
        return f"MetricsCollector(enabled={self._enabled}, sinks=[{names}])"


def _check_sink(sink: Any) -> None:
    if not (callable(getattr(sink, "record", None)) and callable(getattr(sink, "flush", None))):
        raise TypeError(f"{sink!r} is not a MetricsSink: it needs record() and flush() methods")


# ---------------------------------------------------------------------- default collector
_default: Optional[MetricsCollector] = None
_default_lock = threading.Lock()


def configure(
    config: Optional[MetricsConfig] = None, sinks: Sequence[MetricsSink] = ()
) -> MetricsCollector:
    """Set the process-wide default collector and return it.

    Args:
        config: default ``MetricsConfig.from_env()`` (``STEER_METRICS_*`` variables).
        sinks: default one :class:`InMemoryMetricsSink`.

    A previous default collector is shut down (its pending records delivered first).
    Module-level ``track_request`` resolves the default at call time, so calling this after
    decorating functions applies to them.
    """
    global _default
    collector = MetricsCollector(
        config if config is not None else MetricsConfig.from_env(),
        list(sinks) if sinks else [InMemoryMetricsSink()],
    )
    with _default_lock:
        previous, _default = _default, collector
    if previous is not None:
        previous.shutdown()
    return collector


def _swap_default(collector: Optional[MetricsCollector]) -> Optional[MetricsCollector]:
    """Install ``collector`` as the default without shutting the previous one down; return
    the previous one (for test helpers that restore it)."""
    global _default
    with _default_lock:
        previous, _default = _default, collector
    return previous


def get_collector() -> MetricsCollector:
    """The default collector, created from the environment on first use."""
    collector = _default
    if collector is not None:
        return collector
    with _default_lock:
        if _default is None:
            globals()["_default"] = MetricsCollector(
                MetricsConfig.from_env(), [InMemoryMetricsSink()]
            )
        return _default  # type: ignore[return-value]


def flush(timeout: Optional[float] = None) -> bool:
    """Flush the default collector (see :meth:`MetricsCollector.flush`)."""
    return get_collector().flush(timeout)


def shutdown(timeout: Optional[float] = None) -> bool:
    """Shut the default collector down, if one exists."""
    collector = _default
    return collector.shutdown(timeout) if collector is not None else True


def shutdown_all(timeout: Optional[float] = None) -> bool:
    """Flush and shut down every collector of this process (each within ``timeout``, or its
    own ``shutdown_timeout_seconds``). For exit hooks such as gunicorn's ``worker_exit``.

    Returns:
        True if every collector delivered everything in time.
    """
    complete = True
    for collector in list(_live):
        if not collector.is_shutdown:
            complete = collector.shutdown(timeout) and complete
    return complete


def reset_after_fork() -> int:
    """Give every collector inherited from a parent process fresh locks, queues, threads and
    counters. Idempotent; ``os.fork()`` calls it already, hooks of pre-fork servers may too.

    Returns:
        How many collectors were reset.
    """
    reset = 0
    for collector in list(_live):
        if collector._pid != _getpid():
            collector._after_fork()
            reset += 1
    return reset


def _shutdown_all_at_exit() -> None:
    for collector in list(_live):
        try:
            collector._at_exit()
        except Exception as exc:
            rate_limited.warning(
                "exit", "steer_llm_sdk metrics exit flush failed", error=type(exc).__name__
            )


def _reset_all_after_fork() -> None:
    for collector in list(_live):
        collector._after_fork()


atexit.register(_shutdown_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_after_fork)
