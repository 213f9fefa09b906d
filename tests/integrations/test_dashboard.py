"""The dashboards: the Grafana dashboard (docs/grafana/) with the Prometheus rules
(docs/prometheus/), and the debug dashboard the Flask and Django integrations serve.

Read as files: the dashboard is wired to ``$datasource`` and its own variables, shows every
quantity issue 23 asks for, and names only metrics the package exports, under the
Prometheus sink's names and under those an OpenTelemetry Collector gives the OTLP sink's;
promtool accepts the rules and passes their unit tests.

End to end, against a real Prometheus scraping a PrometheusMetricsSink fed by SteerLLMClient
calls to a LocalLLMServer: every query of every panel and every recording rule returns data
(the pipeline's own panels included: the sink exports the collector's losses and its sinks'
failed exports, and Prometheus holds exactly what ``collector.stats()`` says); the
error-ratio alert fires on a burst of provider errors but not on a healthy run, and the
pipeline alerts fire on lost records and a failing sink but not on records sampled out or
filtered on purpose.

The debug dashboard's tokens and cost per route and model over time: the series from
records placed by hand (windows, top series and "other", unknown cost kept apart from 0),
and through a Flask app making real calls to a LocalLLMServer, the JSON the page polls equal
to the records and to what the provider answered, behind the debug endpoints'
authorisation, under Flask and Django; the page carries its data and a policy allowing its
one script. tests/integrations/test_browser.py shows a browser drawing it and redrawing new data.
"""

import base64
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import pytest
import yaml
from flask import Flask, request
from prometheus_client import CollectorRegistry
from support import spawn
from support.clocks import Clock
from support.paths import EXAMPLES, ROOT
from support.prometheus import (
    PROMTOOL,
    api,
    binary,
    free_port,
    needs_prometheus,
    needs_promtool,
    prometheus_server,
    query,
    samples,
    scrape_config,
    total,
    unix_time,
    wait_for,
)
from support.records import request_record
from support.waiting import wait_until

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.errors import CircuitOpenError, SteerLLMError
from steer_llm_sdk.observability import RequestMetrics, metrics_context
from steer_llm_sdk.observability.conventions import FAMILIES, HEALTH_FAMILIES, Family
from steer_llm_sdk.observability.integrations.dashboard import (
    DASHBOARD_CSP,
    find_memory_sink,
    usage_period,
    usage_series,
)
from steer_llm_sdk.observability.integrations.flask import SteerLLMMetrics
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink, PrometheusMetricsSink
from steer_llm_sdk.reliability import CircuitBreaker, CircuitState, RetryPolicy
from steer_llm_sdk.testing import LocalLLMServer
from steer_llm_sdk.testing.server import Fault

DASHBOARD = ROOT / "docs" / "grafana" / "steer-llm-sdk.json"
RULES = ROOT / "docs" / "prometheus" / "steer-llm-sdk-rules.yml"
RULE_TESTS = ROOT / "docs" / "prometheus" / "steer-llm-sdk-rules.test.yml"

#: Grafana's own interval variables, as the end-to-end test fills them in.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}

#: Every family the metric sinks export: those fed by records and the pipeline's health.
EXPORTED = FAMILIES + HEALTH_FAMILIES

OPENAI, ANTHROPIC = "gpt-4o", "claude-3-5-sonnet-20241022"
#: Failed until its circuit opens, in every round of the workload.
FAILING = "gpt-4o-mini"
RECOVERY = 60.0


