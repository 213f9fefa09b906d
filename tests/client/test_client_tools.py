"""SteerLLMClient for real applications, against the local server: tool calls (asked for,
read back, streamed, answered), several choices, content parts and cached system blocks
for Anthropic, and content-filter outcomes. The official SDKs accept the server's answers."""

import base64

import pytest
from support.local import local_client, recorded

from steer_llm_sdk.errors import ContentFilterError
from steer_llm_sdk.testing import Fault, LocalLLMServer

pytestmark = pytest.mark.timeout(60)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
TIME = {"name": "get_time", "parameters": {"type": "object", "properties": {}}}  # bare
MODELS = ["gpt-4o-mini", "claude-3-5-haiku-20241022"]


@pytest.fixture
def pair():
    with LocalLLMServer(reply_words=6) as server, local_client(server) as client:
        yield server, client


@pytest.mark.parametrize("model", MODELS)
def test_tool_calls_asked_for_and_read_back(pair, model):
    server, client = pair
    response = client.generate("Weather in Paris?", model=model, tools=[WEATHER, TIME])
    (call,) = response.tool_calls
    assert call.name == "get_weather" and call.id
    assert set(call.arguments) == {"city", "days"} and isinstance(call.arguments["days"], int)
    assert response.finish_reason == ("tool_calls" if model.startswith("gpt") else "tool_use")
    assert response.text == "" and response.choices[0].tool_calls == [call]
    sent = server.requests[-1].body
    if model.startswith("claude"):
        assert sent["tools"][0] == {
            "name": "get_weather",
            "description": "Weather of a city",
            "input_schema": WEATHER["function"]["parameters"],
        }
        assert sent["tools"][1] == {"name": "get_time", "input_schema": TIME["parameters"]}
    else:
        assert sent["tools"] == [WEATHER, {"type": "function", "function": TIME}]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    "choice, openai_sent, anthropic_sent",
    [
        ("required", "required", {"type": "any"}),
        (
            "get_time",
            {"type": "function", "function": {"name": "get_time"}},
            {"type": "tool", "name": "get_time"},
        ),
    ],
)
def test_tool_choice_translated(pair, model, choice, openai_sent, anthropic_sent):
    server, client = pair
    response = client.generate(
        "What time is it?", model=model, tools=[WEATHER, TIME], tool_choice=choice
    )
    sent = server.requests[-1].body["tool_choice"]
    assert sent == (openai_sent if model.startswith("gpt") else anthropic_sent)
    if choice == "get_time":
        assert [c.name for c in response.tool_calls] == ["get_time"]
        assert response.tool_calls[0].arguments == {}


@pytest.mark.parametrize("model", MODELS)
def test_streamed_tool_calls_assembled_and_never_text(pair, model):
    server, client = pair
    blocking = client.generate("Weather in Oslo?", model=model, tools=[WEATHER])
    with client.stream("Weather in Oslo?", model=model, tools=[WEATHER]) as stream:
        texts = list(stream)
    result = stream.result()
    assert texts == [] and result.text == ""  # tool arguments are never text
    assert [(c.name, c.arguments) for c in result.tool_calls] == [
        (c.name, c.arguments) for c in blocking.tool_calls
    ]
    assert result.finish_reason == blocking.finish_reason
    assert result.usage.completion_tokens == blocking.usage.completion_tokens > 0
    streaming = recorded(client, "streaming")[-1]
    request = recorded(client, "request")[-1]
    # The fragments are output: they count as content for characters and time to first token.
    assert streaming.total_chars == len(result.tool_calls[0].arguments_raw)
    assert request.time_to_first_token_ms is not None


@pytest.mark.parametrize("model", MODELS)
def test_tool_results_go_back_in_both_protocols(pair, model):
    server, client = pair
    question = [{"role": "user", "content": "Weather in Rome?"}]
    first = client.generate(question, model=model, tools=[WEATHER])
    call = first.tool_calls[0]
    follow_up = [
        *question,
        first.assistant_message(),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 21}'},
    ]
    second = client.generate(follow_up, model=model, tools=[WEATHER])
    assert second.text and second.tool_calls == []
    sent = server.requests[-1].body["messages"]
    if model.startswith("claude"):
        assert sent[1]["role"] == "assistant"
        (use,) = [b for b in sent[1]["content"] if b["type"] == "tool_use"]
        assert (use["id"], use["name"], use["input"]) == (call.id, call.name, call.arguments)
        assert sent[2] == {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": '{"temp_c": 21}'}
            ],
        }
    else:
        assert sent[1]["tool_calls"][0]["id"] == call.id and sent[2]["role"] == "tool"


