"""Export LLM metrics over OTLP to an OpenTelemetry Collector (or any OTLP backend).

The endpoint, protocol and headers come from the standard variables when not given:
``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf`` or ``grpc``), ``OTEL_SERVICE_NAME``.
Run as it is, the example starts a local LLM server and a local OTLP receiver so you can see
what a Collector would receive; set ``OTEL_EXPORTER_OTLP_ENDPOINT`` to send to yours instead.

    python examples/otlp_export.py
"""

import os

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.observability import MetricsCollector, MetricsConfig
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink, OTelMetricsSink
from steer_llm_sdk.testing import LocalLLMServer, OTLPReceiver


def main() -> None:
    receiver = None
    endpoint = None
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        receiver = OTLPReceiver("http").start()
        endpoint = receiver.endpoint
    otlp = OTelMetricsSink(
        service_name="example-app", endpoint=endpoint, export_interval_seconds=10
    )
    collector = MetricsCollector(
        MetricsConfig(enable_cost_tracking=True), [otlp, InMemoryMetricsSink()]
    )
    with (
        LocalLLMServer(ttft_ms=20) as llm,
        SteerLLMClient(
            metrics_collector=collector,
            openai_base_url=llm.openai_base_url,
            anthropic_base_url=llm.anthropic_base_url,
            openai_api_key="local",
            anthropic_api_key="local",
        ) as client,
    ):
        for n in range(3):
            client.generate(f"question {n}", model="gpt-4o-mini")
            client.stream_with_usage(f"story {n}", model="claude-3-5-haiku-latest")
    collector.flush()  # "the receiver has it"
    if receiver is not None:
        for (_instance, name, attributes), point in sorted(
            receiver.latest().items(), key=lambda kv: kv[0][1]
        ):
            value = point["count"] if point["kind"] == "histogram" else point["value"]
            model = dict(attributes).get("gen_ai.request.model", "")
            print(f"{name:<48} {point['unit']:<10} {model:<28} {value}")
        receiver.stop()
    collector.shutdown()


if __name__ == "__main__":
    main()
