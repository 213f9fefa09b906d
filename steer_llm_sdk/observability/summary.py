"""Summaries of metric records: percentiles, totals, per provider/model breakdowns.

Pure functions over lists of records; no I/O, no locks. Sinks call them on a snapshot.

Percentiles use linear interpolation between closest ranks (Hyndman & Fan type 7, the default
of NumPy and of ``statistics.quantiles(method="inclusive")``): for ``n`` sorted values ``x``
and ``p`` in [0, 100], ``h = (n - 1) * p / 100`` and the result is
``x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)])``. The percentile of no
values is None; of one value, that value.
"""

import math
from typing import Dict, Iterable, List, Optional, Sequence

from .models import ReliabilityMetrics, RequestMetrics


def percentile(sorted_values: Sequence[float], p: float) -> Optional[float]:
    """The ``p``-th percentile (0 <= p <= 100) of already sorted values, or None if empty."""
    n = len(sorted_values)
    if n == 0:
        return None
    if not 0 <= p <= 100:
        raise ValueError(f"percentile p must be within [0, 100], got {p!r}")
    h = (n - 1) * p / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    frac = h - lo
    low = sorted_values[lo]
    return low + frac * (sorted_values[hi] - low) if frac else float(low)


def _mean(values: Sequence[float]) -> Optional[float]:
    return math.fsum(values) / len(values) if values else None


class ModelSummary:
    """Totals for one provider/model within a window (also the shape of the whole summary).

    Attributes:
        total_requests, error_count, error_rate (0..1, 0 when no requests),
        avg_latency_ms, p50_latency_ms, p95_latency_ms, p99_latency_ms,
        avg_ttft_ms, p95_ttft_ms: time to first content (``time_to_first_token_ms``;
            streamed requests only),
        prompt_tokens, completion_tokens, total_tokens, cached_tokens,
        total_cost_usd (None when no cost was known), streamed_requests,
        errors_by_category (category -> count).
    """

    __slots__ = (
        "total_requests",
        "error_count",
        "error_rate",
        "avg_latency_ms",
        "p50_latency_ms",
        "p95_latency_ms",
        "p99_latency_ms",
        "avg_ttft_ms",
        "p95_ttft_ms",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cached_tokens",
        "total_cost_usd",
        "streamed_requests",
        "errors_by_category",
        "_latencies",
        "_ttfts",
    )

    def __init__(self, requests: List[RequestMetrics]) -> None:
        latencies = sorted([r.duration_ms for r in requests if r.duration_ms is not None])
        ttfts = sorted(
            [r.time_to_first_token_ms for r in requests if r.time_to_first_token_ms is not None]
        )
        failed = [r.error_category or "unknown" for r in requests if not r.success]
        costs = [r.cost_usd for r in requests if r.cost_usd is not None]
        self.total_requests = len(requests)
        self.error_count = len(failed)
        self.errors_by_category: Dict[str, int] = {}
        for category in failed:
            self.errors_by_category[category] = self.errors_by_category.get(category, 0) + 1
        self.prompt_tokens = sum([r.prompt_tokens for r in requests if r.prompt_tokens])
        self.completion_tokens = sum([r.completion_tokens for r in requests if r.completion_tokens])
        self.total_tokens = sum([r.total_tokens for r in requests if r.total_tokens])
        self.cached_tokens = sum([r.cached_tokens for r in requests if r.cached_tokens])
        self.total_cost_usd: Optional[float] = math.fsum(costs) if costs else None
        self.streamed_requests = len([r for r in requests if r.method == "stream"])
        self._latencies = latencies
        self._ttfts = ttfts
        self._derive()

    def _derive(self) -> None:
        lat, ttft = self._latencies, self._ttfts
        self.error_rate = self.error_count / self.total_requests if self.total_requests else 0.0
        self.avg_latency_ms = _mean(lat)
        self.p50_latency_ms = percentile(lat, 50)
        self.p95_latency_ms = percentile(lat, 95)
        self.p99_latency_ms = percentile(lat, 99)
        self.avg_ttft_ms = _mean(ttft)
        self.p95_ttft_ms = percentile(ttft, 95)

    @classmethod
    def merged(cls, parts: Iterable["ModelSummary"]) -> "ModelSummary":
        """Combine per-model summaries exactly (sums add; percentiles from merged values)."""
        out = cls([])
        latencies: List[float] = []
        ttfts: List[float] = []
        costs: List[float] = []
        for part in parts:
            out.total_requests += part.total_requests
            out.error_count += part.error_count
            for category, count in part.errors_by_category.items():
                out.errors_by_category[category] = out.errors_by_category.get(category, 0) + count
            out.prompt_tokens += part.prompt_tokens
            out.completion_tokens += part.completion_tokens
            out.total_tokens += part.total_tokens
            out.cached_tokens += part.cached_tokens
            out.streamed_requests += part.streamed_requests
            if part.total_cost_usd is not None:
                costs.append(part.total_cost_usd)
            latencies.extend(part._latencies)
            ttfts.extend(part._ttfts)
        latencies.sort()  # concatenated sorted runs: timsort merges them in linear time
        ttfts.sort()
        out._latencies, out._ttfts = latencies, ttfts
        out.total_cost_usd = math.fsum(costs) if costs else None
        out._derive()
        return out

    def to_dict(self) -> Dict[str, object]:
        """JSON-safe dict of the public fields."""
        return {
            name: getattr(self, name) for name in ModelSummary.__slots__ if not name.startswith("_")
        }