# --------------------------------------------------------------------------- reading the files
def load_dashboard() -> Dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def load_rules() -> List[Dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def panels(dashboard: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    """Every panel, those inside collapsed rows included; rows themselves left out."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def targets(dashboard: Dict[str, Any]) -> List[Tuple[str, str, str]]:
    """(panel title, refId, expr) of every query."""
    return [
        (panel["title"], target["refId"], target["expr"])
        for panel in panels(dashboard)
        for target in panel["targets"]
    ]


def variables(dashboard: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def concrete(expr: str, dashboard: Dict[str, Any], chosen: Optional[Dict[str, str]] = None) -> str:
    """``expr`` as Grafana would send it: interval variables get a value, label filters the
    regex of the ``chosen`` values, else ``.*`` (All)."""
    filters = {name for name, v in variables(dashboard).items() if v["type"] == "query"}

    def fill(match: "re.Match[str]") -> str:
        name = match.group(1) or match.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        assert name in filters, f"{name!r} in {expr!r} is no variable of the dashboard"
        return (chosen or {}).get(name, ".*")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", fill, expr)


def label_values(definition: str) -> Tuple[str, str]:
    """(series selector, label) of a variable's ``label_values(selector, label)`` query."""
    match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", definition.strip())
    assert match is not None, f"not a label_values() query: {definition!r}"
    return match.group(1), match.group(2)


# --------------------------------------------------------------------------- metric names
#: The samples of each kind of family, as (part, suffix of the sample name).
PARTS = {
    "counter": (("value", "_total"),),
    "gauge": (("value", ""),),
    "histogram": (("bucket", "_bucket"), ("count", "_count"), ("sum", "_sum")),
}


def sink_names() -> Dict[str, Tuple[str, str]]:
    """{sample name: (family key, part)} of everything PrometheusMetricsSink exposes, read
    from the families it registers."""
    registry = CollectorRegistry()
    PrometheusMetricsSink(registry=registry)
    keys = {family.description: family.key for family in EXPORTED}
    assert len(keys) == len(EXPORTED), "descriptions no longer tell the families apart"
    return {
        metric.name + suffix: (keys[metric.documentation], part)
        for metric in registry.collect()
        for part, suffix in PARTS[metric.type]
    }


def otlp_name(family: Family, namespace: str = "llm") -> str:
    """The Prometheus name of one of the OTLP sink's instruments after OpenTelemetry's
    translation (the Collector's Prometheus exporters, Prometheus' OTLP receiver): name
    tokens, the unit as a word (``{...}`` units dropped), ``_total`` on counters and
    ``_ratio`` on gauges of unit ``1``."""
    tokens = [t for t in re.split(r"[^A-Za-z0-9]+", family.name.format(ns=namespace)) if t]
    unit = re.sub(r"\{[^}]*\}", "", family.unit)
    word = {"s": "seconds", "1": ""}.get(unit, unit)
    if word and word not in tokens:
        tokens.append(word)
    if family.kind == "counter":
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if family.kind == "gauge" and family.unit == "1":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    return "_".join(tokens)


def otlp_names() -> Dict[Tuple[str, str], str]:
    """{(family key, part): sample name} of the OTLP sink's instruments in Prometheus."""
    out = {}
    for family in EXPORTED:
        name = otlp_name(family)
        for part, suffix in PARTS[family.kind]:
            out[(family.key, part)] = name + ("" if suffix == "_total" else suffix)
    return out


def referenced(expr: str, universe: Set[str]) -> Set[str]:
    """The metric names ``expr`` reads: plain selectors, and the names of ``universe`` that a
    ``__name__`` regex matches."""
    names = {
        name
        for pattern in re.findall(r'__name__\s*=~\s*"([^"]*)"', expr)
        for name in universe
        if re.fullmatch(pattern, name)
    }
    bare = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    for name in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare):
        if name.startswith(("llm_", "gen_ai_")) or ":" in name:
            names.add(name)
    return names


def all_queries() -> List[Tuple[str, str]]:
    """(where, expr) of every dashboard query, variable and rule."""
    dashboard = load_dashboard()
    out = [(f"panel {title!r} {ref}", expr) for title, ref, expr in targets(dashboard)]
    out += [
        (f"variable {v['name']}", label_values(v["definition"])[0])
        for v in variables(dashboard).values()
        if v["type"] == "query"
    ]
    out += [(f"rule {r.get('record') or r.get('alert')}", r["expr"]) for r in load_rules()]
    return out


def test_every_metric_read_is_exported_under_both_namings():
    # A misspelt or renamed metric leaves a panel empty with no error anywhere; the OTLP
    # path names the breaker gauge differently, and the queries must read it there too.
    ours, theirs = sink_names(), otlp_names()
    assert set(ours.values()) == set(theirs), "the two sinks export different families"
    recorded = {rule["record"] for rule in load_rules() if "record" in rule}
    universe = set(ours) | set(theirs.values())
    for where, expr in all_queries():
        names = referenced(expr, universe)
        assert names, f"{where} reads no metric: {expr}"
        unknown = names - universe - recorded
        assert not unknown, f"{where} reads {sorted(unknown)}, which nothing exports"
        for name in names & set(ours):
            twin = theirs[ours[name]]
            assert twin in names, f"{where} reads {name} but not {twin}, its OTLP path name"


# --------------------------------------------------------------------------- the dashboard
def test_dashboard_is_wired_to_its_datasource_and_variables():
    dashboard = load_dashboard()
    declared = variables(dashboard)
    assert declared["datasource"]["type"] == "datasource"
    assert declared["datasource"]["query"] == "prometheus"
    source = {"type": "prometheus", "uid": "${datasource}"}
    ids = [panel["id"] for panel in dashboard["panels"]] + [
        inner["id"] for row in dashboard["panels"] for inner in row.get("panels", [])
    ]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels(dashboard):
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == source, panel["title"]
            concrete(target["expr"], dashboard)  # names only variables that exist
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    for name, variable in declared.items():
        if variable["type"] == "query":
            # "All" must match every value, the empty one of calls made outside a route too.
            assert variable["allValue"] == ".*" and variable["includeAll"], name
            assert variable["datasource"] == source, name
            assert variable["query"] == variable["definition"], name
            label_values(concrete(variable["definition"], dashboard))


PROVIDER, MODEL, ROUTE = "gen_ai_provider_name", "gen_ai_request_model", "http_route"
#: (what, the series it is read from, the labels it must be broken down by).
BREAKDOWNS = (
    ("calls", r"llm_requests_total\{", (PROVIDER, MODEL, ROUTE)),
    ("failed calls", r'llm_requests_total\{[^}]*error_type!=""', (PROVIDER, MODEL, ROUTE)),
    ("tokens", r"gen_ai_client_token_usage_sum\{", (MODEL, ROUTE)),
    ("cost", r"llm_cost_USD_total\{", (MODEL, ROUTE)),
)


def test_dashboard_shows_what_the_issue_asks_for():
    exprs = [expr for _, _, expr in targets(load_dashboard())]
    everything = "\n".join(exprs)
    for metric in (
        "llm_requests_total",
        "llm_errors_total",
        "gen_ai_client_token_usage_sum",
        "llm_cost_USD_total",
        "llm_retry_attempts_total",
        "llm_records_dropped_total",
        "llm_sink_export_failures_total",
    ):
        assert metric in everything, metric
    assert any("llm_circuit_breaker_state" in expr for expr in exprs)
    for histogram in (
        "gen_ai_client_operation_duration_seconds",
        "llm_time_to_first_token_seconds",
    ):
        for q in ("0.5", "0.95"):
            assert any(
                f"histogram_quantile({q}," in expr and f"{histogram}_bucket" in expr
                for expr in exprs
            ), (histogram, q)
    for what, pattern, labels in BREAKDOWNS:
        for label in labels:
            assert any(
                re.search(pattern, expr) and re.search(rf"by \([^)]*\b{label}\b", expr)
                for expr in exprs
            ), f"no panel shows {what} by {label}"


# --------------------------------------------------------------------------- the rules
def test_alerts_carry_severity_and_text():
    alerts = [rule for rule in load_rules() if "alert" in rule]
    assert {rule["alert"] for rule in alerts} == {
        "LLMErrorRatioHigh",
        "LLMLatencyP95High",
        "LLMTimeToFirstTokenP95High",
        "LLMCostBurnRateHigh",
        "LLMCircuitBreakerOpen",
        "LLMMetricsRecordsDropped",
        "LLMMetricsExportFailing",
    }
    for rule in alerts:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]


