"""Usage roll-ups: RequestMetrics summed into UsageMetrics per time window, provider and model.

Used by the pipeline (``MetricsConfig(usage_rollup_seconds=...)``: one UsageMetrics per
provider/model per period, to every sink) and by ``InMemoryMetricsSink.get_usage()``.
Windows are aligned to multiples of the period since the epoch, so roll-ups of different
processes line up. A leaf: imports only the record classes.
"""

import math
from typing import Dict, List, Optional, Tuple

from .models import RequestMetrics, UsageMetrics, trust

_Key = Tuple[float, str, Optional[str]]


class _Totals:
    __slots__ = ("requests", "errors", "prompt", "completion", "total", "cached", "cost")

    def __init__(self) -> None:
        self.requests = self.errors = self.prompt = self.completion = self.total = 0
        self.cached = 0
        self.cost: Optional[float] = None


class UsageRollup:
    """Sums requests per (window, provider, model). Not thread-safe: the owner serialises.

    Args:
        period: window length in seconds (> 0).
    """

    def __init__(self, period: float) -> None:
        if not period > 0:
            raise ValueError(f"the roll-up period must be > 0, got {period!r}")
        self.period = float(period)
        self._open: Dict[_Key, _Totals] = {}

    def add(self, record: RequestMetrics) -> None:
        """Count one request in the window of its timestamp."""
        start = math.floor(record.timestamp / self.period) * self.period
        key = (start, record.provider, record.model)
        totals = self._open.get(key)
        if totals is None:
            totals = self._open[key] = _Totals()
        totals.requests += 1
        if not record.success:
            totals.errors += 1
        totals.prompt += record.prompt_tokens or 0
        totals.completion += record.completion_tokens or 0
        totals.total += record.total_tokens or 0
        totals.cached += record.cached_tokens or 0
        if record.cost_usd is not None:
            totals.cost = (totals.cost or 0.0) + record.cost_usd

    def take(self, now: Optional[float] = None) -> List[UsageMetrics]:
        """Remove and return the windows that ended by ``now`` (all of them when None),
        oldest first, then by provider and model."""
        ready = sorted(
            (k for k in self._open if now is None or k[0] + self.period <= now),
            key=lambda k: (k[0], k[1], k[2] or ""),
        )
        out = []
        for key in ready:
            totals = self._open.pop(key)
            start, provider, model = key
            usage = UsageMetrics(
                timestamp=start,
                provider=provider,
                model=model,
                window_start=start,
                window_end=start + self.period,
                request_count=totals.requests,
                error_count=totals.errors,
                prompt_tokens=totals.prompt,
                completion_tokens=totals.completion,
                total_tokens=totals.total,
                cached_tokens=totals.cached,
                cost_usd=totals.cost,
            )
            trust(usage)
            out.append(usage)
        return out

    def __len__(self) -> int:
        return len(self._open)
