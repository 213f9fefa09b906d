"""A custom sink, filters and sampling.

A sink is any object with ``record(metrics)`` and ``flush()``; it runs on its own delivery
thread, so a slow or broken one never slows the calls being measured. Filters run on the
background thread too.

    python examples/custom_sink.py
"""

import json
import sys
import threading

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.observability import MetricsCollector, MetricsConfig
from steer_llm_sdk.observability.filters import AttributeFilter
from steer_llm_sdk.testing import LocalLLMServer


class JsonLinesSink:
    """Writes one JSON line per record (no prompt or completion text is ever in a record)."""

    name = "jsonl"

    def __init__(self, stream=sys.stdout):
        self.stream = stream
        self.lock = threading.Lock()

    def record_batch(self, batch):
        with self.lock:
            for metrics in batch:
                self.stream.write(json.dumps(metrics.to_dict(), sort_keys=True) + "\n")

    def record(self, metrics):
        self.record_batch([metrics])

    def flush(self):
        self.stream.flush()


def drop_health_checks(metrics):
    """A filter is any callable returning the record (maybe changed) or None to drop it."""
    return None if metrics.attributes.get("http.route") == "/health" else metrics


config = MetricsConfig(
    filters=[drop_health_checks, AttributeFilter(add={"deployment.environment": "example"})],
    request_sampling_rate=0.5,  # keep half of the successful requests...
    error_sampling_rate=1.0,  # ...and every failed one
    enable_streaming_metrics=False,
)
collector = MetricsCollector(config, [JsonLinesSink()])

with (
    LocalLLMServer() as server,
    SteerLLMClient(
        metrics_collector=collector, openai_base_url=server.openai_base_url, openai_api_key="local"
    ) as client,
):
    # Each call is kept or sampled out by a hash of its random request id: with 20 calls,
    # that none is kept happens once in a million runs (with 6 it was once in 64).
    for n in range(20):
        client.generate(f"question {n}", model="gpt-4o-mini")
    collector.flush()
    stats = collector.stats()
    print(
        f"recorded {stats.recorded}, sampled out {stats.sampled_out}, "
        f"delivered {stats.sinks['jsonl'].delivered}",
        file=sys.stderr,
    )
collector.shutdown()
