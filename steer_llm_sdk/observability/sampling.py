"""Deterministic, per-request sampling.

The decision is a function of the ``request_id`` alone, so every record of one request
(RequestMetrics, StreamingMetrics, ReliabilityMetrics) is kept or dropped together, in every
process that sees it. The hash is CRC-32 followed by the MurmurHash3 32-bit finaliser, which
spreads sequential ids evenly over [0, 2**32).

Which rate applies is decided per request, by the first record of it that is offered: a
failure (an attempt's ErrorMetrics, a failed RequestMetrics) is judged by the error rate, a
streamed request by the streaming rate, any other by the request rate. The decision is kept
(for the last 65,536 requests) and every later record of the same request follows it, so a
request is never split: one that failed once and then succeeded on retry keeps all its
records or none.
"""

from typing import Dict
from zlib import crc32

from .models import BaseMetrics

_SCALE = 1.0 / 4294967296.0


def request_fraction(request_id: str) -> float:
    """Map a request id to a fixed point in [0, 1)."""
    h = crc32(request_id.encode("utf-8", "surrogatepass"))
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h * _SCALE


def keep(request_id: str, rate: float) -> bool:
    """Whether a request with this id survives sampling at ``rate`` (0..1)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return request_fraction(request_id) < rate


_REMEMBERED = 65_536


class Sampler:
    """Chooses the rate for a request and applies it to all of its records. Thread-safe
    (the decisions table is changed with single dict operations, atomic under the GIL)."""

    __slots__ = ("request_rate", "streaming_rate", "error_rate", "active", "_decided")

    def __init__(self, request_rate: float, streaming_rate: float, error_rate: float) -> None:
        self.request_rate = request_rate
        self.streaming_rate = streaming_rate
        self.error_rate = error_rate
        # With every rate at 1.0 the collector skips sampling entirely.
        self.active = min(request_rate, streaming_rate, error_rate) < 1.0
        # request id -> the rate it was kept at, or 0.0 when dropped
        self._decided: Dict[str, float] = {}

    def rate_for(self, record: BaseMetrics) -> float:
        """The rate that applies to ``record``'s request."""
        if record._failed():
            return self.error_rate
        if record._streamed():
            return self.streaming_rate
        return self.request_rate

    def sample(self, record: BaseMetrics) -> bool:
        """Decide for ``record``'s request (once per request); a kept record gets its
        ``sample_rate`` set."""
        if record.metric_type == "usage":
            return True
        request_id = str(record.request_id)
        decided = self._decided.get(request_id)
        if decided is None:
            rate = self.rate_for(record)
            decided = rate if rate >= 1.0 or keep(request_id, rate) else 0.0
            decisions = self._decided
            if len(decisions) >= _REMEMBERED:
                try:  # forget the oldest decision (dicts keep insertion order)
                    del decisions[next(iter(decisions))]
                except (KeyError, StopIteration, RuntimeError):
                    pass
            decisions[request_id] = decided
        if decided <= 0.0:
            return False
        if decided < 1.0:
            record.sample_rate = decided
        return True
