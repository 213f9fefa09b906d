"""The options SteerLLMClient's three call methods share: one ``CallOptions`` per call,
built from the keywords of ``generate``, ``stream`` and ``stream_with_usage``, whose
signatures stay the contract they are; every option reaches the request from every method."""

import dataclasses
import inspect

import pytest
from support.local import local_client, recorded

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.client.options import CallOptions
from steer_llm_sdk.errors import ServerError
from steer_llm_sdk.testing import Fault, LocalLLMServer

METHODS = ["generate", "stream", "stream_with_usage"]
#: Parameters of a method that are not options of the call.
NOT_OPTIONS = {"self", "on_chunk"}
LOOKUP = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_takes_exactly_the_options_in_their_order(method):
    parameters = inspect.signature(getattr(SteerLLMClient, method)).parameters
    names = [name for name in parameters if name not in NOT_OPTIONS]
    assert names == [f.name for f in dataclasses.fields(CallOptions)]
    kinds = {name: p.kind for name, p in parameters.items() if name not in NOT_OPTIONS}
    assert kinds.pop("messages") == kinds.pop("model") == inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert kinds.pop("params") == inspect.Parameter.VAR_KEYWORD
    assert set(kinds.values()) == {inspect.Parameter.KEYWORD_ONLY}
    assert all(parameters[name].default is None for name in kinds)


def test_stream_with_usage_adds_only_on_chunk_before_retries():
    names = list(inspect.signature(SteerLLMClient.stream_with_usage).parameters)
    assert names.index("on_chunk") == names.index("provider") + 1
    assert names.index("retries") == names.index("on_chunk") + 1


def test_options_are_read_only_and_their_repr_holds_no_prompt():
    options = CallOptions("a secret prompt", "m", None, None, None, None, None, None, None, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.model = "other"  # type: ignore[misc]
    assert "secret" not in repr(options) and options.format == "text"


def call(client, method):
    """``method`` called with every option set, consumed to its end."""
    options = dict(
        max_tokens=7,
        temperature=0.25,
        response_format="json_object",
        provider="openai",
        retries=0,
        tools=[LOOKUP],
        tool_choice="none",
        seed=11,
    )
    if method == "stream":
        with client.stream("hello", "local-model", **options) as stream:
            list(stream)
        return stream.result()
    return getattr(client, method)("hello", "local-model", **options)


@pytest.mark.parametrize("method", METHODS)
def test_every_option_reaches_the_request_from_every_method(method):
    with LocalLLMServer() as server, local_client(server) as client:
        server.script(Fault(status=500))  # retries=0: not asked again
        with pytest.raises(ServerError):
            call(client, method)
        (request,) = server.requests
        assert request.path == "/v1/chat/completions"  # provider= routes a model no prefix names
        body = request.body
        assert body["model"] == "local-model"
        assert (body["max_tokens"], body["temperature"], body["seed"]) == (7, 0.25, 11)
        assert body["response_format"] == {"type": "json_object"}
        assert body["tools"] == [LOOKUP] and body["tool_choice"] == "none"
        assert body["messages"] == [{"role": "user", "content": "hello"}]
        assert body.get("stream", False) is (method != "generate")
        (failed,) = recorded(client, "request")
        assert (failed.method, failed.response_format) == (
            "generate" if method == "generate" else "stream",
            "json_object",
        )