def promtool(*args: str) -> "subprocess.CompletedProcess[str]":
    tool = binary(PROMTOOL, "promtool")
    return spawn.run([tool, *args], capture_output=True, text=True, timeout=30)


@needs_promtool
def test_promtool_accepts_the_rules():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


@needs_promtool
def test_rules_pass_their_unit_tests():
    # Every alert fires on a case made for it and stays quiet on its near misses (see the
    # test file); promtool resolves the rule file next to the test file.
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


# --------------------------------------------------------------------------- end to end
class BackendSink:
    """A sink exporting to a backend that can be down: then every delivery raises, as an
    exporter's would."""

    name = "backend"

    def __init__(self, down: bool) -> None:
        self.down = down

    def record(self, metrics: Any) -> None:
        if self.down:
            raise ConnectionError("the backend refused the connection")

    def flush(self) -> None:
        pass


def discard_marked(record: Any) -> Optional[Any]:
    """A filter dropping the records of calls made in a ``test.discard`` context."""
    return None if record.attributes.get("test.discard") else record


class MeasuredApp:
    """An application measured the Prometheus way: SteerLLMClient calls to a LocalLLMServer,
    recorded by a PrometheusMetricsSink (a registry of its own) that serves them on a
    loopback port; a filter and a sink whose backend may be down beside it lose records on
    purpose."""

    def __init__(
        self,
        collector: Any,
        sink: PrometheusMetricsSink,
        backend: BackendSink,
        llm: LocalLLMServer,
        **breaker: Any,
    ):
        self.collector, self.sink, self.backend, self.llm = collector, sink, backend, llm
        self.clock = Clock(0.0)  # the breaker's: circuits recover without waiting
        self.client = SteerLLMClient(
            metrics_collector=collector,
            openai_base_url=llm.openai_base_url,
            anthropic_base_url=llm.anthropic_base_url,
            openai_api_key="test",
            anthropic_api_key="test",
            retry_policy=RetryPolicy(initial_delay=0.0, max_delay=0.0, sleep=lambda _: None),
            circuit_breaker=CircuitBreaker(recovery_timeout=RECOVERY, clock=self.clock, **breaker),
        )
        self.port = free_port()
        self.server, self.thread = sink.start_http_server(self.port)

    def scrape_config(self) -> Dict[str, Any]:
        return scrape_config("app", self.port)

    def published(self, prom: str) -> None:
        """Return once Prometheus has scraped every record made so far, and the pipeline's
        own counters exactly as ``collector.stats()`` has them."""
        assert self.collector.flush(10), self.collector.stats()
        # Final now; the sink's server reads them anew at every scrape.
        calls = total(samples(self.sink.exposition()[0].decode()), "llm_requests_total")
        dropped, failures = pipeline_counts(self.collector.stats())

        def scraped() -> bool:
            result = query(prom, "sum(llm_requests_total)")
            return (
                bool(result)
                and float(result[0]["value"][1]) == calls
                and series(prom, "llm_records_dropped_total", "reason", "sink") == dropped
                and series(prom, "llm_sink_export_failures_total", "sink") == failures
            )

        wait_for(scraped, 20, f"Prometheus to scrape {calls} calls, {dropped} and {failures}")

    def close(self) -> None:
        self.client.close()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


#: Series values by their label values.
Counts = Dict[Tuple[str, ...], float]


def pipeline_counts(stats: Any) -> Tuple[Counts, Counts]:
    """What the pipeline's two families must hold, read from ``collector.stats()``: records
    dropped by (reason, sink) and failed exports by (sink,)."""
    dropped = {("sampled_out", ""): stats.sampled_out, ("filtered", ""): stats.filtered}
    dropped.update({(reason, ""): n for reason, n in stats.dropped.items()})
    for name, sink in stats.sinks.items():
        dropped[("sink_error", name)] = sink.failed
        dropped[("sink_queue_full", name)] = sink.dropped
    failures = {(name,): sink.errors for name, sink in stats.sinks.items()}
    return (
        {k: float(v) for k, v in dropped.items()},
        {k: float(v) for k, v in failures.items()},
    )


def series(prom: str, name: str, *labels: str) -> Counts:
    """{label values: value} of every series of ``name`` Prometheus holds now."""
    return {
        tuple(s["metric"].get(label, "") for label in labels): float(s["value"][1])
        for s in query(prom, name)
    }


