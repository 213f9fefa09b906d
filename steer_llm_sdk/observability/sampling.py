"""Deterministic, per-request sampling.

The decision is a function of the ``request_id`` alone, so every record of one request
(RequestMetrics, StreamingMetrics, ReliabilityMetrics) is kept or dropped together, in every
process that sees it. The hash is CRC-32 followed by the MurmurHash3 32-bit finaliser, which
spreads sequential ids evenly over [0, 2**32).

Which rate applies is decided per request: a failed request is judged by the error rate, a
streamed one by the streaming rate, any other by the request rate.
"""

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


class Sampler:
    """Chooses the rate for a record and applies it. Immutable, thread-safe."""

    __slots__ = ("request_rate", "streaming_rate", "error_rate", "active")

    def __init__(self, request_rate: float, streaming_rate: float, error_rate: float) -> None:
        self.request_rate = request_rate
        self.streaming_rate = streaming_rate
        self.error_rate = error_rate
        # With every rate at 1.0 the collector skips sampling entirely.
        self.active = min(request_rate, streaming_rate, error_rate) < 1.0

    def rate_for(self, record: BaseMetrics) -> float:
        """The rate that applies to ``record``'s request."""
        if record._failed():
            return self.error_rate
        if record._streamed():
            return self.streaming_rate
        return self.request_rate

    def sample(self, record: BaseMetrics) -> bool:
        """Decide for ``record``; a kept record gets its ``sample_rate`` set."""
        if record.metric_type == "usage":
            return True
        rate = self.rate_for(record)
        if rate >= 1.0:
            return True
        if keep(str(record.request_id), rate):
            record.sample_rate = rate
            return True
        return False
