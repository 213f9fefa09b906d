"""Django integration.

INSTALLED_APPS += ["steer_llm_sdk.observability.integrations.django"]
MIDDLEWARE += ["steer_llm_sdk.observability.integrations.django.MetricsMiddleware"]
STEER_LLM_METRICS = {...}            # see apps.py for the keys
urlpatterns += [path("_steer/", include("steer_llm_sdk.observability.integrations.django.urls"))]
"""

try:
    import django  # noqa: F401
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "steer_llm_sdk.observability.integrations.django needs Django: "
        "pip install 'steer-llm-sdk[django]'"
    ) from exc

from .middleware import MetricsMiddleware

__all__ = ["MetricsMiddleware"]
