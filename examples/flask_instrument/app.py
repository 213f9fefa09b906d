"""A Flask app on the official ``openai`` and ``anthropic`` SDKs, measured by ``instrument()``.

The views are plain SDK code, written as they would be without steer_llm_sdk. What the
library adds is the block marked "measuring": ``instrument()`` measures every SDK call,
``configure()`` says where the records go, ``SteerLLMMetrics`` tags them with the Flask
route and serves them. Where to see them:

- ``GET /_steer/metrics``: Prometheus text, every worker's values summed (set
  ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before the server starts);
- ``GET /_steer/debug`` (JSON) and ``/_steer/debug/dashboard`` (HTML): the in-memory sink of
  the one worker that answers, for requests sending ``Authorization: Bearer
  $STEER_DEBUG_TOKEN`` (unset: 403 for everyone);
- OTLP, when ``OTEL_EXPORTER_OTLP_ENDPOINT`` names a receiver (an OpenTelemetry Collector).

Run it (the SDKs read ``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL`` and the keys as usual;
here the package's local LLM server stands in for both providers)::

    python -m steer_llm_sdk.testing.server --port 8000 &
    export OPENAI_BASE_URL=http://127.0.0.1:8000/v1 ANTHROPIC_BASE_URL=http://127.0.0.1:8000
    export OPENAI_API_KEY=test ANTHROPIC_API_KEY=test
    export PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) STEER_DEBUG_TOKEN=change-me
    gunicorn -c examples/flask_instrument/gunicorn.conf.py \\
        --chdir examples/flask_instrument "app:create_app()"
"""

import hmac
import os
from typing import Any, Dict, List

import anthropic
import openai
from flask import Flask, jsonify, request

# -- measuring: everything steer_llm_sdk adds ---------------------------------------------
from steer_llm_sdk.observability import MetricsConfig, configure, instrument
from steer_llm_sdk.observability.integrations.flask import SteerLLMMetrics
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink


def _sinks() -> List[Any]:
    # The debug page reads an InMemoryMetricsSink: keep one beside any other sink.
    sinks: List[Any] = [InMemoryMetricsSink()]
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from steer_llm_sdk.observability.sinks import PrometheusMetricsSink

        sinks.append(PrometheusMetricsSink())
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from steer_llm_sdk.observability.sinks import OTelMetricsSink

        sinks.append(OTelMetricsSink())  # OTEL_* variables: endpoint, service name, interval
    return sinks


def _debug_allowed(req: Any) -> bool:
    """Only a request carrying ``Authorization: Bearer $STEER_DEBUG_TOKEN`` may see the debug
    endpoints (no token configured: nobody)."""
    token = os.environ.get("STEER_DEBUG_TOKEN", "")
    given = req.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def _measure(app: Flask) -> None:
    configure(MetricsConfig.from_env(), _sinks())
    app.config.update(
        STEER_LLM_METRICS_PROMETHEUS_ENDPOINT=bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")),
        STEER_LLM_METRICS_DEBUG_ENDPOINTS=True,
        # Without it the debug endpoints answer 403 unless app.debug, which gunicorn never sets.
        STEER_LLM_METRICS_AUTHORIZE=_debug_allowed,
    )
    SteerLLMMetrics(app)


instrument()  # every openai and anthropic call from here on is measured
# -----------------------------------------------------------------------------------------


def create_app() -> Flask:
    """The application: three views calling the SDKs, and a health check."""
    app = Flask(__name__)
    _measure(app)  # measuring
    # One client per SDK for the process; with gunicorn --preload they are made in the master
    # before any connection is open, so each worker opens its own.
    openai_client = openai.OpenAI(max_retries=0)
    anthropic_client = anthropic.Anthropic(max_retries=0)

    def prompt() -> str:
        body: Dict[str, Any] = request.get_json(silent=True) or {}
        return str(body.get("prompt", "hello"))

    @app.post("/chat")
    def chat() -> Any:
        completion = openai_client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt()}]
        )
        return jsonify(text=completion.choices[0].message.content)

    @app.post("/stream")
    def stream() -> Any:
        chunks = openai_client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": prompt()}],
            stream=True,
            # Without it OpenAI sends no usage in a stream: its tokens would stay unknown.
            stream_options={"include_usage": True},
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return jsonify(text=text)

    @app.post("/claude")
    def claude() -> Any:
        message = anthropic_client.messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=256,
            messages=[{"role": "user", "content": prompt()}],
        )
        return jsonify(text=message.content[0].text)

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok", pid=os.getpid())

    return app
