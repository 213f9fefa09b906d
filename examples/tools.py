"""Tool calls with SteerLLMClient: the model asks for a tool, the program runs it, the
answer goes back; the same loop for OpenAI and Anthropic models.

Runs against an embedded local server (no key, no network): it answers a request with
tools by calling one, and the tool's result with text.

    python examples/tools.py
"""

import json

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.observability import MetricsConfig
from steer_llm_sdk.testing import LocalLLMServer

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def get_weather(city: str) -> str:
    return json.dumps({"city": city, "temp_c": 21, "sky": "clear"})


with (
    LocalLLMServer(reply_words=8) as server,
    SteerLLMClient(
        MetricsConfig(enable_cost_tracking=True),
        openai_base_url=server.openai_base_url,
        anthropic_base_url=server.anthropic_base_url,
        openai_api_key="local",
        anthropic_api_key="local",
    ) as client,
):
    for model in ("gpt-4o-mini", "claude-3-5-haiku-latest"):
        messages = [{"role": "user", "content": "What's the weather in Lisbon?"}]
        response = client.generate(messages, model=model, tools=[WEATHER])
        while response.tool_calls:  # run every tool asked for, then ask again
            messages.append(response.assistant_message())
            for call in response.tool_calls:
                print(f"{model}: tool {call.name}({call.arguments})")
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call.id,
                        "content": get_weather(**call.arguments),
                    }
                )
            response = client.generate(messages, model=model, tools=[WEATHER])
        print(f"{model}: answer {response.text!r} ({response.finish_reason})")

    # Streamed: text only while it arrives; the assembled tool calls at the end.
    result = client.stream_with_usage("Weather in Oslo?", model="gpt-4o-mini", tools=[WEATHER])
    print("streamed tool calls:", [(c.name, c.arguments) for c in result.tool_calls])

    collector = client.metrics_collector
    collector.flush(5)
    calls = collector.sinks[0].get_metrics(metric_type="request")
    print(f"{len(calls)} LLM calls recorded, cost ${sum(c.cost_usd or 0 for c in calls):.6f}")
