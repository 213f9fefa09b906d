"""The app configuration: sets up the default collector from ``settings.STEER_LLM_METRICS``.

Keys of ``STEER_LLM_METRICS`` (all optional):

===================  =========  ==================================================
key                  default    meaning
===================  =========  ==================================================
enabled              True       False: the middleware removes itself
config               {}         ``MetricsConfig`` fields (over ``STEER_METRICS_*``)
sinks                None       sinks for the default collector (default: in-memory)
debug_endpoints      False      serve the debug views (else they answer 404)
authorize            None       ``(request) -> bool``; default: staff users only
window_seconds       300        the summary's window
prometheus_endpoint  False      serve the ``metrics`` view for Prometheus
prometheus_token     None       if set, scrapes must send ``Authorization: Bearer``
===================  =========  ==================================================
"""

from typing import Any, Dict

from django.apps import AppConfig
from django.conf import settings

from ... import MetricsConfig, configure

DEFAULTS: Dict[str, Any] = {
    "enabled": True,
    "config": {},
    "sinks": None,
    "debug_endpoints": False,
    "authorize": None,
    "window_seconds": 300,
    "prometheus_endpoint": False,
    "prometheus_token": None,
}


def metrics_settings() -> Dict[str, Any]:
    """``settings.STEER_LLM_METRICS`` over the defaults."""
    return {**DEFAULTS, **getattr(settings, "STEER_LLM_METRICS", {})}


class SteerLLMMetricsConfig(AppConfig):
    name = "steer_llm_sdk.observability.integrations.django"
    label = "steer_llm_metrics"
    verbose_name = "LLM metrics"

    def ready(self) -> None:
        options = metrics_settings()
        if not options["enabled"]:
            return
        configure(MetricsConfig.from_env(**options["config"]), options["sinks"] or ())
