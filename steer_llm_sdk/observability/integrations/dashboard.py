"""The debug summary (JSON), the usage series (JSON) and the dashboard (one self-contained
HTML page), shared by the Flask and Django integrations.

The page has no external assets: styles inline, charts as inline SVG (a latency histogram and
requests over time, from the in-memory sink's usage roll-ups), numbers in plain HTML. It is
built from the in-memory sink's summary and records, and escapes everything it prints.

Its tokens-and-cost charts (per route and model over fixed windows, :func:`usage_series`)
are drawn by one inline script from the usage JSON embedded in the page, which then asks
``<prefix>/debug/usage`` (beside the page, under the same authorisation) for new data every
:data:`REFRESH_SECONDS` and redraws. The script runs under :data:`DASHBOARD_CSP`, which
allows it by its hash and lets it fetch from the page's own origin only.

Both describe **this process only**: under a pre-forked server each worker has its own
in-memory sink, so they name the worker (pid, uptime) and point to the Prometheus endpoint
for the whole application.
"""

import base64
import hashlib
import html
import json
import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import MetricsCollector, RequestMetrics, get_collector
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


# --------------------------------------------------------------------------- usage series
#: Windows the tokens-and-cost charts show (the newest one still in progress).
USAGE_WINDOWS = 12
#: Series (route and model) shown apart, those with the most tokens; the rest are summed
#: into one series marked ``other``. With :data:`USAGE_WINDOWS` this bounds the page and its
#: JSON whatever the traffic.
USAGE_TOP_SERIES = 8
#: How often the page asks for new usage data.
REFRESH_SECONDS = 5.0
#: The attribute that names the route (set by the Flask and Django integrations).
ROUTE_ATTRIBUTE = "http.route"

_SeriesKey = Tuple[Optional[str], str, Optional[str]]


class _Cells:
    """One series' sums per window; costs kept as the known values, summed once at the end
    (exactly, with ``math.fsum``) so the order records arrive in cannot change the result."""

    __slots__ = ("calls", "input_tokens", "output_tokens", "costs", "cost_unknown_calls")

    def __init__(self, windows: int) -> None:
        self.calls = [0] * windows
        self.input_tokens = [0] * windows
        self.output_tokens = [0] * windows
        self.costs: List[List[float]] = [[] for _ in range(windows)]
        self.cost_unknown_calls = [0] * windows

    def add(self, index: int, record: RequestMetrics) -> None:
        self.calls[index] += 1
        self.input_tokens[index] += record.prompt_tokens or 0
        self.output_tokens[index] += record.completion_tokens or 0
        if record.cost_usd is None:
            self.cost_unknown_calls[index] += 1
        else:
            self.costs[index].append(record.cost_usd)

    def merge(self, other: "_Cells") -> None:
        for i in range(len(self.calls)):
            self.calls[i] += other.calls[i]
            self.input_tokens[i] += other.input_tokens[i]
            self.output_tokens[i] += other.output_tokens[i]
            self.costs[i].extend(other.costs[i])
            self.cost_unknown_calls[i] += other.cost_unknown_calls[i]

    def tokens(self) -> int:
        return sum(self.input_tokens) + sum(self.output_tokens)

    def to_dict(self) -> Dict[str, Any]:
        costs = [
            _cost(known, unknown) for known, unknown in zip(self.costs, self.cost_unknown_calls)
        ]
        every_cost = [c for known in self.costs for c in known]
        return {
            "calls": list(self.calls),
            "input_tokens": list(self.input_tokens),
            "output_tokens": list(self.output_tokens),
            "cost_usd": costs,
            "cost_unknown_calls": list(self.cost_unknown_calls),
            "total": {
                "calls": sum(self.calls),
                "input_tokens": sum(self.input_tokens),
                "output_tokens": sum(self.output_tokens),
                "cost_usd": _cost(every_cost, sum(self.cost_unknown_calls)),
                "cost_unknown_calls": sum(self.cost_unknown_calls),
            },
        }


