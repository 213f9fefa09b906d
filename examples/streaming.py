"""Streaming with SteerLLMClient: text deltas as they arrive, usage at the end.

Runs against an embedded local server (no key, no network).

    python examples/streaming.py
"""

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.observability import MetricsConfig
from steer_llm_sdk.testing import LocalLLMServer

with (
    LocalLLMServer(ttft_ms=30, tokens_per_second=200) as server,
    SteerLLMClient(
        MetricsConfig(enable_cost_tracking=True),
        openai_base_url=server.openai_base_url,
        anthropic_base_url=server.anthropic_base_url,
        openai_api_key="local",
        anthropic_api_key="local",
    ) as client,
):
    # 1. Iterate text deltas; leaving the block early would release the connection.
    with client.stream("Write a haiku about metrics", model="claude-3-5-haiku-latest") as stream:
        for delta in stream:
            print(delta, end="", flush=True)
    print("\nusage:", stream.result().usage)

    # 2. Consume the whole stream, with a callback per chunk, and get usage and JSON back.
    result = client.stream_with_usage(
        "List one fact as JSON",
        model="gpt-4o-mini",
        response_format="json_object",
        on_chunk=lambda delta: None,
    )
    print(
        "json:",
        result.json_objects,
        "tokens:",
        result.usage.total_tokens,
        f"({result.aggregation_method})",
    )

    # 3. What the metrics saw.
    client.metrics_collector.flush()
    for record in client.metrics_collector.sinks[0].get_metrics(metric_type="streaming"):
        print(
            f"{record.model}: {record.total_chunks} chunks, {record.total_chars} chars, "
            f"first chunk after {record.first_chunk_latency_ms:.1f} ms, {record.status}"
        )
