"""InMemoryMetricsSink: a bounded ring buffer of records with queries and summaries."""

import time
from collections import deque
from typing import Callable, Deque, List, Optional, Sequence, Type, Union

from .._native import allocate_lock
from ..models import BaseMetrics, ReliabilityMetrics, RequestMetrics, UsageMetrics
from ..rollup import UsageRollup
from ..runtime import SINKS, on_fork
from ..summary import MetricsSummary, summarize


class InMemoryMetricsSink:
    """Keeps the most recent records in memory.

    Args:
        max_size: records kept; the oldest is evicted first (>= 1).
        ttl_seconds: records older than this (by ``timestamp``) are evicted and never
            returned (> 0).
        clock: source of "now" in epoch seconds (injectable for tests).

    Thread-safe: the collector writes from its delivery thread while any thread queries.
    Memory is bounded by ``max_size``. After ``os.fork()`` the child starts empty with a
    fresh lock (it reports its own process only).
    """

    name = "in_memory"
    # record_batch only takes a lock held for microseconds: the collector may call it from
    # its flush thread directly instead of giving it a delivery thread of its own.
    nonblocking = True

    def __init__(
        self,
        max_size: int = 10_000,
        ttl_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be an int >= 1, got {max_size!r}")
        if (
            isinstance(ttl_seconds, bool)
            or not isinstance(ttl_seconds, (int, float))
            or not (ttl_seconds > 0)
        ):
            raise ValueError(f"ttl_seconds must be a number > 0, got {ttl_seconds!r}")
        self.max_size = max_size
        self.ttl_seconds = float(ttl_seconds)
        self._clock = clock
        self._lock = allocate_lock()
        self._buffer: Deque[BaseMetrics] = deque(maxlen=max_size)
        self.evicted = 0
        on_fork(self, "_after_fork", SINKS)

    # ----------------------------------------------------------------- sink protocol
    def record(self, metrics: BaseMetrics) -> None:
        self.record_batch((metrics,))

    def record_batch(self, batch: Sequence[BaseMetrics]) -> None:
        cutoff = self._clock() - self.ttl_seconds
        with self._lock:
            buffer = self._buffer
            overflow = len(buffer) + len(batch) - self.max_size
            if overflow > 0:  # older records first, then the start of an oversize batch
                self.evicted += overflow
            buffer.extend(batch)
            while buffer and buffer[0].timestamp < cutoff:
                buffer.popleft()
                self.evicted += 1

    def flush(self) -> None:
        """Nothing is buffered: records are queryable as soon as they arrive."""

    def close(self) -> None:
        """Records stay queryable after the collector shuts down."""

    # ----------------------------------------------------------------- queries
    def _snapshot(self) -> List[BaseMetrics]:
        with self._lock:
            return list(self._buffer)

    def get_metrics(
        self,
        start_time: Optional[float] = None,
        end_time: Optional[float] = None,
        provider: Optional[str] = None,
        model: Optional[str] = None,
        method: Optional[str] = None,
        metric_type: Union[None, str, Type[BaseMetrics]] = None,
        limit: Optional[int] = None,
    ) -> List[BaseMetrics]:
        """Records matching every given criterion, oldest first.

        Args:
            start_time, end_time: inclusive bounds on ``timestamp`` (epoch seconds).
            provider, model: exact matches.
            method: ``generate`` or ``stream`` (records without a method never match).
            metric_type: ``"request"``, ``"streaming"``, ``"reliability"``, ``"error"``,
                ``"usage"``, or one of the record classes.
            limit: at most this many, the most recent ones.
        """
        if isinstance(metric_type, type):
            metric_type = metric_type.metric_type
        start = self._clock() - self.ttl_seconds
        if start_time is not None and start_time > start:
            start = start_time
        out = [r for r in self._snapshot() if r.timestamp >= start]
        if end_time is not None:
            out = [r for r in out if r.timestamp <= end_time]
        if metric_type is not None:
            out = [r for r in out if r.metric_type == metric_type]
        if provider is not None:
            out = [r for r in out if r.provider == provider]
        if model is not None:
            out = [r for r in out if r.model == model]
        if method is not None:
            out = [r for r in out if getattr(r, "method", None) == method]
        if limit is not None:
            out = out[-limit:] if limit > 0 else []
        return out

    def get_summary(
        self,
        window_seconds: float = 300.0,
        provider: Optional[str] = None,
        model: Optional[str] = None,
    ) -> MetricsSummary:
        """Summary of the last ``window_seconds`` (see :class:`MetricsSummary`)."""
        cutoff = self._clock() - min(window_seconds, self.ttl_seconds)
        requests: List[RequestMetrics] = []
        reliability: List[ReliabilityMetrics] = []
        for r in self._snapshot():
            if r.timestamp < cutoff:
                continue
            if (provider is not None and r.provider != provider) or (
                model is not None and r.model != model
            ):
                continue
            kind = r.metric_type
            if kind == "request":
                requests.append(r)  # type: ignore[arg-type]
            elif kind == "reliability":
                reliability.append(r)  # type: ignore[arg-type]
        return summarize(requests, reliability, window_seconds)

    def get_usage(
        self,
        window_seconds: float = 3600.0,
        bucket_seconds: float = 300.0,
        provider: Optional[str] = None,
        model: Optional[str] = None,
    ) -> List[UsageMetrics]:
        """Usage of the last ``window_seconds``: one :class:`UsageMetrics` per provider and
        model per bucket that had requests, oldest first (buckets aligned to multiples of
        ``bucket_seconds`` since the epoch, so the first and last may be partly outside the
        window's span of data).

        Raises:
            ValueError: a non-positive window or bucket.
        """
        if not window_seconds > 0 or not bucket_seconds > 0:
            raise ValueError("window_seconds and bucket_seconds must be > 0")
        rollup = UsageRollup(bucket_seconds)
        for record in self.get_metrics(
            start_time=self._clock() - window_seconds,
            provider=provider,
            model=model,
            metric_type="request",
        ):
            rollup.add(record)  # type: ignore[arg-type]
        return rollup.take()

    def clear(self) -> None:
        """Forget every record."""
        with self._lock:
            self._buffer.clear()

    def __len__(self) -> int:
        return len(self._buffer)

    def __repr__(self) -> str:
        return f"InMemoryMetricsSink(len={len(self)}, max_size={self.max_size})"

    def _after_fork(self) -> None:
        self._lock = allocate_lock()
        self._buffer = deque(maxlen=self.max_size)
        self.evicted = 0
