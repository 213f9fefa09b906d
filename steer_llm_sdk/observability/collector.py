"""MetricsCollector: the entry point of records into the pipeline, and its accounting.

It takes part in the exit drain and fork resets of :mod:`.runtime` through
:class:`CollectorRuntime`; the process-wide default collector is made in :mod:`.lifecycle`.
"""

import time
import weakref
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from ..pricing import load_pricing
from . import runtime
from ._signals import signal_exception
from .config import MetricsConfig
from .measure.track import Tracker
from .models import BaseMetrics
from .pipeline import Pipeline
from .sampling import Sampler
from .sink import MetricsSink


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
            ``filter_error``, ``invalid`` (not a metrics record, or one whose values could
            not be checked), ``fork`` (inherited from the parent by a child forked without
            Python's fork hooks), ``internal_error`` (lost to a failure of the pipeline
            itself; should stay 0).
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
    return by their deadline even if a sink hangs. (An exception raised by a signal handler
    while one of them runs, a Celery soft time limit say, is the caller's and goes through.)

    Attributes:
        config: the :class:`MetricsConfig` it was made with.
        enabled: whether records are measured and admitted. A plain attribute (the measuring
            layers read it on every call); setting it chooses the admission function again.
            Disabling makes every tracked call run unmeasured (and uncounted) until enabled
            again.

    The library's own measuring layers (``measure/``, the client, ``instrument()``) use a
    small internal interface, documented here and nowhere else: :attr:`admit` and
    :meth:`count_internal_errors`, besides ``enabled`` and ``config``. Every way in
    (``record()``, ``track_request`` as decorator or context manager, tracked streams, the
    client, ``instrument()``) hands records to that one admission function, chosen whenever
    the collector's state changes. The process runtime (exit drain, fork resets) reaches a
    collector only through :class:`CollectorRuntime`.
    """

    #: The admission function for the current state: ``admit(record) -> bool`` with the
    #: contract of :meth:`record`. Reassigned on every state change (enabled, sampling,
    #: shutdown, fork): read it at each use, never keep it.
    admit: Callable[[BaseMetrics], bool]
    enabled: bool

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
        object.__setattr__(self, "enabled", bool(config.enabled))
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
            on_reset=_weakly(self._choose_admission),
            on_fork_noticed=runtime.fork_noticed,
            rollup_seconds=config.usage_rollup_seconds,
            trace_spans=config.trace_spans,
        )
        self._choose_admission()
        self._runtime = CollectorRuntime(self)
        runtime.register_collector(self._runtime, self._pipeline)

    def _choose_admission(self) -> None:
        """Pick the admission function for the current state (enabled, sampling, shut
        down, the current queue). Called at construction, on every state change and after
        a fork; nothing else decides how a record is admitted."""
        sampler = self._sampler
        self.admit = self._pipeline.admission(
            self.enabled, sampler.sample if sampler.active else None
        )

    def __setattr__(self, name: str, value: Any) -> None:
        # ``enabled`` stays a plain attribute (read on every measured call at attribute
        # speed, where a property would cost more than the rest of the check); setting it
        # must still choose the admission function for the new state.
        if name == "enabled":
            object.__setattr__(self, name, bool(value))
            self._choose_admission()
        else:
            object.__setattr__(self, name, value)

    def count_internal_errors(self, count: int) -> None:
        """Count ``count`` failures of the library's own measuring code (a stream chunk
        its reader could not read, say) under ``stats().internal_errors``. Thread-safe;
        never raises."""
        self._pipeline.accounting.internal_error(count)

    # ------------------------------------------------------------------ recording

    @property
    def sampling(self) -> Dict[str, float]:
        """The sampling rates in force (``request_rate``, ``streaming_rate``,
        ``error_rate``): the config's, or the last :meth:`set_sampling`'s."""
        sampler = self._sampler
        return {
            "request_rate": sampler.request_rate,
            "streaming_rate": sampler.streaming_rate,
            "error_rate": sampler.error_rate,
        }

    def set_sampling(
        self,
        request_rate: Optional[float] = None,
        streaming_rate: Optional[float] = None,
        error_rate: Optional[float] = None,
    ) -> None:
        """Change sampling rates (None keeps a rate as it is), validated like the config.

        Raises:
            ValueError: a rate outside [0, 1].
        """
        current = self._sampler
        rates = (
            current.request_rate if request_rate is None else request_rate,
            current.streaming_rate if streaming_rate is None else streaming_rate,
            current.error_rate if error_rate is None else error_rate,
        )
        for name, rate in zip(("request_rate", "streaming_rate", "error_rate"), rates):
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
                raise ValueError(f"{name} must be a number in [0, 1], got {rate!r}")
        self._sampler = Sampler(*(float(r) for r in rates))
        self._choose_admission()

    def record(self, metrics: BaseMetrics) -> bool:
        """Offer one record to the pipeline. Never blocks, never raises (but lets an
        exception raised by a signal handler through; see :mod:`._signals`).

        Runs on the caller's thread: the admission step (sampling decision, validation of a
        record built by user code, one enqueue). Filters and sinks run in the background.

        Returns:
            True if the record was accepted, False if it was refused (disabled, sampled out,
            queue full, after shutdown, not a metrics record); every refusal except
            "disabled" is counted in :meth:`stats`.
        """
        return self.admit(metrics)

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
            if self._forked():
                self._pipeline.notice_fork()
            return self._pipeline.flush(self._timeout(timeout))
        except Exception as exc:
            interrupt = signal_exception(exc)
            if interrupt is not None:  # the caller's timeout, not our failure
                raise interrupt
            self._pipeline._internal_error("flush", exc)
            return False

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Flush, stop the background threads and close the sinks, within ``timeout``.

        Later records are refused and counted as ``dropped["after_shutdown"]``. Idempotent.

        Returns:
            True if everything was delivered and every thread stopped in time.
        """
        try:
            self._pipeline.close()
            self._choose_admission()
            return self._pipeline.stop(self._timeout(timeout))
        except Exception as exc:
            interrupt = signal_exception(exc)
            if interrupt is not None:
                raise interrupt
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
    def _forked(self) -> bool:
        return self._pipeline.intake.forked()

    def _after_fork(self) -> None:
        self._pipeline.reset_after_fork()  # chooses the admission function again

    def _prepare_exit(self) -> None:
        """Early in interpreter exit, while threads may still start: start the background
        threads, so that records made later (in atexit handlers) are delivered by them,
        with deadlines, rather than by sink calls on the exiting thread."""
        if self.config.flush_on_exit and not self._pipeline.closed and not self._forked():
            self._pipeline.start()

    def _at_exit(self) -> None:
        if not self.config.flush_on_exit or self._pipeline.closed:
            return
        timeout = self.config.shutdown_timeout_seconds
        if self._forked():
            self._pipeline.notice_fork()
        pipeline = self._pipeline
        if pipeline.threads.worker is None and not pipeline.queue:
            pipeline.close()  # nothing to deliver and no thread ran: no sink needs calling
            self._choose_admission()
            return
        if not pipeline.running and not pipeline.start():
            # No thread can start any more (Python 3.12+ late in exit): deliver on this
            # thread, the one case in which sinks are called without a deadline.
            pipeline.close()
            self._choose_admission()
            pipeline.drain_inline(time.monotonic() + timeout)
        self.shutdown(timeout)

    def __repr__(self) -> str:
        names = ", ".join(type(s).__name__ for s in self.sinks)
        return f"MetricsCollector(enabled={self.enabled}, sinks=[{names}])"


