"""Independent checks: the official openai and anthropic packages accept the local server's
responses, and @track_request around the openai package records the same usage as our
client does for the same request."""

import pytest
from support.sdk_clients import closing

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.testing import LocalLLMServer

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")


@pytest.fixture
def server():
    with LocalLLMServer(reply_words=10) as local:
        yield local


def test_openai_package_blocking_and_streamed(server):
    with openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0) as client:
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
        )
        assert completion.choices[0].message.content == "".join(server.reply_text("Hello", 10))
        assert completion.usage.completion_tokens == 10
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Hello"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == completion.choices[0].message.content
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10


def test_anthropic_package_blocking_and_streamed(server):
    with anthropic.Anthropic(
        base_url=server.anthropic_base_url, api_key="test", max_retries=0
    ) as client:
        message = client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=100,
            messages=[{"role": "user", "content": "Hello"}],
        )
        assert message.content[0].text == "".join(server.reply_text("Hello", 10))
        assert message.usage.output_tokens == 10
        with client.messages.stream(
            model="claude-haiku-4-5",
            max_tokens=100,
            messages=[{"role": "user", "content": "Hello"}],
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == message.content[0].text and final.usage.output_tokens == 10


def test_decorator_around_openai_package_matches_our_client(server, make_collector, sink):
    collector = make_collector([sink])
    sdk = openai.OpenAI(base_url=server.openai_base_url, api_key="test", max_retries=0)

    @collector.track_request("openai")
    def ask(prompt, model="gpt-4o-mini"):
        return sdk.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}]
        )

    @collector.track_request("openai")
    def ask_streamed(prompt, model="gpt-4o-mini"):
        return sdk.chat.completions.create(
            model=model,
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": prompt}],
        )

    with closing(sdk):
        ask("Compare")
        "".join(c.choices[0].delta.content or "" for c in ask_streamed("Compare") if c.choices)
    ours = SteerLLMClient(
        metrics_collector=collector, openai_base_url=server.openai_base_url, openai_api_key="test"
    )
    ours.generate("Compare", model="gpt-4o-mini")
    ours.stream_with_usage("Compare", model="gpt-4o-mini")
    assert collector.flush(5)
    requests = sink.of_type("request")
    assert len(requests) == 4
    usages = {
        (r.method, r.prompt_tokens, r.completion_tokens, r.total_tokens, r.response_model)
        for r in requests
    }
    assert usages == {
        ("generate", requests[2].prompt_tokens, 10, requests[2].prompt_tokens + 10, "gpt-4o-mini"),
        ("stream", requests[2].prompt_tokens, 10, requests[2].prompt_tokens + 10, "gpt-4o-mini"),
    }
    streams = sink.of_type("streaming")
    assert {s.aggregation_method for s in streams} == {"provider"}
    assert all(r.time_to_first_token_ms is not None for r in requests if r.method == "stream")
    ours.close()