def _cost(known: List[float], unknown: int) -> Optional[float]:
    """The sum of the known costs; None when there were calls and not one had a known cost
    (an unknown price is not a price of 0)."""
    if unknown and not known:
        return None
    return math.fsum(known)


def _route(record: RequestMetrics) -> Optional[str]:
    value = (record.attributes or {}).get(ROUTE_ATTRIBUTE)
    return None if value is None else str(value)


def usage_series(
    requests: Sequence[RequestMetrics],
    period: float,
    now: float,
    windows: int = USAGE_WINDOWS,
    top: int = USAGE_TOP_SERIES,
    retained_since: Optional[float] = None,
) -> Dict[str, Any]:
    """Tokens (input, output), calls and cost per route and model over ``windows`` windows
    of ``period`` seconds, the newest being the one that holds ``now``.

    Windows are aligned to multiples of ``period`` since the epoch, as the pipeline's usage
    roll-ups are, and a record falls in the window of its ``timestamp`` (when the call
    started); records outside every window are left out. A series is a (route, provider,
    model): route from the record's ``http.route`` attribute, None when it has none. The
    ``top`` series with the most tokens (then calls; then by name, for a stable order) are
    kept apart, in that order; the others are summed into a last series with ``other``
    true and ``merged`` saying how many it holds.

    Args:
        requests: the request records (any order).
        period: window length in seconds (> 0).
        now: the current time, epoch seconds.
        windows: how many windows (>= 1); top: how many series kept apart (>= 0).
        retained_since: records before this time may have left the in-memory buffer; the
            windows starting before it are marked ``complete: false``.

    Returns:
        A JSON-safe dict: ``period_seconds``; ``windows`` (oldest first: ``start``,
        ``end``, ``in_progress``, ``complete``); ``series``, each with ``route``,
        ``provider``, ``model`` (None for ``other``), ``other``, ``merged``, and per window
        ``calls``, ``input_tokens``, ``output_tokens``, ``cost_usd`` (the sum of the known
        costs; None where the window had calls and none of known cost),
        ``cost_unknown_calls`` (calls whose cost is unknown: no price, or cost tracking
        off), and the same sums over every window in ``total``.

    Raises:
        ValueError: a period not > 0, fewer than one window or a negative ``top``.

    Pure: reads only its arguments (any thread).
    """
    if not period > 0 or windows < 1 or top < 0:
        raise ValueError(
            f"need period > 0, windows >= 1, top >= 0; got {period!r}, {windows!r}, {top!r}"
        )
    newest = math.floor(now / period)
    oldest = newest - windows + 1
    cells: Dict[_SeriesKey, _Cells] = {}
    for record in requests:
        index = math.floor(record.timestamp / period) - oldest
        if not 0 <= index < windows:
            continue
        key = (_route(record), record.provider, record.model)
        series = cells.get(key)
        if series is None:
            series = cells[key] = _Cells(windows)
        series.add(index, record)
    ranked = sorted(
        cells,
        key=lambda k: (-cells[k].tokens(), -sum(cells[k].calls), _sort_name(k)),
    )
    out: List[Dict[str, Any]] = []
    for route, provider, model in ranked[:top]:
        out.append(_entry(route, provider, model, 1, cells[(route, provider, model)]))
    rest = ranked[top:]
    if rest:
        merged = _Cells(windows)
        for key in rest:
            merged.merge(cells[key])
        out.append(_entry(None, None, None, len(rest), merged))
    return {
        "period_seconds": period,
        "windows": [
            {
                "start": n * period,
                "end": (n + 1) * period,
                "in_progress": (n + 1) * period > now,
                "complete": retained_since is None or n * period >= retained_since,
            }
            for n in range(oldest, newest + 1)
        ],
        "series": out,
    }


