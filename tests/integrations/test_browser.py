"""Headless Chromium loads the dashboard served by the Flask example: the rendered page must
show the numbers it was given, and, without a reload, redraw its tokens-and-cost charts with
the calls made after it loaded (it polls its usage JSON). Under CI (CI=true) a missing
Chromium fails the test instead of skipping it."""

import math
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from support.paths import FLASK_APP
from werkzeug.serving import make_server

from steer_llm_sdk.observability import get_collector
from steer_llm_sdk.observability.integrations.dashboard import REFRESH_SECONDS, find_memory_sink
from steer_llm_sdk.testing import LocalLLMServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
DASHBOARD = "/_steer/debug/dashboard"
USAGE = "/_steer/debug/usage"
#: The usage windows of the example as these tests configure it (seconds).
ROLLUP = 2.0
#: A model the pricing tables do not know: its calls have no cost.
UNPRICED = "gpt-local-unpriced"


@pytest.fixture(scope="module")
def chromium():
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is required under CI (.ci/run installs it)")
        pytest.skip("Chromium is not installed")
    return CHROMIUM


class FirstPoll:
    """WSGI middleware: holds the first request for the usage JSON until :attr:`release`
    is set (at most 30 s), after setting :attr:`polled`, so a test can make calls between
    the page's load and its first refresh."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.polled = threading.Event()
        self.release = threading.Event()

    def __call__(self, environ: Dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") == USAGE and not self.polled.is_set():
            self.polled.set()
            self.release.wait(30)
        return self.app(environ, start_response)


class Example:
    def __init__(self, client: Any, base: str, gate: FirstPoll) -> None:
        self.client, self.base, self.gate = client, base, gate

    def call(self, view: str, times: int, model: Optional[str] = None) -> None:
        for n in range(times):
            body = {"prompt": f"{view} {n}" + " more" * n}
            if model is not None:
                body["model"] = model
            assert self.client.post(view, json=body).status_code == 200


@pytest.fixture
def example(monkeypatch) -> Iterator[Example]:
    with LocalLLMServer(reply_words=4) as llm:
        monkeypatch.setenv("STEER_LLM_BASE_URL", llm.url)
        monkeypatch.setenv("STEER_DEBUG_ENDPOINTS", "1")
        monkeypatch.setenv("STEER_METRICS_ENABLE_COST_TRACKING", "true")
        monkeypatch.setenv("STEER_METRICS_USAGE_ROLLUP_SECONDS", str(ROLLUP))
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
        sys.path.insert(0, str(FLASK_APP))
        try:
            from app import create_app
        finally:
            sys.path.pop(0)
        app = create_app()
        gate = FirstPoll(app)
        server = make_server("127.0.0.1", 0, gate, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        example = Example(app.test_client(), f"http://127.0.0.1:{server.server_port}", gate)
        example.call("/chat", 5)
        example.call("/stream", 2)
        assert get_collector().flush(5)
        try:
            yield example
        finally:
            gate.release.set()
            server.shutdown()
            thread.join(5)


def run_chromium(binary, tmp_path, *args):
    profile = tmp_path / "profile"
    return subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.timeout(120)
def test_dashboard_renders_its_numbers(chromium, example, tmp_path):
    dashboard = example.base + DASHBOARD
    dom = run_chromium(chromium, tmp_path, "--dump-dom", dashboard).stdout
    assert "<svg" in dom
    requests_card = re.search(r'id="LLM-calls">([^<]+)<', dom)
    assert requests_card and requests_card.group(1) == "7"
    assert "openai/gpt-4o-mini" in dom and "anthropic/claude-3-5-haiku-latest" in dom
    shot = tmp_path / "dashboard.png"
    run_chromium(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1200,2200", dashboard)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


# --------------------------------------------------------------------------- the refresh
class Marked(HTMLParser):
    """The elements of a page that carry an ``id`` or a ``data-`` attribute the usage
    section sets, in document order, with their attributes and text."""

    KEYS = {"id", "data-field", "data-series", "data-start", "data-unknown"}

    def __init__(self) -> None:
        super().__init__()
        self.found: List[Dict[str, Any]] = []
        self._open: List[Dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        element: Dict[str, Any] = {"tag": tag, **dict(attrs), "text": ""}
        if self.KEYS & set(element):
            self.found.append(element)
        self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop()["tag"] != tag:
            pass

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element["text"] += data


def marked(dom: str) -> List[Dict[str, Any]]:
    parser = Marked()
    parser.feed(dom)
    return parser.found


#: (route shown, provider/model shown)
Series = Tuple[str, str]


def expected_usage(
    period: float,
) -> Tuple[Dict[Series, Dict[str, Any]], Dict[Tuple[Series, str, float], float]]:
    """What the page must show, from the request records in the example's in-memory sink:
    totals per series, and {(series, quantity, window start): sum} of each window with
    calls (costs: of the calls with a known cost, summed exactly, as ``math.fsum`` does)."""
    sink = find_memory_sink(get_collector())
    assert sink is not None
    totals: Dict[Series, Dict[str, Any]] = {}
    parts: Dict[Tuple[Series, str, float], List[float]] = {}
    for record in sink.get_metrics(metric_type="request"):
        series = (record.attributes["http.route"], f"{record.provider}/{record.model}")
        total = totals.setdefault(
            series,
            {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": [], "unknown": 0},
        )
        start = math.floor(record.timestamp / period) * period
        total["calls"] += 1
        total["input_tokens"] += record.prompt_tokens
        total["output_tokens"] += record.completion_tokens
        parts.setdefault((series, "input_tokens", start), []).append(record.prompt_tokens)
        parts.setdefault((series, "output_tokens", start), []).append(record.completion_tokens)
        if record.cost_usd is None:
            total["unknown"] += 1
        else:
            total["cost_usd"].append(record.cost_usd)
            parts.setdefault((series, "cost_usd", start), []).append(record.cost_usd)
    for total in totals.values():
        total["cost_usd"] = math.fsum(total["cost_usd"]) if total["cost_usd"] else None
    return totals, {key: math.fsum(values) for key, values in parts.items()}


def shown_table(
    found: List[Dict[str, Any]],
) -> Tuple[Dict[Series, Dict[str, Any]], Dict[str, Series]]:
    """The usage table's rows: {series: totals shown} and {row's data-series: series}."""
    rows: Dict[str, Dict[str, Dict[str, Any]]] = {}
    row = ""
    for element in found:
        if element["tag"] == "tr" and "data-series" in element:
            row = element["data-series"]
            rows[row] = {}
        elif element["tag"] == "td" and row:
            rows[row][element["data-field"]] = element
    shown, names = {}, {}
    for row, cells in rows.items():
        cost = cells["cost_usd"]
        series = (cells["route"]["text"], cells["model"]["text"])
        names[row] = series
        shown[series] = {
            "calls": int(cells["calls"]["data-value"]),
            "input_tokens": int(cells["input_tokens"]["data-value"]),
            "output_tokens": int(cells["output_tokens"]["data-value"]),
            "cost_usd": None if cost["data-value"] == "null" else float(cost["data-value"]),
            "unknown": int(cost["data-unknown"]),
        }
    return shown, names


@pytest.mark.timeout(120)
def test_dashboard_redraws_with_calls_made_after_it_loaded(chromium, example, tmp_path):
    initial = example.client.get(USAGE).json["usage"]
    assert sum(s["total"]["calls"] for s in initial["series"]) == 7
    # The page polls every REFRESH_SECONDS of the browser's clock; headless Chromium runs
    # its virtual clock fast while nothing is fetched and stops it while a fetch is open,
    # so the held first poll cannot be skipped over.
    budget = int(REFRESH_SECONDS * 1000 * 3)
    chrome = subprocess.Popen(
        [
            chromium,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--virtual-time-budget={budget}",
            "--dump-dom",
            example.base + DASHBOARD,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert example.gate.polled.wait(30), "the page never asked for new data"
        example.call("/chat", 3)
        example.call("/chat", 2, model=UNPRICED)
        assert get_collector().flush(5)
        example.gate.release.set()
        dom, _ = chrome.communicate(timeout=60)
    finally:
        if chrome.poll() is None:
            chrome.kill()
            chrome.wait(10)

    found = marked(dom)
    (status,) = [e for e in found if e.get("id") == "usage-status"]
    assert int(status["data-polls"]) >= 1, status  # it fetched and drew, without a reload
    labels = sorted(
        {
            float(e["data-start"])
            for e in found
            if e["tag"] == "text" and "data-field" not in e and "data-unknown" not in e
        }
    )
    assert len(labels) == 12 and {b - a for a, b in zip(labels, labels[1:])} == {ROLLUP}

    totals, cells = expected_usage(ROLLUP)
    assert sum(t["calls"] for t in totals.values()) == 12  # the 7 it loaded with, 5 more
    shown, names = shown_table(found)
    assert shown == totals
    assert shown[("/chat", f"openai/{UNPRICED}")]["cost_usd"] is None
    assert shown[("/chat", "openai/gpt-4o-mini")]["cost_usd"] > 0
    (unknown_text,) = [
        e["text"] for e in found if e["tag"] == "td" and e.get("data-unknown") == "2"
    ]
    assert unknown_text == "unknown"

    # The charts: a point per series, quantity and window, each the sum of its records
    # (0 where there were none); none where the cost is unknown, which a "?" marks.
    points = {
        (names[e["data-series"]], e["data-field"], float(e["data-start"])): float(e["data-value"])
        for e in found
        if e["tag"] == "circle"
    }
    assert len(points) == 3 * 12 * len(totals) - len(
        [k for k in cells if k[0][1].endswith(UNPRICED) and k[1] == "input_tokens"]
    )
    for key, value in points.items():
        assert value == cells.get(key, 0), key
    for key, value in cells.items():
        assert points[key] == value, key
    marks = {
        (names[e["data-series"]], float(e["data-start"])): int(e["data-unknown"])
        for e in found
        if e["tag"] == "text" and "data-unknown" in e
    }
    calls_unpriced = [k[2] for k in cells if k[0][1].endswith(UNPRICED) and k[1] == "input_tokens"]
    assert set(marks) == {(("/chat", f"openai/{UNPRICED}"), start) for start in calls_unpriced}
    assert sum(marks.values()) == 2