class MetricsSummary(ModelSummary):
    """Summary of a window of records, overall and per ``"provider/model"``.

    Adds to :class:`ModelSummary`: ``window_seconds``, ``span_seconds`` (from the first
    call's start to the last call's end, at most the window: the time the data covers),
    ``requests_per_second`` (LLM calls divided by ``span_seconds``, 0 when it is 0; a window
    mostly without traffic does not dilute the rate), ``retry_attempts`` (sum over reliability
    records), ``retried_requests``, ``retry_succeeded``, ``circuit_breaker_transitions``,
    ``circuit_breaker_states``
    ("provider/model" -> last reported state) and ``by_model``.
    """

    __slots__ = (
        "window_seconds",
        "span_seconds",
        "requests_per_second",
        "retry_attempts",
        "retried_requests",
        "retry_succeeded",
        "circuit_breaker_transitions",
        "circuit_breaker_states",
        "by_model",
    )
    window_seconds: float
    span_seconds: float
    requests_per_second: float
    retry_attempts: int
    retried_requests: int
    retry_succeeded: int
    circuit_breaker_transitions: int
    circuit_breaker_states: Dict[str, str]
    by_model: Dict[str, ModelSummary]

    def to_dict(self) -> Dict[str, object]:
        out = super().to_dict()
        for name in MetricsSummary.__slots__:
            out[name] = getattr(self, name)
        out["by_model"] = {key: part.to_dict() for key, part in self.by_model.items()}
        return out


def summarize(
    requests: List[RequestMetrics],
    reliability: List[ReliabilityMetrics],
    window_seconds: float,
) -> MetricsSummary:
    """Build a :class:`MetricsSummary` from the records of one window.

    Args:
        requests: the RequestMetrics in the window (any order).
        reliability: the ReliabilityMetrics in the window, in arrival order.
        window_seconds: the window's length (caps ``span_seconds``).
    """
    groups: Dict[str, List[RequestMetrics]] = {}
    for record in requests:
        key = f"{record.provider}/{record.model}"
        group = groups.get(key)
        if group is None:
            groups[key] = group = []
        group.append(record)
    by_model = {key: ModelSummary(group) for key, group in sorted(groups.items())}
    total = ModelSummary.merged(by_model.values())
    out = MetricsSummary.__new__(MetricsSummary)
    for name in ModelSummary.__slots__:
        setattr(out, name, getattr(total, name))
    out.window_seconds = window_seconds
    out.span_seconds = _span(requests, window_seconds)
    out.requests_per_second = (
        total.total_requests / out.span_seconds if out.span_seconds > 0 else 0.0
    )
    per_request = [r for r in reliability if r.event != "circuit_transition"]
    out.retry_attempts = sum([r.retry_attempts for r in per_request if r.retry_attempts])
    out.retried_requests = len([r for r in per_request if r.retry_attempts])
    out.retry_succeeded = len([r for r in per_request if r.retry_succeeded])
    out.circuit_breaker_transitions = len(reliability) - len(per_request)
    out.circuit_breaker_states = {
        f"{r.provider}/{r.model}": r.circuit_breaker_state for r in reliability
    }
    out.by_model = by_model
    return out


def _span(requests: List[RequestMetrics], window_seconds: float) -> float:
    """Seconds from the first call's start to the last call's end, capped at the window."""
    if not requests:
        return 0.0
    first = min(r.timestamp for r in requests)
    last = max(r.timestamp + (r.duration_ms or 0.0) / 1000.0 for r in requests)
    return max(0.0, min(last - first, window_seconds))


def format_table(summary: MetricsSummary) -> str:
    """Render a summary as a fixed-width text table: one row per provider/model and a total.

    Latencies in milliseconds; ``-`` where a value is unknown.
    """
    headers = (
        "provider/model",
        "calls",
        "errors",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "ttft ms",
        "p95 ttft",
        "in tok",
        "out tok",
        "cached",
        "cost $",
    )

    def num(value: Optional[float], digits: int = 1) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    def row(name: str, part: ModelSummary) -> List[str]:
        errors = f"{part.error_count} ({part.error_rate:.0%})" if part.error_count else "0"
        return [
            name,
            str(part.total_requests),
            errors,
            num(part.p50_latency_ms),
            num(part.p95_latency_ms),
            num(part.p99_latency_ms),
            num(part.avg_ttft_ms),
            num(part.p95_ttft_ms),
            f"{part.prompt_tokens:,}",
            f"{part.completion_tokens:,}",
            f"{part.cached_tokens:,}",
            num(part.total_cost_usd, 4),
        ]

    rows = [row(name, part) for name, part in summary.by_model.items()]
    rows.append(row("total", summary))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [line(headers), rule] + [line(r) for r in rows[:-1]] + [rule, line(rows[-1])]
    extras = [
        f"window {summary.window_seconds:g}s, data over {summary.span_seconds:.1f}s",
        f"{summary.requests_per_second:.2f} LLM calls/s",
    ]
    if summary.retry_attempts:
        extras.append(f"retries {summary.retry_attempts} ({summary.retry_succeeded} recovered)")
    if summary.circuit_breaker_transitions:
        extras.append(f"circuit breaker transitions {summary.circuit_breaker_transitions}")
    if summary.errors_by_category:
        extras.append(
            "errors by category: "
            + ", ".join(f"{k} {v}" for k, v in sorted(summary.errors_by_category.items()))
        )
    return "\n".join(out + ["", "; ".join(extras)])
