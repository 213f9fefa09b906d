"""Flask integration: LLM metrics tagged with the route that caused them, and debug endpoints.

    app = Flask(__name__)
    SteerLLMMetrics(app)            # or: metrics = SteerLLMMetrics(); metrics.init_app(app)

Each request runs inside ``metrics_context(http.route=<url rule>, http.method=...)``, so every
LLM record made while serving it carries the route; the context is removed in teardown, also
when the view raises. Config keys (``app.config``):

=====================================  =========  ============================================
key                                    default    meaning
=====================================  =========  ============================================
STEER_LLM_METRICS_ENABLED              True       False: the extension does nothing
STEER_LLM_METRICS_DEBUG_ENDPOINTS      False      serve ``<prefix>/debug``, the dashboard,
                                                  ``<prefix>/debug/usage`` (the JSON the
                                                  dashboard polls) and
                                                  ``<prefix>/debug/doctor``
STEER_LLM_METRICS_URL_PREFIX           /_steer    where the debug endpoints live
STEER_LLM_METRICS_AUTHORIZE            None       ``(request) -> bool``; default: ``app.debug``
STEER_LLM_METRICS_WINDOW_SECONDS       300        the summary's window (and, without
                                                  ``usage_rollup_seconds``, twelve times
                                                  the usage charts' window)
STEER_LLM_METRICS_PROMETHEUS_ENDPOINT  False      serve ``<prefix>/metrics`` for Prometheus
STEER_LLM_METRICS_PROMETHEUS_TOKEN     None       if set, scrapes must send
                                                  ``Authorization: Bearer <token>``
=====================================  =========  ============================================

Without ``DEBUG_ENDPOINTS`` the debug endpoints answer 404; without authorisation, 403. The
debug endpoints show this worker's in-memory data; ``<prefix>/debug/doctor`` returns what
:func:`~steer_llm_sdk.observability.doctor` finds in this worker, as JSON (HTTP 200 whatever
the findings; the body's ``status`` says); ``<prefix>/metrics`` serves the
:class:`~steer_llm_sdk.observability.sinks.PrometheusMetricsSink` families of the whole app
(every worker's, in multiprocess mode), 404 unless enabled, 401 without the token when one
is set.
"""

from typing import Any, Callable, Optional

try:
    from flask import Blueprint, Flask, Response, abort, current_app, g, jsonify, request
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "steer_llm_sdk.observability.integrations.flask needs Flask: "
        "pip install 'steer-llm-sdk[flask]'"
    ) from exc

from .. import MetricsCollector, doctor, metrics_context
from ._auth import bearer_matches
from .dashboard import DASHBOARD_CSP, render_dashboard, summary_payload, usage_payload

_DEFAULTS = {
    "STEER_LLM_METRICS_ENABLED": True,
    "STEER_LLM_METRICS_DEBUG_ENDPOINTS": False,
    "STEER_LLM_METRICS_URL_PREFIX": "/_steer",
    "STEER_LLM_METRICS_AUTHORIZE": None,
    "STEER_LLM_METRICS_WINDOW_SECONDS": 300,
    "STEER_LLM_METRICS_PROMETHEUS_ENDPOINT": False,
    "STEER_LLM_METRICS_PROMETHEUS_TOKEN": None,
}
_KEY = "steer_llm_metrics"


class SteerLLMMetrics:
    """The Flask extension; supports app factories and several apps (state lives in
    ``app.extensions["steer_llm_metrics"]``).

    Args:
        app: initialise at once for this app.
        collector: the collector whose in-memory sink the debug endpoints show (default: the
            process default collector, resolved per request).
    """

    def __init__(
        self, app: Optional[Flask] = None, collector: Optional[MetricsCollector] = None
    ) -> None:
        self.collector = collector
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        for key, value in _DEFAULTS.items():
            app.config.setdefault(key, value)
        app.extensions[_KEY] = self
        if not app.config["STEER_LLM_METRICS_ENABLED"]:
            return
        app.before_request(_enter_context)
        app.teardown_request(_leave_context)
        prefix = app.config["STEER_LLM_METRICS_URL_PREFIX"].rstrip("/")
        blueprint = Blueprint("steer_llm_metrics", __name__, url_prefix=prefix)
        blueprint.add_url_rule("/debug", "debug", _debug_json)
        blueprint.add_url_rule("/debug/dashboard", "dashboard", _debug_dashboard)
        blueprint.add_url_rule("/debug/usage", "usage", _debug_usage)
        blueprint.add_url_rule("/debug/doctor", "doctor", _debug_doctor)
        blueprint.add_url_rule("/metrics", "prometheus", _prometheus)
        app.register_blueprint(blueprint)


def _enter_context() -> None:
    rule = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    context = metrics_context(**{"http.route": rule, "http.method": request.method})
    context.__enter__()
    g._steer_llm_context = context


def _leave_context(exc: Optional[BaseException] = None) -> None:
    context = g.pop("_steer_llm_context", None)
    if context is not None:
        context.__exit__(None, None, None)


def _extension() -> SteerLLMMetrics:
    extension: SteerLLMMetrics = current_app.extensions[_KEY]
    return extension


def _guard() -> None:
    config = current_app.config
    if not config["STEER_LLM_METRICS_DEBUG_ENDPOINTS"]:
        abort(404)
    authorize: Optional[Callable[[Any], bool]] = config["STEER_LLM_METRICS_AUTHORIZE"]
    allowed = authorize(request) if authorize is not None else current_app.debug
    if not allowed:
        abort(403)


def _debug_json() -> Response:
    _guard()
    window = float(current_app.config["STEER_LLM_METRICS_WINDOW_SECONDS"])
    return jsonify(summary_payload(_extension().collector, window))


def _debug_dashboard() -> Response:
    _guard()
    window = float(current_app.config["STEER_LLM_METRICS_WINDOW_SECONDS"])
    page = render_dashboard(_extension().collector, window)
    return Response(page, mimetype="text/html", headers={"Content-Security-Policy": DASHBOARD_CSP})


def _debug_usage() -> Response:
    _guard()
    window = float(current_app.config["STEER_LLM_METRICS_WINDOW_SECONDS"])
    response = jsonify(usage_payload(_extension().collector, window))
    response.headers["Cache-Control"] = "no-store"  # polled: always the newest numbers
    return response


def _debug_doctor() -> Response:
    _guard()
    return jsonify(doctor(_extension().collector).to_dict())


def _prometheus() -> Response:
    config = current_app.config
    if not config["STEER_LLM_METRICS_PROMETHEUS_ENDPOINT"]:
        abort(404)
    token = config["STEER_LLM_METRICS_PROMETHEUS_TOKEN"]
    if token and not bearer_matches(request.headers.get("Authorization"), token):
        abort(401)
    from ..sinks.prometheus import exposition

    body, content_type = exposition(request.headers.get("Accept"))
    return Response(body, headers={"Content-Type": content_type})
