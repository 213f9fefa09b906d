"""A Django app (one module: settings, URL and view) for the uWSGI tests, on the official
openai SDK with ``instrument()`` as its only LLM change, the Django integration's middleware,
and the OTLP sink (``$OTLP_ENDPOINT``) and Prometheus sink (in ``$PROMETHEUS_MULTIPROC_DIR``)
as the default collector's sinks. Each request makes one blocking chat call and one stream
to ``$LLM_URL`` and answers with the usage and chunks the SDK itself saw, for the test to
sum, and with what the loading process left running (see ``uwsgi_load.py``). SIGURG
dumps every thread's stack to uWSGI's log."""

import faulthandler
import os
import signal

import django
import openai
import uwsgi_load
from django.conf import settings
from django.http import JsonResponse
from django.urls import path

from steer_llm_sdk.observability import instrument, lifecycle
from steer_llm_sdk.observability.runtime.forks import threads_stall_forks
from steer_llm_sdk.observability.sinks import OTelMetricsSink, PrometheusMetricsSink

faulthandler.register(signal.SIGURG, all_threads=True)

MESSAGES = [{"role": "user", "content": "Say something short."}]
client = openai.OpenAI(base_url=os.environ["LLM_URL"] + "/v1", api_key="test", max_retries=0)


def chat(request):
    answer = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    chunks, usage = 0, None
    for chunk in client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ):
        chunks += 1
        usage = chunk.usage or usage
    return JsonResponse(
        {
            "pid": os.getpid(),
            "input": answer.usage.prompt_tokens + usage.prompt_tokens,
            "output": answer.usage.completion_tokens + usage.completion_tokens,
            "chunks": chunks,
            "call_input": answer.usage.prompt_tokens,
            "call_output": answer.usage.completion_tokens,
            "reset_by": lifecycle.fork_state()["reset_by"],
            "loaded": LOADED,
            "threads_stall_forks": threads_stall_forks(),
        }
    )


urlpatterns = [path("", chat)]

settings.configure(
    SECRET_KEY="tests-only",
    ALLOWED_HOSTS=["127.0.0.1"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["steer_llm_sdk.observability.integrations.django"],
    MIDDLEWARE=["steer_llm_sdk.observability.integrations.django.MetricsMiddleware"],
    STEER_LLM_METRICS={
        # A test may keep every record queued until the worker exits (its exit drain then
        # delivers them): BATCH_TIMEOUT_SECONDS longer than the run.
        "config": {
            "batch_timeout_seconds": float(os.environ.get("BATCH_TIMEOUT_SECONDS", "0.05")),
            "enable_cost_tracking": False,
        },
        "sinks": [
            OTelMetricsSink(endpoint=os.environ["OTLP_ENDPOINT"], export_interval_seconds=0.5),
            PrometheusMetricsSink(),
        ],
    },
)
django.setup()
instrument("openai")
# A call made while the app loads: in the master (each worker with lazy-apps), before any
# fork; it must be exported once, by the process that made it. Flushed at once: uWSGI ends
# its master without Python's exit handlers, so the master exports nothing at its exit.
client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
lifecycle.flush(10)

from django.core.wsgi import get_wsgi_application  # noqa: E402 - after settings

application = get_wsgi_application()
LOADED = uwsgi_load.loaded()