def test_several_choices_kept_apart(pair):
    server, client = pair
    response = client.generate("Tell me something", model="gpt-4o-mini", n=3)
    texts = [c.text for c in response.choices]
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert len(set(texts)) == 3 and response.text == texts[0]
    result = client.stream_with_usage("Tell me something", model="gpt-4o-mini", n=3)
    # The server interleaves the choices word by word; each comes back whole.
    assert [c.text for c in result.choices] == texts
    assert result.text == texts[0] and "".join(result.chunks) == texts[0]
    assert result.usage.completion_tokens == response.usage.completion_tokens
    streaming = recorded(client, "streaming")[-1]
    assert streaming.total_chars == sum(len(t) for t in texts)  # every choice counts


def test_content_parts_and_cached_system_blocks_for_anthropic(pair):
    server, client = pair
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    messages = [
        {"role": "system", "content": system},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
            ],
        },
    ]
    response = client.generate(messages, model="claude-3-5-haiku-20241022")
    assert response.text
    sent = server.requests[-1].body
    assert sent["system"] == system  # blocks stay blocks: cache_control reaches Anthropic
    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
    ]
    plain = client.generate(
        [
            {"role": "system", "content": "a"},
            {"role": "system", "content": "b"},
            {"role": "user", "content": "hi"},
        ],
        model="claude-3-5-haiku-20241022",
    )
    assert plain.text and server.requests[-1].body["system"] == "a\n\nb"


@pytest.mark.parametrize("where", ["prompt", "completion"])
def test_content_filter_raises_with_its_results_and_is_recorded(pair, where):
    server, client = pair
    server.script(Fault(content_filter=where))
    with pytest.raises(ContentFilterError) as caught:
        client.generate("something filtered", model="gpt-4o-mini")
    results = caught.value.filter_results
    filtered = results.get("content_filter_result") or results.get("content_filter_results")
    assert filtered["violence"] == {"filtered": True, "severity": "high"}
    server.script(Fault(content_filter=where))
    with pytest.raises(ContentFilterError):
        client.stream_with_usage("something filtered", model="gpt-4o-mini", retries=0)
    failed = [r for r in recorded(client, "request") if not r.success]
    assert [r.error_category for r in failed] == ["content_filter", "content_filter"]
    assert {r.error_class for r in failed} == {"ContentFilterError"}


def test_official_sdks_accept_the_servers_tool_calls_and_choices(pair):
    openai = pytest.importorskip("openai")
    anthropic = pytest.importorskip("anthropic")
    server, _ = pair
    with openai.OpenAI(base_url=server.openai_base_url, api_key="test") as oai:
        _openai_sdk_checks(oai)
    with anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="test") as ant:
        _anthropic_sdk_checks(ant)


def _openai_sdk_checks(oai):
    completion = oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER]
    )
    assert completion.choices[0].message.tool_calls[0].function.name == "get_weather"
    several = oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], n=2
    )
    assert [c.index for c in several.choices] == [0, 1]
    with oai.chat.completions.stream(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER]
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.arguments.startswith("{")


def _anthropic_sdk_checks(ant):
    message = ant.messages.create(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
        tools=[{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}],
    )
    assert message.content[0].type == "tool_use" and message.stop_reason == "tool_use"
    with ant.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
        tools=[{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}],
    ) as stream:
        streamed = stream.get_final_message()
    assert streamed.content[0].input == message.content[0].input


def test_anthropic_translation_merges_tool_results_into_one_user_turn():
    from steer_llm_sdk.providers import anthropic

    calls = [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    body = anthropic.request_body(
        [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "calling", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "a", "content": "1"},
            {"role": "tool", "tool_call_id": "b", "content": "2"},
            {"role": "user", "content": "and?"},
        ],
        "claude-3-5-haiku",
        max_tokens=None,
        temperature=None,
        response_format=None,
        stream=False,
        params={},
    )
    assistant, results, last = body["messages"][1:]
    assert assistant["content"] == [
        {"type": "text", "text": "calling"},
        {"type": "tool_use", "id": "a", "name": "f", "input": {"x": 1}},
        {"type": "tool_use", "id": "b", "name": "g", "input": {}},
    ]
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "a", "content": "1"},
            {"type": "tool_result", "tool_use_id": "b", "content": "2"},
        ],
    }
    assert last == {"role": "user", "content": "and?"}


def test_tool_call_arguments_that_are_not_json_are_kept_raw():
    from steer_llm_sdk.types import ToolCall

    call = ToolCall.from_raw("c1", "f", '{"city": "Par')  # a model cut off mid-JSON
    assert call.arguments is None and call.arguments_raw == '{"city": "Par'
    assert ToolCall.from_raw("c2", "g", "").arguments == {}
    assert ToolCall.from_raw("c3", "h", {"a": [1]}).arguments_raw == '{"a":[1]}'
