"""Quickstart (`make demo`): SteerLLMClient against an embedded local LLM server.

A local server speaks the OpenAI and Anthropic wire protocols with a realistic latency
profile, so no API key and no network are needed. Eight threads share one client, as a web
app would: blocking calls, streams, a JSON stream, and a few injected failures (429, 503, a
connection dropped mid-stream) that the client retries. Then a provider goes down: the
circuit breaker opens, rejects calls without touching the network, probes after its recovery
timeout and closes again. Cost tracking is on. The in-memory summary is printed at the end.

    python examples/quickstart.py
"""

import time
from concurrent.futures import ThreadPoolExecutor

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.errors import CircuitOpenError, ServerError, SteerLLMError
from steer_llm_sdk.observability import MetricsConfig, bind_context, metrics_context
from steer_llm_sdk.observability.summary import format_table
from steer_llm_sdk.reliability import CircuitBreaker, RetryPolicy
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


def outage(client: SteerLLMClient, server: LocalLLMServer) -> None:
    """gpt-4o answers 503 until the breaker opens; calls are then refused without a network
    call; after the recovery timeout one probe goes through and closes it again."""
    server.script(*[Fault(status=503)] * 3)
    for _ in range(2):
        try:
            client.generate("are you there?", model="gpt-4o")
        except (ServerError, CircuitOpenError):
            pass
    sent = len(server.requests)
    try:
        client.generate("still there?", model="gpt-4o")
    except CircuitOpenError:
        assert len(server.requests) == sent, "an open circuit makes no network call"
    time.sleep(client.circuit_breaker.recovery_timeout)  # the demo waits for recovery
    client.generate("back?", model="gpt-4o")  # the half-open probe succeeds: closed again


def main() -> None:
    with LocalLLMServer(ttft_ms=40, tokens_per_second=400, reply_words=24) as server:
        # Every seventh request fails: rate limited, overloaded, or cut off mid-stream.
        faults = [Fault()] * 6
        server.script(
            *(
                faults
                + [Fault(status=429, retry_after=0.1)]
                + faults
                + [Fault(status=503)]
                + faults
                + [Fault(drop_after=8)]
            )
            * 3
        )
        client = SteerLLMClient(
            MetricsConfig(enable_cost_tracking=True, batch_timeout_seconds=0.2),
            openai_base_url=server.openai_base_url,
            anthropic_base_url=server.anthropic_base_url,
            openai_api_key="local-demo",
            anthropic_api_key="local-demo",
            retry_policy=RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=1.0),
            circuit_breaker=CircuitBreaker(failure_threshold=3, recovery_timeout=0.5),
        )
        with client, ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(bind_context(lambda n: handle(client, n)), range(48)))
            outage(client, server)
            collector = client.metrics_collector
            collector.flush(5)
            sink = collector.sinks[0]
            print(format_table(sink.get_summary(window_seconds=300)))
            transitions = [
                r
                for r in sink.get_metrics(metric_type="reliability")
                if r.event == "circuit_transition"
            ]
            path = [transitions[0].previous_circuit_state] if transitions else []
            path += [t.circuit_breaker_state for t in transitions]
            print(f"circuit breaker for openai:gpt-4o: {' -> '.join(path)}")
            stats = collector.stats()
            delivered = stats.sinks["in_memory"].delivered
            ok = outcomes.count("ok")
            print(
                f"web requests: {ok} ok, {len(outcomes) - ok} failed; records: {stats.recorded} "
                f"recorded, {delivered} delivered, {sum(stats.dropped.values())} dropped, "
                f"{stats.pending} pending"
            )


if __name__ == "__main__":
    main()
