"""The debug summary (JSON) and dashboard (one self-contained HTML page), shared by the Flask
and Django integrations.

The page has no external assets: styles inline, charts as inline SVG (a latency histogram and
requests over time, from the in-memory sink's usage roll-ups), numbers in plain HTML. It is
built from the in-memory sink's summary and records, and escapes everything it prints.

Both describe **this process only**: under a pre-forked server each worker has its own
in-memory sink, so they name the worker (pid, uptime) and point to the Prometheus endpoint
for the whole application.
"""

import html
import json
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import MetricsCollector, get_collector
from ..sinks import InMemoryMetricsSink

LATENCY_EDGES_MS = (50, 100, 200, 400, 800, 1600, 3200, 6400)
WHOLE_APP = "/_steer/metrics (Prometheus endpoint, all workers)"

_process_started = time.time()


def _restart_clock() -> None:
    global _process_started
    _process_started = time.time()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_clock)


def process_info() -> Dict[str, Any]:
    """Which process the page describes: pid, seconds since it started (or was forked)."""
    return {
        "pid": os.getpid(),
        "uptime_seconds": round(time.time() - _process_started, 1),
        "scope": "this worker process only",
        "whole_app": WHOLE_APP,
    }


def find_memory_sink(collector: Optional[MetricsCollector] = None) -> Optional[InMemoryMetricsSink]:
    """The collector's first in-memory sink (default collector when None), or None."""
    collector = collector or get_collector()
    for sink in collector.sinks:
        if isinstance(sink, InMemoryMetricsSink):
            return sink
    return None


def summary_payload(
    collector: Optional[MetricsCollector] = None, window_seconds: float = 300.0
) -> Dict[str, Any]:
    """The JSON body of ``<prefix>/debug``: the summary, the collector's accounting."""
    collector = collector or get_collector()
    sink = find_memory_sink(collector)
    payload: Dict[str, Any] = {
        "process": process_info(),
        "collector": collector.stats().to_dict(),
    }
    if sink is None:
        payload["summary"] = None
        payload["error"] = "no InMemoryMetricsSink on the collector"
    else:
        payload["summary"] = sink.get_summary(window_seconds=window_seconds).to_dict()
    return payload


def _num(value: Optional[float], digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _bars(
    values: Sequence[Tuple[str, float]], width: int = 560, height: int = 160, title: str = ""
) -> str:
    """An inline SVG bar chart of (label, value) pairs."""
    top = max([v for _, v in values] + [1.0])
    n = max(len(values), 1)
    slot = width / n
    bars = []
    for i, (label, value) in enumerate(values):
        h = (height - 30) * value / top
        x = i * slot + 4
        y = height - 20 - h
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot - 8:.1f}" height="{h:.1f}" '
            f'fill="#4a7bd0"><title>{html.escape(label)}: {value:g}</title></rect>'
            f'<text x="{x + (slot - 8) / 2:.1f}" y="{height - 6}" font-size="10" '
            f'text-anchor="middle">{html.escape(label)}</text>'
            f'<text x="{x + (slot - 8) / 2:.1f}" y="{max(y - 3, 10):.1f}" font-size="10" '
            f'text-anchor="middle">{value:g}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{html.escape(title)}"'
        f' width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        + "".join(bars)
        + "</svg>"
    )


def latency_histogram(durations: Sequence[float]) -> List[Tuple[str, float]]:
    counts = [0] * (len(LATENCY_EDGES_MS) + 1)
    for d in durations:
        index = next(
            (i for i, edge in enumerate(LATENCY_EDGES_MS) if d <= edge), len(LATENCY_EDGES_MS)
        )
        counts[index] += 1
    labels = [f"≤{e}" for e in LATENCY_EDGES_MS] + [f">{LATENCY_EDGES_MS[-1]}"]
    return list(zip(labels, [float(c) for c in counts]))


def requests_over_time(
    sink: InMemoryMetricsSink, now: float, window_seconds: float, buckets: int = 12
) -> List[Tuple[str, float]]:
    """Requests per bucket over the window, from the sink's usage roll-ups (all providers
    and models summed), labelled by the bucket's start relative to ``now``."""
    step = window_seconds / buckets
    counts: Dict[float, int] = {}
    for usage in sink.get_usage(window_seconds, step):
        counts[usage.window_start] = counts.get(usage.window_start, 0) + usage.request_count
    first = (now - window_seconds) // step * step + step
    starts = [first + i * step for i in range(buckets)]
    return [(f"-{int(now - start)}s", float(counts.get(start, 0))) for start in starts]