@pytest.fixture
def make_app(make_collector):
    made: List[MeasuredApp] = []
    with LocalLLMServer(ttft_ms=5, tokens_per_second=2000) as llm:

        def make(
            backend_down: bool = True, stream_sampling: float = 1.0, **breaker: Any
        ) -> MeasuredApp:
            sink = PrometheusMetricsSink(registry=CollectorRegistry())
            backend = BackendSink(down=backend_down)
            collector = make_collector(
                [sink, backend],
                enable_cost_tracking=True,
                filters=[discard_marked],
                streaming_sampling_rate=stream_sampling,
            )
            made.append(MeasuredApp(collector, sink, backend, llm, **breaker))
            return made[-1]

        yield make
        for app in made:
            app.close()


def fails(call: Any, *args: Any, **kwargs: Any) -> SteerLLMError:
    with pytest.raises(SteerLLMError) as caught:
        call(*args, **kwargs)
    return caught.value


def workload(app: MeasuredApp) -> None:
    """One round of everything the dashboard shows. Run twice: rate() counts nothing of a
    series' first sample, so each series the second round adds to must exist already."""
    client, llm = app.client, app.llm
    app.clock.now += RECOVERY  # an open circuit may probe again
    with metrics_context(**{"http.route": "/chat"}):
        client.generate("hello", OPENAI)
        client.generate("hello", ANTHROPIC)
        for model in (OPENAI, ANTHROPIC):  # streams: time to first token
            with client.stream("tell me more", model) as stream:
                assert "".join(stream)
    with metrics_context(**{"http.route": "/summarize"}):
        client.generate("summarize this", OPENAI)
        llm.script(Fault(status=500))
        fails(client.generate, "summarize this", OPENAI, retries=0)
        llm.script(Fault(status=429, retry_after=0))
        client.generate("summarize this", OPENAI, retries=1)  # one retry, then an answer
        llm.script(Fault(status=529))
        fails(client.generate, "summarize this", ANTHROPIC, retries=0)
    with metrics_context(**{"http.route": "/draft"}):
        # Fail FAILING until its circuit opens (a half-open one after the clock moved needs
        # one failed probe), then once more: refused without reaching the server.
        key = f"openai:{FAILING}"
        while app.client.circuit_breaker.state(key) is not CircuitState.OPEN:
            llm.script(Fault(status=500))
            fails(client.generate, "draft", FAILING, retries=0)
        assert isinstance(fails(client.generate, "draft", FAILING), CircuitOpenError)
    with metrics_context(**{"test.discard": True}):
        client.generate("not for the dashboards", OPENAI)


#: Filter values the end-to-end test picks: each panel must still show data.
CHOSEN = {
    "job": "app",
    "provider": "openai",
    "model": f"({OPENAI}|{FAILING})",
    "route": "(/chat|/summarize)",
}


def has_data(result: List[Dict[str, Any]]) -> bool:
    """Whether a query's result holds a series with a finite value above 0 (a rate of 0 or
    a quantile of nothing would show an empty-looking panel)."""
    values = [float(series["value"][1]) for series in result]
    return any(math.isfinite(v) and v > 0 for v in values)


@needs_prometheus
@pytest.mark.slow
def test_every_panel_and_recording_rule_shows_data(tmp_path, make_app):
    dashboard = load_dashboard()
    app = make_app(failure_threshold=3)
    with prometheus_server(tmp_path, [app.scrape_config()], [RULES]) as prom:
        for _ in range(2):
            workload(app)
            app.published(prom)

        for name, variable in variables(dashboard).items():
            if variable["type"] == "query":
                selector, label = label_values(concrete(variable["definition"], dashboard))
                assert api(prom, f"label/{label}/values", **{"match[]": selector}), name

        empty = []
        for title, ref, expr in targets(dashboard):
            # All, then values picked as Grafana sends several (a filter on a misspelt
            # label would still match everything with All, and nothing with values).
            for chosen in (None, CHOSEN):
                sent = concrete(expr, dashboard, chosen)
                result = query(prom, sent)
                if not has_data(result):
                    empty.append(f"{title!r} {ref}: {sent} -> {result}")
        assert not empty, "panels without data:\n" + "\n".join(empty)

        # Read by state: the circuit the workload left open shows as open (2).
        breaker = next(e for t, _, e in targets(dashboard) if "llm_circuit_breaker_state" in e)
        states = {
            s["metric"]["gen_ai_request_model"]: float(s["value"][1])
            for s in query(prom, concrete(breaker, dashboard))
        }
        assert states == {OPENAI: 0.0, ANTHROPIC: 0.0, FAILING: 2.0}, states

        recorded = [rule["record"] for rule in load_rules() if "record" in rule]
        wait_for(
            lambda: all(has_data(query(prom, name)) for name in recorded),
            20,
            "every recording rule to have data: "
            + ", ".join(name for name in recorded if not has_data(query(prom, name))),
        )

    # The pipeline's panels show losses that happened (and published() found Prometheus
    # holding exactly these counts).
    stats = app.collector.stats()
    assert stats.filtered > 0 and stats.sinks["backend"].failed > 0, stats


