"""Flask integration with the Flask test client: route attributes, cleanup after errors,
debug endpoints off by default, 403/404, the JSON summary."""

import os
import re

import pytest
from flask import Flask

from steer_llm_sdk.observability import (
    MetricsCollector,
    MetricsConfig,
    current_attributes,
    track_request,
)
from steer_llm_sdk.observability.integrations.flask import SteerLLMMetrics
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink


@pytest.fixture
def collector():
    c = MetricsCollector(
        MetricsConfig(flush_on_exit=False, batch_timeout_seconds=0.02), [InMemoryMetricsSink()]
    )
    yield c
    c.shutdown(5)


def make_app(collector, **config):
    app = Flask(__name__)
    app.config.update(config)
    ask = collector.track_request("openai", model="gpt-4o")(
        lambda: {"usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    )

    @app.get("/items/<int:item>")
    def item(item):
        ask()
        return {"attrs": current_attributes()}

    @app.get("/boom")
    def boom():
        ask()
        raise RuntimeError("view failed")

    SteerLLMMetrics(app, collector=collector)
    return app


def test_records_carry_the_route_and_method(collector):
    app = make_app(collector)
    response = app.test_client().get("/items/7")
    assert response.json["attrs"] == {"http.route": "/items/<int:item>", "http.method": "GET"}
    collector.flush(5)
    (m,) = collector.sinks[0].get_metrics(metric_type="request")
    assert m.attributes == {"http.route": "/items/<int:item>", "http.method": "GET"}


def test_context_is_removed_after_a_failing_view(collector):
    app = make_app(collector)
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client = app.test_client()
    assert client.get("/boom").status_code == 500
    assert current_attributes() == {}
    assert client.get("/items/1").json["attrs"]["http.route"] == "/items/<int:item>"
    collector.flush(5)
    routes = [
        m.attributes["http.route"] for m in collector.sinks[0].get_metrics(metric_type="request")
    ]
    assert routes == ["/boom", "/items/<int:item>"]


def test_debug_endpoints_are_off_by_default(collector):
    client = make_app(collector).test_client()
    assert client.get("/_steer/debug").status_code == 404
    assert client.get("/_steer/debug/dashboard").status_code == 404


def test_debug_endpoints_need_authorisation(collector):
    app = make_app(collector, STEER_LLM_METRICS_DEBUG_ENDPOINTS=True)
    assert app.test_client().get("/_steer/debug").status_code == 403  # not app.debug
    app = make_app(
        collector,
        STEER_LLM_METRICS_DEBUG_ENDPOINTS=True,
        STEER_LLM_METRICS_AUTHORIZE=lambda request: request.headers.get("X-Ok") == "1",
    )
    client = app.test_client()
    assert client.get("/_steer/debug/dashboard").status_code == 403
    assert client.get("/_steer/debug", headers={"X-Ok": "1"}).status_code == 200


def test_json_summary_and_dashboard(collector):
    app = make_app(
        collector, STEER_LLM_METRICS_DEBUG_ENDPOINTS=True, STEER_LLM_METRICS_URL_PREFIX="/ops"
    )
    app.debug = True
    client = app.test_client()
    for i in range(3):
        client.get(f"/items/{i}")
    collector.flush(5)
    body = client.get("/ops/debug").json
    summary = body["summary"]
    assert summary["total_requests"] == 3 and summary["error_rate"] == 0
    assert summary["prompt_tokens"] == 9 and summary["completion_tokens"] == 12
    assert list(summary["by_model"]) == ["openai/gpt-4o"]
    assert body["collector"]["recorded"] == 3
    # One worker's data, and said so: its pid and where the whole app is seen.
    assert body["process"]["pid"] == os.getpid()
    assert body["process"]["scope"] == "this worker process only"
    page = client.get("/ops/debug/dashboard")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "<svg" in html and "openai/gpt-4o" in html
    assert f"worker pid {os.getpid()}" in html and "Prometheus endpoint" in html
    # The chart counts LLM calls from the usage roll-ups: 3 calls in the window.
    chart = html[html.index("<h2>LLM calls over time") :]
    chart = chart[: chart.index("</svg>")]
    bars = [float(v) for v in re.findall(r"<title>-\d+s: ([0-9.]+)</title>", chart)]
    assert len(bars) == 12 and sum(bars) == 3
    local = html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a namespace, not a fetch
    assert "http://" not in local and "https://" not in local  # no external assets
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]


def test_app_factory_and_several_apps(collector):
    extension = SteerLLMMetrics(collector=collector)
    first, second = Flask("first"), Flask("second")
    extension.init_app(first)
    extension.init_app(second)
    assert first.extensions["steer_llm_metrics"] is extension
    assert second.extensions["steer_llm_metrics"] is extension


def test_disabled_extension_adds_nothing(collector):
    app = Flask(__name__)
    app.config["STEER_LLM_METRICS_ENABLED"] = False
    SteerLLMMetrics(app, collector=collector)
    assert not app.before_request_funcs and "steer_llm_metrics" not in app.blueprints


def test_module_level_tracking_inside_requests(collector):
    ask = track_request("openai", model="m")(lambda: None)
    app = make_app(collector)

    @app.get("/plain")
    def plain():
        ask()
        return "ok"

    assert app.test_client().get("/plain").data == b"ok"
