"""Django integration with Django's test client, on the example project's settings."""

import os
import sys

import pytest
from support.paths import EXAMPLES

EXAMPLE = EXAMPLES / "django_project"
sys.path.insert(0, str(EXAMPLE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402
from django.test import Client, override_settings  # noqa: E402

django.setup()

from steer_llm_sdk.observability import current_attributes, get_collector  # noqa: E402
from steer_llm_sdk.testing import LocalLLMServer  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def llm():
    # The example's views keep one client made from STEER_LLM_BASE_URL: forget it whenever
    # the server (and so the URL) changes, as when xdist splits this module in two.
    from project import views

    with LocalLLMServer(reply_words=4) as server:
        os.environ["STEER_LLM_BASE_URL"] = server.url
        views._client = None
        yield server
        os.environ.pop("STEER_LLM_BASE_URL", None)
        views._client = None


@pytest.fixture
def memory():
    sink = get_collector().sinks[0]
    sink.clear()
    return sink


def requests_seen(memory):
    assert get_collector().flush(5)
    return memory.get_metrics(metric_type="request")


def test_app_config_configures_the_default_collector():
    from django.apps import apps

    apps.get_app_config("steer_llm_metrics").ready()  # as at startup
    collector = get_collector()
    assert collector.config.batch_timeout_seconds == 0.2


def test_records_carry_the_resolved_route(memory):
    response = Client().post("/chat/gpt-4o-mini")
    assert response.status_code == 200 and response.json()["tokens"] > 0
    (m,) = requests_seen(memory)
    assert m.attributes["http.route"] == "/chat/<str:model>"
    assert m.attributes["http.method"] == "POST"


def test_context_cleaned_after_a_failing_view(memory):
    client = Client(raise_request_exception=False)
    assert client.post("/chat/boom").status_code == 500
    assert current_attributes() == {}


def test_debug_endpoints_off_by_default():
    with override_settings(STEER_LLM_METRICS={"debug_endpoints": False}):
        assert Client().get("/_steer/debug").status_code == 404


def test_debug_endpoints_denied_without_staff_user():
    with override_settings(STEER_LLM_METRICS={"debug_endpoints": True}):
        assert Client().get("/_steer/debug").status_code == 403
        assert Client().get("/_steer/debug/dashboard").status_code == 403


def test_debug_json_and_dashboard_when_authorised(memory):
    Client().post("/chat/claude-3-5-haiku-latest")
    requests_seen(memory)
    allowed = {"debug_endpoints": True, "authorize": lambda request: True}
    with override_settings(STEER_LLM_METRICS=allowed):
        body = Client().get("/_steer/debug").json()
        assert body["summary"]["total_requests"] == 1
        assert list(body["summary"]["by_model"]) == ["anthropic/claude-3-5-haiku-latest"]
        page = Client().get("/_steer/debug/dashboard")
        assert page.status_code == 200 and b"<svg" in page.content


def test_middleware_removes_itself_when_disabled():
    from django.core.exceptions import MiddlewareNotUsed

    from steer_llm_sdk.observability.integrations.django import MetricsMiddleware

    disabled = override_settings(STEER_LLM_METRICS={"enabled": False})
    with disabled, pytest.raises(MiddlewareNotUsed):
        MetricsMiddleware(lambda request: None)


def test_prometheus_view_off_by_default_and_token_guarded():
    from prometheus_client.parser import text_string_to_metric_families

    from steer_llm_sdk.observability import RequestMetrics
    from steer_llm_sdk.observability.sinks import PrometheusMetricsSink

    PrometheusMetricsSink().record_batch([RequestMetrics(1.0, "r", "openai", "gpt-4o")])
    assert Client().get("/_steer/metrics").status_code == 404
    with override_settings(STEER_LLM_METRICS={"prometheus_endpoint": True}):
        response = Client().get("/_steer/metrics")
        assert response.status_code == 200
        names = {f.name for f in text_string_to_metric_families(response.content.decode())}
        assert "llm_requests" in names  # the family; its sample is llm_requests_total
    guarded = {"prometheus_endpoint": True, "prometheus_token": "s3cret"}
    with override_settings(STEER_LLM_METRICS=guarded):
        assert Client().get("/_steer/metrics").status_code == 401
        wrong = Client().get("/_steer/metrics", HTTP_AUTHORIZATION="Bearer nope")
        assert wrong.status_code == 401
        right = Client().get("/_steer/metrics", HTTP_AUTHORIZATION="Bearer s3cret")
        assert right.status_code == 200
