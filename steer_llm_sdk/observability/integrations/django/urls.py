"""``include("steer_llm_sdk.observability.integrations.django.urls")`` under a prefix of
your choice: ``<prefix>debug``, ``<prefix>debug/dashboard``, ``<prefix>debug/usage`` (the
JSON the dashboard polls), ``<prefix>debug/doctor`` and ``<prefix>metrics`` (for
Prometheus)."""

from django.urls import path

from . import views

app_name = "steer_llm_metrics"
urlpatterns = [
    path("debug", views.debug_json, name="debug"),
    path("debug/dashboard", views.debug_dashboard, name="dashboard"),
    path("debug/usage", views.debug_usage, name="usage"),
    path("debug/doctor", views.debug_doctor, name="doctor"),
    path("metrics", views.prometheus_metrics, name="prometheus"),
]