def rules_with_short_for(directory: Path, alerts: Tuple[str, ...], wait: str) -> Path:
    """A copy of the rules in which only the ``for:`` of ``alerts`` is ``wait``."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    rules = [r for g in groups["groups"] for r in g["rules"] if r.get("alert") in alerts]
    assert len(rules) == len(alerts), alerts
    for rule in rules:
        rule["for"] = wait
    copy = directory / RULES.name
    copy.write_text(yaml.safe_dump(groups, sort_keys=False))
    return copy


def alert_rule(prom: str, name: str) -> Dict[str, Any]:
    groups = api(prom, "rules")["groups"]
    return next(r for g in groups for r in g["rules"] if r["name"] == name)


def evaluated_since(prom: str, moment: float) -> bool:
    """Whether every rule group has been evaluated since ``moment`` (Unix seconds)."""
    groups = api(prom, "rules")["groups"]
    return bool(groups) and all(unix_time(g["lastEvaluation"]) > moment for g in groups)


@needs_prometheus
@pytest.mark.slow
def test_error_ratio_alert_fires_on_a_burst_of_provider_errors_not_on_a_healthy_run(
    tmp_path, make_app
):
    name = "LLMErrorRatioHigh"
    (rule,) = [r for r in load_rules() if r.get("alert") == name]
    threshold = float(re.search(r"error_ratio:rate5m > ([0-9.]+)", rule["expr"]).group(1))
    # The shipped `for:` (minutes) would outlast the test: the copy Prometheus loads waits 2 s
    # instead; the expression, its thresholds and the recording rules are the shipped ones.
    rules = rules_with_short_for(tmp_path, (name,), "2s")
    # A breaker that never opens: every scripted error must reach the server.
    app = make_app(failure_threshold=1000)
    client, llm = app.client, app.llm
    of_model = f'{{gen_ai_request_model="{OPENAI}"}}'
    ratio_of = "job_provider_model:llm_requests_error_ratio:rate5m" + of_model
    calls_of = "job_provider_model:llm_requests:rate5m" + of_model
    with prometheus_server(tmp_path, [app.scrape_config()], [rules]) as prom:
        # One call of each outcome first, so that their series exist before the counted
        # ones: rate() counts nothing of a series' first sample.
        client.generate("hello", OPENAI)
        for status in (500, 429):
            llm.script(Fault(status=status))
            fails(client.generate, "hello", OPENAI, retries=0)
        app.published(prom)

        # Healthy: errors, but under the threshold.
        for i in range(60):
            client.generate(f"question {i}", OPENAI)
        llm.script(Fault(status=500))
        fails(client.generate, "one more", OPENAI, retries=0)
        app.published(prom)
        # Both groups evaluated more than an interval (1 s) after the data arrived: the
        # alerts then read recorded values that include it.
        moment = time.time() + 1
        wait_for(lambda: evaluated_since(prom, moment), 15, "the rules to see the data")
        ratio = float(query(prom, ratio_of)[0]["value"][1])
        assert 0 < ratio < threshold, ratio
        # Over the traffic floor: only the ratio keeps the alert quiet.
        assert float(query(prom, calls_of)[0]["value"][1]) * 300 >= 10
        assert alert_rule(prom, name)["state"] == "inactive"
        assert not [a for a in api(prom, "alerts")["alerts"] if a["labels"]["alertname"] == name]

        # A burst of provider errors, retries off.
        for _ in range(10):
            llm.script(Fault(status=500), Fault(status=429, retry_after=0))
            fails(client.generate, "burst", OPENAI, retries=0)
            fails(client.generate, "burst", OPENAI, retries=0)
        app.published(prom)

        def firing() -> List[Dict[str, Any]]:
            return [
                a
                for a in api(prom, "alerts")["alerts"]
                if a["labels"]["alertname"] == name and a["state"] == "firing"
            ]

        (alert,) = wait_for(firing, 20, f"{name} to fire")
        assert alert["labels"]["gen_ai_request_model"] == OPENAI
        assert alert["labels"]["gen_ai_provider_name"] == "openai"
        assert alert["labels"]["severity"] == rule["labels"]["severity"]
        assert float(alert["value"]) > threshold
        assert "of LLM calls fail" in alert["annotations"]["summary"]


def firing(prom: str, name: str) -> List[Dict[str, Any]]:
    return [
        a
        for a in api(prom, "alerts")["alerts"]
        if a["labels"]["alertname"] == name and a["state"] == "firing"
    ]


@needs_prometheus
@pytest.mark.slow
def test_pipeline_alerts_fire_on_lost_records_and_a_failing_sink_not_on_chosen_drops(
    tmp_path, make_app
):
    dropped, failing = "LLMMetricsRecordsDropped", "LLMMetricsExportFailing"
    # As in the error-ratio test: only `for:` is shortened, from 10 minutes to 2 s.
    rules = rules_with_short_for(tmp_path, (dropped, failing), "2s")
    # Streams' StreamingMetrics are all sampled out: a drop by choice, as a filtered record.
    app = make_app(backend_down=False, stream_sampling=0.0)
    client, collector = app.client, app.collector
    with prometheus_server(tmp_path, [app.scrape_config()], [rules]) as prom:
        # Healthy: records sampled out and filtered on purpose, none lost, no sink failing.
        # Twice, each scraped: rate() counts nothing of a series' first sample.
        for part in range(2):
            for i in range(10):
                client.generate(f"question {part}.{i}", OPENAI)
            with client.stream("tell me more", OPENAI) as stream:
                assert "".join(stream)
            with metrics_context(**{"test.discard": True}):
                client.generate("not for the dashboards", OPENAI)
            app.published(prom)
        stats = collector.stats()
        assert stats.sampled_out > 0 and stats.filtered > 0, stats
        chosen = query(prom, "sum by (reason) (rate(llm_records_dropped_total[5m])) > 0")
        assert {s["metric"]["reason"] for s in chosen} == {"sampled_out", "filtered"}
        moment = time.time() + 1
        wait_for(lambda: evaluated_since(prom, moment), 15, "the rules to see the data")
        for name in (dropped, failing):
            assert alert_rule(prom, name)["state"] == "inactive", name

        # Lost: records that are no records (refused as invalid), and a backend gone down.
        app.backend.down = True
        for _ in range(5):
            assert collector.record("not a record") is False
        for i in range(5):
            client.generate(f"while the backend is down {i}", OPENAI)
        app.published(prom)

        lost = wait_for(
            lambda: len(firing(prom, dropped)) == 2 and firing(prom, dropped), 20, dropped
        )
        assert {a["labels"]["reason"] for a in lost} == {"invalid", "sink_error"}
        assert all(a["labels"]["job"] == "app" for a in lost)
        (down,) = wait_for(lambda: firing(prom, failing), 20, failing)
        assert down["labels"]["sink"] == "backend"
        assert down["annotations"]["summary"] == "app: metrics sink backend keeps failing"
        assert collector.stats().dropped["invalid"] == 5


# =========================================================================== the debug page
# The debug dashboard of the Flask and Django integrations (integrations/dashboard.py):
# tokens and cost per route and model over fixed windows, as JSON and drawn by the page
# (tests/integrations/test_browser.py proves the drawing and the refresh in a real browser).
PERIOD = 10.0
#: Inside the window [1_000_000, 1_000_010), the newest of the twelve.
NOW = 1_000_005.0
OLDEST = 1_000_000.0 - 11 * PERIOD


def call(
    timestamp: float,
    model: str = "gpt-4o-mini",
    route: Optional[str] = "/chat",
    usage: Tuple[int, int] = (3, 4),
    cost: Optional[float] = 0.5,
) -> RequestMetrics:
    attributes = {} if route is None else {"http.route": route}
    return request_record(
        0, model, timestamp=timestamp, usage=usage, attributes=attributes, cost_usd=cost
    )


def by_series(usage: Dict[str, Any]) -> Dict[Tuple[Any, Any, Any], Dict[str, Any]]:
    return {(s["route"], s["provider"], s["model"]): s for s in usage["series"]}


def test_usage_series_places_each_call_in_its_window_and_its_route_and_model():
    records = [
        call(NOW - 1),
        call(NOW - 2 * PERIOD, usage=(10, 1), cost=0.25),
        call(OLDEST, model="claude-3-5-haiku-latest", route=None, usage=(1, 1), cost=None),
        call(OLDEST - 0.001, usage=(100, 100)),  # before the oldest window: left out
        call(NOW + PERIOD, usage=(100, 100)),  # after the newest (a skewed clock): left out
        call(NOW - 1, model="local", cost=None),
        call(NOW - 2, model="local", cost=0.125),
        call(NOW - PERIOD, model="local", cost=None),
    ]
    usage = usage_series(records, PERIOD, NOW)
    windows = usage["windows"]
    assert [w["start"] for w in windows] == [OLDEST + i * PERIOD for i in range(12)]
    assert all(w["end"] == w["start"] + PERIOD and w["complete"] for w in windows)
    assert [w["in_progress"] for w in windows] == [False] * 11 + [True]
    series = by_series(usage)
    # Most tokens first: /chat gpt-4o-mini (18), /chat local (21 in three calls)...
    assert [(s["route"], s["model"]) for s in usage["series"]] == [
        ("/chat", "local"),
        ("/chat", "gpt-4o-mini"),
        (None, "claude-3-5-haiku-latest"),
    ]
    mini = series[("/chat", "openai", "gpt-4o-mini")]
    zeros = [0] * 12
    assert mini["input_tokens"] == zeros[:9] + [10, 0, 3]
    assert mini["output_tokens"] == zeros[:9] + [1, 0, 4]
    assert mini["calls"] == zeros[:9] + [1, 0, 1]
    assert mini["cost_usd"] == [0.0] * 9 + [0.25, 0.0, 0.5]
    assert mini["total"] == {
        "calls": 2,
        "input_tokens": 13,
        "output_tokens": 5,
        "cost_usd": 0.75,
        "cost_unknown_calls": 0,
    }
    # No route: kept as None (the page says "(no route)"); an unknown cost is not 0.
    claude = series[(None, "openai", "claude-3-5-haiku-latest")]
    assert claude["input_tokens"][0] == 1 and claude["cost_usd"] == [None] + [0.0] * 11
    assert claude["cost_unknown_calls"] == [1] + zeros[1:]
    assert claude["total"]["cost_usd"] is None and claude["total"]["cost_unknown_calls"] == 1
    # Known and unknown in one window: the known sum, and how many calls it misses.
    local = series[("/chat", "openai", "local")]
    assert local["cost_usd"][10:] == [None, 0.125]
    assert local["cost_unknown_calls"][10:] == [1, 1]
    assert local["total"]["cost_usd"] == 0.125 and local["total"]["cost_unknown_calls"] == 2
    assert all(not s["other"] and s["merged"] == 1 for s in usage["series"])
    json.dumps(usage, allow_nan=False)  # what the endpoint sends


def test_usage_series_keeps_the_top_series_apart_and_sums_the_rest_as_other():
    # 30 models, model i with i + 1 input tokens; every third of unknown cost.
    records = [
        call(NOW - 1, model=f"m{i:02d}", usage=(i + 1, 0), cost=None if i % 3 == 0 else 0.5)
        for i in range(30)
    ]
    usage = usage_series(records, PERIOD, NOW, top=8)
    assert len(usage["series"]) == 9
    kept, other = usage["series"][:8], usage["series"][8]
    assert [s["model"] for s in kept] == [f"m{i:02d}" for i in range(29, 21, -1)]
    assert other["other"] and other["merged"] == 22
    assert (other["route"], other["provider"], other["model"]) == (None, None, None)
    rest = records[:22]
    assert other["input_tokens"][-1] == sum(r.prompt_tokens for r in rest)
    assert other["calls"][-1] == 22
    known = [r.cost_usd for r in rest if r.cost_usd is not None]
    assert other["cost_usd"][-1] == math.fsum(known)
    assert other["cost_unknown_calls"][-1] == len(rest) - len(known)
    # However many series and calls: at most top + 1 series of twelve windows each.
    many = records * 40 + [call(NOW - 30, model=f"x{i}") for i in range(500)]
    big = usage_series(many, PERIOD, NOW, top=8)
    assert len(big["series"]) == 9 and {len(s["calls"]) for s in big["series"]} == {12}
    assert sum(sum(s["calls"]) for s in big["series"]) == len(many)


def test_usage_series_marks_the_windows_records_may_have_left():
    usage = usage_series([], PERIOD, NOW, retained_since=OLDEST + 3 * PERIOD - 1)
    assert [w["complete"] for w in usage["windows"]] == [False] * 3 + [True] * 9
    assert usage["series"] == []
    with pytest.raises(ValueError):
        usage_series([], 0.0, NOW)


def test_usage_windows_are_the_rollup_period_else_the_dashboard_window_in_twelve(
    make_collector,
):
    assert usage_period(make_collector(), 300.0) == (25.0, "window_seconds")
    rolled = make_collector(usage_rollup_seconds=60.0)
    assert usage_period(rolled, 300.0) == (60.0, "usage_rollup_seconds")


# --------------------------------------------------------------------------- served by Flask
ALLOWED = {"X-Debug": "yes"}


@pytest.fixture
def flask_app(make_collector, server):
    """A Flask app whose views call a LocalLLMServer through SteerLLMClient, measured by a
    collector with cost tracking and one-second roll-ups; the debug endpoints are allowed
    to requests carrying ``ALLOWED``. Yields (app, client, collector)."""
    collector = make_collector(
        [InMemoryMetricsSink()], enable_cost_tracking=True, usage_rollup_seconds=1.0
    )
    client = SteerLLMClient(
        metrics_collector=collector,
        openai_base_url=server.openai_base_url,
        anthropic_base_url=server.anthropic_base_url,
        openai_api_key="test",
        anthropic_api_key="test",
        environ={},
    )
    app = Flask(__name__)
    app.config.update(
        STEER_LLM_METRICS_DEBUG_ENDPOINTS=True,
        STEER_LLM_METRICS_AUTHORIZE=lambda request: request.headers.get("X-Debug") == "yes",
    )

    @app.post("/chat/<model>")
    def chat(model: str) -> Dict[str, Any]:
        usage = client.generate(request.get_json()["prompt"], model).usage
        return {"usage": [usage.prompt_tokens, usage.completion_tokens]}

    @app.post("/stream/<model>")
    def stream(model: str) -> Dict[str, Any]:
        usage = client.stream_with_usage(request.get_json()["prompt"], model).usage
        return {"usage": [usage.prompt_tokens, usage.completion_tokens]}

    SteerLLMMetrics(app, collector=collector)
    yield app, client, collector
    client.close()


def test_usage_json_equals_the_records_of_real_calls(flask_app):
    app, client, collector = flask_app
    web = app.test_client()
    answered: Dict[Tuple[Any, str], List[int]] = {}

    def ask(view: str, model: str, prompt: str) -> None:
        reply = web.post(f"/{view}/{model}", json={"prompt": prompt})
        assert reply.status_code == 200
        seen = answered.setdefault((f"/{view}/<model>", model), [0, 0, 0])
        seen[0] += 1
        seen[1] += reply.json["usage"][0]
        seen[2] += reply.json["usage"][1]

    def outside(prompt: str) -> None:  # no request, no route
        usage = client.generate(prompt, "gpt-4o-mini").usage
        seen = answered.setdefault((None, "gpt-4o-mini"), [0, 0, 0])
        seen[0] += 1
        seen[1] += usage.prompt_tokens
        seen[2] += usage.completion_tokens

    for n in range(3):
        ask("chat", "gpt-4o-mini", "hello " * (n + 1))
    ask("stream", "claude-3-5-haiku-latest", "tell me more")
    ask("chat", "gpt-local-unpriced", "no price for this one")
    outside("from a background job")
    # Into the next one-second window, so that the series has more than one.
    boundary = math.floor(time.time()) + 1.0
    assert wait_until(lambda: time.time() >= boundary, 3)
    ask("chat", "gpt-4o-mini", "once more")
    ask("chat", "gpt-local-unpriced", "and again")
    outside("another job")
    assert collector.flush(5)

    body = web.get("/_steer/debug/usage", headers=ALLOWED).json
    assert body["period_from"] == "usage_rollup_seconds"
    usage = body["usage"]
    assert usage["period_seconds"] == 1.0
    starts = [w["start"] for w in usage["windows"]]

    # Expected, from the records the sink holds (the roll-ups beside them are left out).
    records = find_memory_sink(collector).get_metrics(metric_type="request")
    assert len(records) == 9 and len({math.floor(r.timestamp) for r in records}) >= 2
    expected: Dict[Tuple[Any, str, Any], Dict[str, Any]] = {}
    for record in records:
        key = (record.attributes.get("http.route"), record.provider, record.model)
        cells = expected.setdefault(key, {})
        window = starts.index(math.floor(record.timestamp))
        cell = cells.setdefault(window, {"calls": 0, "in": 0, "out": 0, "costs": []})
        cell["calls"] += 1
        cell["in"] += record.prompt_tokens
        cell["out"] += record.completion_tokens
        cell["costs"].append(record.cost_usd)
    shown = by_series(usage)
    assert set(shown) == set(expected)
    for key, cells in expected.items():
        series = shown[key]
        for window in range(12):
            cell = cells.get(window, {"calls": 0, "in": 0, "out": 0, "costs": []})
            known = [c for c in cell["costs"] if c is not None]
            unknown = len(cell["costs"]) - len(known)
            assert series["calls"][window] == cell["calls"], (key, window)
            assert series["input_tokens"][window] == cell["in"], (key, window)
            assert series["output_tokens"][window] == cell["out"], (key, window)
            assert series["cost_unknown_calls"][window] == unknown, (key, window)
            cost = None if unknown and not known else math.fsum(known)
            assert series["cost_usd"][window] == cost, (key, window)

    # The totals are what the provider answered, route by route and model by model.
    for (route, model), (calls, prompt, completion) in answered.items():
        (series,) = [s for s in usage["series"] if (s["route"], s["model"]) == (route, model)]
        assert (
            series["total"]["calls"],
            series["total"]["input_tokens"],
            series["total"]["output_tokens"],
        ) == (calls, prompt, completion)
    priced = shown[("/chat/<model>", "openai", "gpt-4o-mini")]["total"]
    assert priced["cost_usd"] > 0 and priced["cost_unknown_calls"] == 0
    unpriced = shown[("/chat/<model>", "openai", "gpt-local-unpriced")]["total"]
    assert unpriced["cost_usd"] is None and unpriced["cost_unknown_calls"] == 2


def test_usage_json_needs_the_debug_authorisation(flask_app):
    app, _, _ = flask_app
    web = app.test_client()
    assert web.get("/_steer/debug/usage").status_code == 403
    assert web.get("/_steer/debug/usage", headers={"X-Debug": "no"}).status_code == 403
    allowed = web.get("/_steer/debug/usage", headers=ALLOWED)
    assert allowed.status_code == 200 and allowed.json["usage"] is not None
    assert allowed.headers["Cache-Control"] == "no-store"
    app.config["STEER_LLM_METRICS_AUTHORIZE"] = None  # the default: app.debug
    assert web.get("/_steer/debug/usage", headers=ALLOWED).status_code == 403
    app.debug = True
    assert web.get("/_steer/debug/usage").status_code == 200
    app.config["STEER_LLM_METRICS_DEBUG_ENDPOINTS"] = False
    assert web.get("/_steer/debug/usage").status_code == 404


def test_dashboard_page_carries_its_data_and_allows_only_its_own_script(flask_app):
    app, client, collector = flask_app
    web = app.test_client()
    assert web.post("/chat/gpt-4o-mini", json={"prompt": "hi"}).status_code == 200
    assert collector.flush(5)
    page = web.get("/_steer/debug/dashboard", headers=ALLOWED)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    embedded = json.loads(
        re.search(r'<script type="application/json" id="usage-data">(.*?)</script>', text).group(1)
    )
    polled = web.get("/_steer/debug/usage", headers=ALLOWED).json
    assert embedded["usage"]["series"] == polled["usage"]["series"]
    (script,) = re.findall(r"<script>(.*?)</script>", text, flags=re.S)
    policy = dict(
        part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";")
    )
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert policy["script-src"] == f"'sha256-{digest}'"  # this script, and no other
    assert policy["connect-src"] == "'self'" and policy["default-src"] == "'none'"
    assert '"usage"' in script  # it polls the JSON beside the page
    local = text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http://" not in local and "https://" not in local  # no external assets


def test_django_serves_the_usage_json_under_the_debug_authorisation():
    sys.path.insert(0, str(EXAMPLES / "django_project"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django
    from django.test import Client, override_settings

    django.setup()
    from steer_llm_sdk.observability import get_collector

    collector = get_collector()
    sink = find_memory_sink(collector)
    sink.clear()
    # A model without a price: its cost stays unknown whether or not the default collector
    # (which an earlier test may have configured) tracks costs.
    collector.record(call(time.time(), "gpt-local-unpriced", "/chat/<str:model>", (5, 6), None))
    assert collector.flush(5)
    with override_settings(STEER_LLM_METRICS={"debug_endpoints": True}):
        assert Client().get("/_steer/debug/usage").status_code == 403  # no staff user
    with override_settings(STEER_LLM_METRICS={"debug_endpoints": False}):
        assert Client().get("/_steer/debug/usage").status_code == 404
    allowed = {"debug_endpoints": True, "authorize": lambda request: True}
    with override_settings(STEER_LLM_METRICS=allowed):
        reply = Client().get("/_steer/debug/usage")
        page = Client().get("/_steer/debug/dashboard")
    assert reply.status_code == 200 and reply["Cache-Control"] == "no-store"
    (series,) = reply.json()["usage"]["series"]
    assert (series["route"], series["model"]) == ("/chat/<str:model>", "gpt-local-unpriced")
    assert series["total"]["input_tokens"] == 5 and series["total"]["cost_usd"] is None
    assert page["Content-Security-Policy"] == DASHBOARD_CSP
