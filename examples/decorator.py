"""Measure any LLM call with @track_request: here, simulated SDK calls.

The decorator works around whatever makes the call (the official openai/anthropic packages,
a home-grown HTTP call). The "LLM calls" below sleep for a realistic-looking latency and
return OpenAI- or Anthropic-shaped responses; some stream, some fail. Runs offline.

    python examples/decorator.py
"""

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from steer_llm_sdk.errors import RateLimitError, ServerError
from steer_llm_sdk.observability import (
    MetricsConfig,
    bind_context,
    configure,
    metrics_context,
    track_request,
)
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink
from steer_llm_sdk.observability.summary import format_table

rng = random.Random(7)  # deterministic demo
rng_lock = threading.Lock()


def pause(low_ms: float, high_ms: float) -> float:
    with rng_lock:
        seconds = rng.uniform(low_ms, high_ms) / 1000.0
        roll = rng.random()
    time.sleep(seconds)
    return roll


@track_request("openai")
def chat(prompt: str, model: str = "gpt-4o-mini") -> dict:
    """A blocking OpenAI-style call: returns a chat.completion-shaped dict."""
    roll = pause(20, 60)
    if roll < 0.08:
        raise RateLimitError("Rate limit reached", status_code=429, provider="openai")
    return {
        "model": model + "-2024-07-18",
        "choices": [{"message": {"role": "assistant", "content": "Hello!"}}],
        "usage": {
            "prompt_tokens": len(prompt.split()) + 9,
            "completion_tokens": 12,
            "total_tokens": len(prompt.split()) + 21,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


@track_request("anthropic")
def stream_story(prompt: str, model: str = "claude-3-5-haiku-20241022"):
    """A streamed Anthropic-style call: yields message events like the messages API."""
    pause(30, 90)  # time to first token
    yield {
        "type": "message_start",
        "message": {
            "model": model,
            "usage": {"input_tokens": 25, "cache_read_input_tokens": 100, "output_tokens": 1},
        },
    }
    words = [
        "Once",
        "upon",
        "a",
        "time",
        "a",
        "model",
        "streamed",
        "a",
        "story,",
        "token",
        "by",
        "token",
        ".",
    ]
    for count, word in enumerate(words, 1):
        if pause(2, 6) < 0.01:
            raise ServerError("Overloaded", status_code=529, provider="anthropic")
        yield {"type": "content_block_delta", "delta": {"type": "text_delta", "text": word + " "}}
        yield {"type": "message_delta", "usage": {"output_tokens": count}}
    yield {"type": "message_stop"}


def handle_request(user: int) -> None:
    """One 'web request': a few LLM calls tagged with the route that caused them."""
    with metrics_context(**{"http.route": "/chat", "tenant": f"t{user % 3}"}):
        try:
            chat(f"question number {user} about the weather", model="gpt-4o-mini")
        except RateLimitError:
            pass
        try:
            text = "".join(
                e["delta"]["text"]
                for e in stream_story("a story")
                if e["type"] == "content_block_delta"
            )
            assert text
        except ServerError:
            pass
        if user % 4 == 0:
            try:
                chat("summarise the story", model="gpt-4o")
            except RateLimitError:
                pass


def main() -> None:
    memory = InMemoryMetricsSink()
    collector = configure(MetricsConfig(batch_timeout_seconds=0.2), [memory])
    with ThreadPoolExecutor(max_workers=8) as pool:
        for future in [pool.submit(bind_context(handle_request), n) for n in range(40)]:
            future.result()
    collector.flush(5)
    print(format_table(memory.get_summary(window_seconds=300)))
    stats = collector.stats()
    sink = stats.sinks["in_memory"]
    print(
        f"records: {stats.recorded} recorded, {sink.delivered} delivered, "
        f"{sum(stats.dropped.values())} dropped, {stats.pending} pending"
    )


if __name__ == "__main__":
    main()