class CollectorRuntime:
    """A collector's side of the runtime registry (``runtime.exits.Drainable``): what the
    exit drain and fork resets call, here and nowhere else. It holds the collector weakly
    and the collector holds it, so it lives exactly as long as the collector. No method
    raises."""

    __slots__ = ("collector", "shutdown_timeout", "__weakref__")

    def __init__(self, collector: "MetricsCollector") -> None:
        self.collector = weakref.ref(collector)
        self.shutdown_timeout = collector.config.shutdown_timeout_seconds

    def forked(self) -> bool:
        collector = self.collector()
        return collector is not None and collector._forked()

    def reset_after_fork(self) -> None:
        collector = self.collector()
        if collector is not None:
            collector._after_fork()

    def prepare_exit(self) -> None:
        collector = self.collector()
        try:
            if collector is not None:
                collector._prepare_exit()
        except Exception:
            pass

    def drain_at_exit(self) -> None:
        collector = self.collector()
        if collector is not None:
            collector._at_exit()


def _weakly(method: Any) -> Any:
    """``method`` (bound) without keeping its object alive: the pipeline's threads must
    not keep a dropped collector from being collected (and its threads from ending)."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            bound()

    return call


def _check_sink(sink: Any) -> None:
    if not (callable(getattr(sink, "record", None)) and callable(getattr(sink, "flush", None))):
        raise TypeError(f"{sink!r} is not a MetricsSink: it needs record() and flush() methods")
