"""Django integration.

INSTALLED_APPS += ["steer_llm_sdk.observability.integrations.django"]
MIDDLEWARE += ["steer_llm_sdk.observability.integrations.django.MetricsMiddleware"]
STEER_LLM_METRICS = {...}            # see apps.py for the keys
urlpatterns += [path("_steer/", include("steer_llm_sdk.observability.integrations.django.urls"))]
"""

from .middleware import MetricsMiddleware

__all__ = ["MetricsMiddleware"]