def render_dashboard(
    collector: Optional[MetricsCollector] = None,
    window_seconds: float = 300.0,
    now: Optional[float] = None,
) -> str:
    """The dashboard page (HTML, self-contained)."""
    collector = collector or get_collector()
    sink = find_memory_sink(collector)
    now = time.time() if now is None else now
    if sink is None:
        return "<!doctype html><title>LLM metrics</title><p>No in-memory sink configured.</p>"
    summary = sink.get_summary(window_seconds=window_seconds)
    requests = sink.get_metrics(start_time=now - window_seconds, metric_type="request")
    durations = [d for d in (getattr(r, "duration_ms", None) for r in requests) if d is not None]
    rows = []
    for name, part in summary.by_model.items():
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(c))}</td>"
                for c in (
                    name,
                    part.total_requests,
                    f"{part.error_rate:.1%}",
                    _num(part.p50_latency_ms),
                    _num(part.p95_latency_ms),
                    _num(part.p99_latency_ms),
                    _num(part.avg_ttft_ms),
                    f"{part.prompt_tokens:,}",
                    f"{part.completion_tokens:,}",
                    _num(part.total_cost_usd, 4),
                )
            )
            + "</tr>"
        )
    breakers = (
        "".join(
            f"<li>{html.escape(k)}: <b>{html.escape(v)}</b></li>"
            for k, v in sorted(summary.circuit_breaker_states.items())
        )
        or "<li>none reported</li>"
    )
    stats = collector.stats()
    cards = [
        ("LLM calls", f"{summary.total_requests:,}"),
        ("LLM calls/s", _num(summary.requests_per_second, 2)),
        ("error rate", f"{summary.error_rate:.1%}"),
        ("p50 latency ms", _num(summary.p50_latency_ms)),
        ("p95 latency ms", _num(summary.p95_latency_ms)),
        ("p99 latency ms", _num(summary.p99_latency_ms)),
        ("avg time to first content ms", _num(summary.avg_ttft_ms)),
        ("tokens in / out", f"{summary.prompt_tokens:,} / {summary.completion_tokens:,}"),
        ("cost USD", _num(summary.total_cost_usd, 4)),
        ("retries", f"{summary.retry_attempts} ({summary.retry_succeeded} recovered)"),
        ("breaker transitions", str(summary.circuit_breaker_transitions)),
    ]
    card_html = "".join(
        f'<div class="card"><div class="k">{html.escape(k)}</div>'
        f'<div class="v" id="{html.escape(k.replace(" ", "-").replace("/", ""))}">'
        f"{html.escape(v)}</div></div>"
        for k, v in cards
    )
    data = json.dumps(summary.to_dict(), default=str).replace("</", "<\\/")
    memory_stats = stats.sinks.get("in_memory")
    delivered = memory_stats.delivered if memory_stats is not None else 0
    dropped = sum(stats.dropped.values())
    latency_svg = _bars(latency_histogram(durations), title="latency histogram")
    timeline_svg = _bars(
        requests_over_time(sink, now, window_seconds),
        title="LLM calls over time",
    )
    table_rows = "".join(rows)
    info = process_info()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>LLM metrics</title>
<style>
body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}
.cards{{display:flex;flex-wrap:wrap;gap:12px}}
.card{{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:120px}}
.k{{color:#666;font-size:12px}}.v{{font-size:20px;font-weight:600}}
table{{border-collapse:collapse;margin-top:12px}}
td,th{{border-bottom:1px solid #eee;padding:4px 10px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}
</style></head><body>
<h1>LLM metrics <small>last {window_seconds:g} s</small></h1>
<p id="scope">This page shows the in-memory data of <b>worker pid {info["pid"]}</b> (up
{info["uptime_seconds"]:g} s) only. Under a pre-forked server every worker keeps its own;
for the whole application scrape {html.escape(WHOLE_APP)}.</p>
<div class="cards">{card_html}</div>
<h2>Per model</h2>
<table><thead><tr><th>provider/model</th><th>requests</th><th>errors</th><th>p50 ms</th>
<th>p95 ms</th><th>p99 ms</th><th>first content ms</th><th>tokens in</th><th>tokens out</th>
<th>cost USD</th></tr></thead><tbody>{table_rows}</tbody></table>
<h2>Latency (ms)</h2>{latency_svg}
<h2>LLM calls over time</h2>{timeline_svg}
<h2>Circuit breakers</h2><ul>{breakers}</ul>
<p>records: {stats.recorded:,} recorded, {delivered:,} delivered, {dropped:,} dropped</p>
<script type="application/json" id="summary">{data}</script>
</body></html>"""
