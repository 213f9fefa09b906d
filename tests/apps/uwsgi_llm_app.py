"""A WSGI app for the uWSGI tests on the official openai SDK with ``instrument()`` as its only
change, exporting through the OTLP sink (``$OTLP_ENDPOINT``) and the Prometheus sink (in
``$PROMETHEUS_MULTIPROC_DIR``). Each request makes one blocking chat call and one stream to
``$LLM_URL`` and answers with the usage and chunks the SDK itself saw, for the test to sum."""

import json
import os

import openai

from steer_llm_sdk.observability import MetricsConfig, configure, instrument, lifecycle
from steer_llm_sdk.observability.sinks import OTelMetricsSink, PrometheusMetricsSink

configure(
    MetricsConfig(batch_timeout_seconds=0.05, enable_cost_tracking=False),
    sinks=[
        OTelMetricsSink(endpoint=os.environ["OTLP_ENDPOINT"], export_interval_seconds=0.5),
        PrometheusMetricsSink(),
    ],
)
instrument("openai")
client = openai.OpenAI(base_url=os.environ["LLM_URL"] + "/v1", api_key="test", max_retries=0)
MESSAGES = [{"role": "user", "content": "Say something short."}]


def application(environ, start_response):
    answer = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    chunks, usage = 0, None
    for chunk in client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ):
        chunks += 1
        usage = chunk.usage or usage
    body = {
        "pid": os.getpid(),
        "input": answer.usage.prompt_tokens + usage.prompt_tokens,
        "output": answer.usage.completion_tokens + usage.completion_tokens,
        "chunks": chunks,
        "reset_by": lifecycle.fork_state()["reset_by"],
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