def _entry(
    route: Optional[str],
    provider: Optional[str],
    model: Optional[str],
    merged: int,
    cells: _Cells,
) -> Dict[str, Any]:
    """One series of :func:`usage_series`; ``provider`` None marks the ``other`` one."""
    entry: Dict[str, Any] = {"route": route, "provider": provider, "model": model}
    entry["other"] = provider is None
    entry["merged"] = merged
    entry.update(cells.to_dict())
    return entry


def _sort_name(key: _SeriesKey) -> Tuple[str, str, str]:
    route, provider, model = key
    return (route or "", provider, model or "")


def usage_period(collector: MetricsCollector, window_seconds: float) -> Tuple[float, str]:
    """(window length, where it comes from): the collector's ``usage_rollup_seconds`` when
    set, so the charts' windows are the roll-ups' own; else the dashboard's window divided
    into :data:`USAGE_WINDOWS` (25 s for the default 300 s)."""
    rollup = collector.config.usage_rollup_seconds
    if rollup > 0:
        return float(rollup), "usage_rollup_seconds"
    return window_seconds / USAGE_WINDOWS, "window_seconds"


def usage_payload(
    collector: Optional[MetricsCollector] = None,
    window_seconds: float = 300.0,
    now: Optional[float] = None,
) -> Dict[str, Any]:
    """The JSON body of ``<prefix>/debug/usage``: :func:`usage_series` of this worker's
    in-memory sink, with the process, the period's source and the refresh interval.

    The windows before the sink's oldest record are marked incomplete once the sink is
    full (older records were evicted; by arrival order, so roughly), and those before its
    TTL always. Without an in-memory sink, ``usage`` is None and ``error`` says why.
    Thread-safe: it reads snapshots the sink takes under its lock.
    """
    collector = collector or get_collector()
    sink = find_memory_sink(collector)
    now = time.time() if now is None else now
    period, source = usage_period(collector, window_seconds)
    payload: Dict[str, Any] = {
        "process": process_info(),
        "generated_at": now,
        "period_from": source,
        "refresh_seconds": REFRESH_SECONDS,
    }
    if sink is None:
        payload["usage"] = None
        payload["error"] = "no InMemoryMetricsSink on the collector"
        return payload
    retained_since = now - sink.ttl_seconds
    if len(sink) >= sink.max_size:
        kept = sink.get_metrics()
        if kept:
            retained_since = max(retained_since, kept[0].timestamp)
    requests = sink.get_metrics(
        start_time=(math.floor(now / period) - USAGE_WINDOWS + 1) * period,
        metric_type="request",
    )
    payload["usage"] = usage_series(
        requests,  # type: ignore[arg-type]
        period,
        now,
        retained_since=retained_since,
    )
    return payload


