"""A Flask app whose views call SteerLLMClient; LLM metrics are tagged with the route.

Run it (a local LLM server is started in-process unless STEER_LLM_BASE_URL names one):

    python examples/flask_app/app.py
    gunicorn --preload -w 4 -c examples/flask_app/gunicorn.conf.py \\
        --chdir examples/flask_app "app:create_app()"

Environment: ``STEER_LLM_BASE_URL`` (an OpenAI/Anthropic-compatible server; both protocols are
served under it), the standard ``OTEL_EXPORTER_OTLP_*`` variables (OTLP export is on when an
endpoint is set), ``STEER_OTLP_EXPORT_INTERVAL`` (seconds), ``STEER_DEBUG_ENDPOINTS=1`` to
serve ``/_steer/debug`` and ``/_steer/debug/dashboard`` to everyone (a demo setting),
``PROMETHEUS_MULTIPROC_DIR`` (an empty directory: Prometheus families of all workers at
``/_steer/metrics``; ``STEER_PROMETHEUS_TOKEN`` makes scrapes send it as a bearer token).
"""

import os
from typing import Any, Dict, List, Optional

from flask import Flask, jsonify, request

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.observability import MetricsConfig, configure
from steer_llm_sdk.observability.integrations.flask import SteerLLMMetrics
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink, OTelMetricsSink
from steer_llm_sdk.reliability import RetryPolicy

_local_server: Optional[Any] = None


def _llm_base_url() -> str:
    global _local_server
    url = os.environ.get("STEER_LLM_BASE_URL")
    if url:
        return url.rstrip("/")
    if _local_server is None:
        from steer_llm_sdk.testing import LocalLLMServer

        _local_server = LocalLLMServer(ttft_ms=20, tokens_per_second=300).start()
    return str(_local_server.url)


def create_app() -> Flask:
    sinks: List[Any] = [InMemoryMetricsSink()]
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
    ):
        interval = float(os.environ.get("STEER_OTLP_EXPORT_INTERVAL", "10"))
        sinks.append(
            OTelMetricsSink(service_name="flask-example", export_interval_seconds=interval)
        )
    prometheus = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    if prometheus:
        from steer_llm_sdk.observability.sinks import PrometheusMetricsSink

        sinks.append(PrometheusMetricsSink())
    collector = configure(MetricsConfig.from_env(), sinks)
    base = _llm_base_url()
    client = SteerLLMClient(
        metrics_collector=collector,
        openai_base_url=base + "/v1",
        anthropic_base_url=base,
        openai_api_key=os.environ.get("OPENAI_API_KEY", "local"),
        anthropic_api_key=os.environ.get("ANTHROPIC_API_KEY", "local"),
        retry_policy=RetryPolicy(max_attempts=2, initial_delay=0.05),
    )

    app = Flask(__name__)
    app.config["STEER_LLM_METRICS_DEBUG_ENDPOINTS"] = os.environ.get("STEER_DEBUG_ENDPOINTS") == "1"
    if app.config["STEER_LLM_METRICS_DEBUG_ENDPOINTS"]:
        app.config["STEER_LLM_METRICS_AUTHORIZE"] = lambda req: True  # demo only
    app.config["STEER_LLM_METRICS_PROMETHEUS_ENDPOINT"] = prometheus
    app.config["STEER_LLM_METRICS_PROMETHEUS_TOKEN"] = os.environ.get("STEER_PROMETHEUS_TOKEN")
    SteerLLMMetrics(app, collector=collector)

    @app.post("/chat")
    def chat() -> Any:
        body: Dict[str, Any] = request.get_json(silent=True) or {}
        response = client.generate(
            body.get("prompt", "hello"), model=body.get("model", "gpt-4o-mini")
        )
        return jsonify(text=response.text, tokens=response.usage.total_tokens)

    @app.post("/stream")
    def stream() -> Any:
        body: Dict[str, Any] = request.get_json(silent=True) or {}
        result = client.stream_with_usage(
            body.get("prompt", "hello"), model=body.get("model", "claude-3-5-haiku-latest")
        )
        return jsonify(text=result.text, tokens=result.usage.total_tokens)

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok", pid=os.getpid())

    return app


if __name__ == "__main__":
    os.environ.setdefault("STEER_DEBUG_ENDPOINTS", "1")
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
