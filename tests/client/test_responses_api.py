"""SteerLLMClient(openai_api="responses") against the local server: the request in the
Responses API's shape, the same result types and records as chat completions, tool calls
(whole and streamed), a cut answer; the official openai package accepts the server's
Responses answers."""

import pytest
from support.local import local_client, recorded

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.testing import LocalLLMServer

pytestmark = pytest.mark.timeout(60)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
def pair():
    with (
        LocalLLMServer(reply_words=7) as server,
        local_client(server, openai_api="responses") as client,
    ):
        yield server, client


def test_request_shape_and_answer(pair):
    server, client = pair
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
    ]
    response = client.generate(
        messages, model="gpt-4.1-mini", max_tokens=50, response_format="json_object"
    )
    sent = server.requests[-1]
    assert sent.path == "/v1/responses"
    assert sent.body["instructions"] == "Be brief."
    assert sent.body["input"] == [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Describe"},
                {"type": "input_image", "image_url": "https://example.com/a.png"},
            ],
        }
    ]
    assert sent.body["max_output_tokens"] == 50
    assert sent.body["text"] == {"format": {"type": "json_object"}}
    assert response.text and response.finish_reason == "stop"
    assert response.provider == "openai" and response.model == "gpt-4.1-mini"
    (record,) = recorded(client, "request")
    assert (record.prompt_tokens, record.completion_tokens) == (
        response.usage.prompt_tokens,
        response.usage.completion_tokens,
    )
    assert record.response_model == "gpt-4.1-mini" and record.operation == "chat"


def test_streams_give_the_same_answer_and_records(pair):
    server, client = pair
    whole = client.generate("Tell me", model="gpt-4.1-mini")
    with client.stream("Tell me", model="gpt-4.1-mini") as stream:
        deltas = list(stream)
    result = stream.result()
    assert "".join(deltas) == result.text == whole.text and len(deltas) == 7
    assert result.usage == whole.usage and result.aggregation_method == "provider"
    assert result.finish_reason == "stop"
    request = recorded(client, "request")[-1]
    streaming = recorded(client, "streaming")[-1]
    assert request.method == "stream" and request.time_to_first_token_ms is not None
    assert streaming.total_chars == len(whole.text)


def test_tool_calls_whole_streamed_and_answered(pair):
    server, client = pair
    whole = client.generate("Weather in Lima?", model="gpt-4.1-mini", tools=[WEATHER])
    (call,) = whole.tool_calls
    assert call.name == "get_weather" and set(call.arguments) == {"city"}
    assert whole.finish_reason == "tool_calls"
    assert server.requests[-1].body["tools"] == [{"type": "function", **WEATHER["function"]}]
    streamed = client.stream_with_usage("Weather in Lima?", model="gpt-4.1-mini", tools=[WEATHER])
    assert streamed.text == "" and streamed.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in streamed.tool_calls] == [
        (call.id, call.name, call.arguments)
    ]
    follow = client.generate(
        [
            {"role": "user", "content": "Weather in Lima?"},
            whole.assistant_message(),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        model="gpt-4.1-mini",
        tools=[WEATHER],
    )
    assert follow.text and not follow.tool_calls
    items = server.requests[-1].body["input"]
    assert items[1] == {
        "type": "function_call",
        "call_id": call.id,
        "name": "get_weather",
        "arguments": call.arguments_raw,
    }
    assert items[2] == {"type": "function_call_output", "call_id": call.id, "output": "sunny"}


def test_an_answer_cut_at_max_output_tokens(pair):
    server, client = pair
    response = client.generate("Tell me", model="gpt-4.1-mini", max_tokens=3)
    assert response.finish_reason == "length"
    streamed = client.stream_with_usage("Tell me", model="gpt-4.1-mini", max_tokens=3)
    assert streamed.finish_reason == "length" and streamed.text == response.text


def test_unknown_openai_api_is_refused():
    with pytest.raises(ValueError, match="openai_api"):
        SteerLLMClient(openai_api="assistants", environ={})


def test_official_sdk_accepts_the_servers_responses(pair):
    openai = pytest.importorskip("openai")
    server, _ = pair
    with openai.OpenAI(base_url=server.openai_base_url, api_key="test") as client:
        _check_official_sdk(client)


def _check_official_sdk(client):
    response = client.responses.create(model="gpt-4.1-mini", input="hi")
    assert response.output_text and response.usage.output_tokens == 7
    with client.responses.stream(model="gpt-4.1-mini", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == response.output_text
    called = client.responses.create(
        model="gpt-4.1-mini", input="hi", tools=[{"type": "function", **WEATHER["function"]}]
    )
    assert called.output[0].type == "function_call" and called.output[0].name == "get_weather"