# The page's one script: draws the usage JSON embedded in the page, then polls
# ``<prefix>/debug/usage`` (a URL relative to the page, with the page's query string so an
# authorisation carried there carries over) and redraws. Built with DOM calls only, never
# from markup strings: routes and model names are shown as text, never parsed. The SVG
# namespace is read from the charts' own elements so the page names no URL at all.
_USAGE_SCRIPT = """
(function () {
  "use strict";
  var COLORS = ["#4a7bd0", "#d0704a", "#3a9d5d", "#9b59b6", "#c9a227", "#17a2b8",
                "#e83e8c", "#6c757d", "#999999"];
  var FIELDS = ["input_tokens", "output_tokens", "cost_usd"];
  var W = 560, H = 180, L = 70, R = 10, T = 14, B = 24;
  var status = document.getElementById("usage-status");
  var polls = 0;

  function add(parent, name, attrs, text) {
    var node = document.createElementNS(parent.namespaceURI, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (text !== undefined) { node.textContent = text; }
    parent.appendChild(node);
    return node;
  }
  function usd(x) { return x.toFixed(x !== 0 && Math.abs(x) < 0.01 ? 8 : 4); }
  function costText(cost, unknown) {
    if (cost === null) { return "unknown"; }
    return unknown ? usd(cost) + " + " + unknown + " calls unknown" : usd(cost);
  }
  function names(s) {
    if (s.other) { return ["other (" + s.merged + " series)", ""]; }
    return [s.route === null ? "(no route)" : s.route,
            s.provider + "/" + (s.model === null ? "(no model)" : s.model)];
  }
  function table(usage) {
    var body = document.getElementById("usage-rows");
    body.textContent = "";
    usage.series.forEach(function (s, k) {
      var t = s.total, n = names(s);
      var row = add(body, "tr", {"data-series": k});
      add(add(row, "td", {}), "span", {"class": "swatch",
        style: "background:" + COLORS[k % COLORS.length]});
      add(row, "td", {"data-field": "route"}, n[0]);
      add(row, "td", {"data-field": "model"}, n[1]);
      add(row, "td", {"data-field": "calls", "data-value": t.calls}, String(t.calls));
      ["input_tokens", "output_tokens"].forEach(function (f) {
        add(row, "td", {"data-field": f, "data-value": t[f]}, String(t[f]));
      });
      add(row, "td", {"data-field": "cost_usd", "data-value": t.cost_usd,
        "data-unknown": t.cost_unknown_calls}, costText(t.cost_usd, t.cost_unknown_calls));
    });
  }
  function chart(usage, field, now) {
    var svg = document.getElementById("chart-" + field);
    var n = usage.windows.length, step = (W - L - R) / n, top = 0;
    svg.textContent = "";
    usage.series.forEach(function (s) {
      s[field].forEach(function (v) { if (v !== null && v > top) { top = v; } });
    });
    var shown = top > 0 ? top : 1;
    function x(i) { return L + step * (i + 0.5); }
    function y(v) { return T + (H - T - B) * (1 - v / shown); }
    function value(v) { return field === "cost_usd" ? usd(v) : String(v); }
    usage.windows.forEach(function (w, i) {
      if (!w.complete) {
        add(add(svg, "rect", {x: L + step * i, y: T, width: step, height: H - T - B,
          fill: "#eee"}), "title", {}, "may miss records evicted from memory");
      }
      add(svg, "text", {x: x(i), y: H - 8, "font-size": 10, "text-anchor": "middle",
        "data-start": w.start}, w.in_progress ? "now" : "-" + Math.round(now - w.start) + "s");
    });
    add(svg, "line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999"});
    add(svg, "text", {x: L - 4, y: T + 4, "font-size": 10, "text-anchor": "end"}, value(top));
    add(svg, "text", {x: L - 4, y: H - B, "font-size": 10, "text-anchor": "end"}, "0");
    usage.series.forEach(function (s, k) {
      var color = COLORS[k % COLORS.length], n = names(s), run = [];
      function line() {
        if (run.length > 1) {
          add(svg, "polyline", {points: run.join(" "), fill: "none", stroke: color});
        }
        run = [];
      }
      s[field].forEach(function (v, i) {
        var start = usage.windows[i].start, unknown = s.cost_unknown_calls[i];
        if (field === "cost_usd" && unknown) {
          add(add(svg, "text", {x: x(i), y: T - 2, "font-size": 11, "text-anchor": "middle",
            fill: color, "data-series": k, "data-start": start, "data-unknown": unknown}, "?"),
            "title", {}, n.join(" ") + ": " + unknown + " calls of unknown cost");
        }
        if (v === null) { line(); return; }
        run.push(x(i) + "," + y(v));
        add(add(svg, "circle", {cx: x(i), cy: y(v), r: 3, fill: color, "data-series": k,
          "data-field": field, "data-start": start, "data-value": v}),
          "title", {}, n.join(" ") + ": " + value(v));
      });
      line();
    });
  }
  function draw(data) {
    if (!data.usage) { status.textContent = data.error || "no usage data"; return; }
    table(data.usage);
    FIELDS.forEach(function (f) { chart(data.usage, f, data.generated_at); });
    status.setAttribute("data-generated", String(data.generated_at));
  }
  function poll() {
    fetch("usage" + window.location.search, {credentials: "same-origin", cache: "no-store",
      headers: {Accept: "application/json"}})
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(function (data) {
        draw(data);
        polls += 1;
        status.setAttribute("data-polls", String(polls));
        status.textContent = "updated " + new Date().toLocaleTimeString();
      })
      .catch(function (err) {
        status.textContent = "refresh failed (" + err.message + "): showing older data";
      })
      .then(function () { window.setTimeout(poll, delay); });
  }
  var first = JSON.parse(document.getElementById("usage-data").textContent);
  var delay = first.refresh_seconds * 1000;
  draw(first);
  window.setTimeout(poll, delay);
})();
"""

