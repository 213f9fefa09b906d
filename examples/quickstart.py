"""Quickstart (`make demo`): SteerLLMClient against an embedded local LLM server.

A local server speaks the OpenAI and Anthropic wire protocols with a realistic latency
profile, so no API key and no network are needed. Eight threads share one client, as a web
app would: blocking calls, streams, a JSON stream, and a few injected failures (429, 503, a
connection dropped mid-stream). Cost tracking is on. The in-memory summary is printed at the
end.

    python examples/quickstart.py
"""

from concurrent.futures import ThreadPoolExecutor

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.errors import SteerLLMError
from steer_llm_sdk.observability import MetricsConfig, bind_context, metrics_context
from steer_llm_sdk.observability.summary import format_table
from steer_llm_sdk.testing import Fault, LocalLLMServer

MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku-20241022"]


def handle(client: SteerLLMClient, n: int) -> str:
    """One 'web request': a blocking call and a streamed one, tagged with the route."""
    model = MODELS[n % len(MODELS)]
    with metrics_context(**{"http.route": "/chat" if n % 2 else "/summarise"}):
        try:
            client.generate(f"Question {n}: what is new?", model=model, max_tokens=64)
            if n % 5 == 0:
                result = client.stream_with_usage(
                    f"Give item {n} as JSON", model="gpt-4o-mini", response_format="json_object"
                )
                assert result.json_objects, "the JSON stream held one object"
            else:
                text = "".join(client.stream(f"Tell story {n}", model=model, max_tokens=64))
                assert text
            return "ok"
        except SteerLLMError as exc:
            return exc.category


def main() -> None:
    with LocalLLMServer(ttft_ms=40, tokens_per_second=400, reply_words=24) as server:
        # Every seventh request fails: rate limited, overloaded, or cut off mid-stream.
        faults = [Fault()] * 6
        server.script(
            *(
                faults
                + [Fault(status=429, retry_after=1)]
                + faults
                + [Fault(status=503)]
                + faults
                + [Fault(drop_after=8)]
            )
            * 3
        )
        config = MetricsConfig(enable_cost_tracking=True, batch_timeout_seconds=0.2)
        with (
            SteerLLMClient(
                config,
                openai_base_url=server.openai_base_url,
                anthropic_base_url=server.anthropic_base_url,
                openai_api_key="local-demo",
                anthropic_api_key="local-demo",
            ) as client,
            ThreadPoolExecutor(max_workers=8) as pool,
        ):
            outcomes = list(pool.map(bind_context(lambda n: handle(client, n)), range(48)))
            collector = client.metrics_collector
            collector.flush(5)
            summary = collector.sinks[0].get_summary(window_seconds=300)
            print(format_table(summary))
            stats = collector.stats()
            delivered = stats.sinks["in_memory"].delivered
            print(
                f"requests: {outcomes.count('ok')} ok, {len(outcomes) - outcomes.count('ok')} "
                f"failed; records: {stats.recorded} recorded, {delivered} delivered, "
                f"{sum(stats.dropped.values())} dropped, {stats.pending} pending"
            )


if __name__ == "__main__":
    main()