#: The dashboard's Content-Security-Policy: nothing from anywhere but its own inline styles,
#: its one script (by hash) and fetches from its own origin (the usage JSON).
DASHBOARD_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_USAGE_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    + "'; connect-src 'self'"
)


def _script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``<`` can close it or open a comment."""
    return json.dumps(value, default=str).replace("<", "\\u003c")


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
    """The dashboard page (HTML, self-contained), to be served with :data:`DASHBOARD_CSP`
    beside ``debug/usage`` (its script polls that URL, relative to the page)."""
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
    data = _script_json(summary.to_dict())
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
    usage = usage_payload(collector, window_seconds, now)
    period = usage["usage"]["period_seconds"]
    period_from = (
        "the collector's usage_rollup_seconds"
        if usage["period_from"] == "usage_rollup_seconds"
        else f"the dashboard's {window_seconds:g} s in {USAGE_WINDOWS}; "
        "set usage_rollup_seconds for the roll-ups' period"
    )
    charts = "".join(
        f"<h3>{title}</h3>"
        f'<svg xmlns="http://www.w3.org/2000/svg" id="chart-{field}" role="img" '
        f'aria-label="{title} over time" width="560" height="180" viewBox="0 0 560 180"></svg>'
        for field, title in (
            ("input_tokens", "Tokens in"),
            ("output_tokens", "Tokens out"),
            ("cost_usd", "Cost USD"),
        )
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>LLM metrics</title>
<style>
body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}
.cards{{display:flex;flex-wrap:wrap;gap:12px}}
.card{{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:120px}}
.k{{color:#666;font-size:12px}}.v{{font-size:20px;font-weight:600}}
.swatch{{display:inline-block;width:10px;height:10px;border-radius:2px}}
#usage-table td:nth-child(-n+3),#usage-table th:nth-child(-n+3){{text-align:left}}
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
<h2>Tokens and cost per route and model</h2>
<p id="usage-period">{USAGE_WINDOWS} windows of {period:g} s ({html.escape(period_from)}),
the newest (right, "now") still in progress; the {USAGE_TOP_SERIES} series with the most
tokens apart, the rest as "other". Cost "unknown": calls without a known price (or with cost
tracking off), never counted as 0. Shaded windows may miss records the in-memory buffer
evicted.</p>
<p id="usage-status" data-polls="0">refreshing every {REFRESH_SECONDS:g} s</p>
<noscript><p>The charts below need JavaScript; their numbers are at debug/usage.</p></noscript>
<table id="usage-table"><thead><tr><th></th><th>route</th><th>provider/model</th>
<th>calls</th><th>tokens in</th><th>tokens out</th><th>cost USD</th></tr></thead>
<tbody id="usage-rows"></tbody></table>
{charts}
<h2>Circuit breakers</h2><ul>{breakers}</ul>
<p>records: {stats.recorded:,} recorded, {delivered:,} delivered, {dropped:,} dropped</p>
<script type="application/json" id="summary">{data}</script>
<script type="application/json" id="usage-data">{_script_json(usage)}</script>
<script>{_USAGE_SCRIPT}</script>
</body></html>"""
