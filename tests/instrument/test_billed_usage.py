"""Every usage field providers bill by, read exactly on every path: ``instrument()`` over the
official SDKs, ``@track_request`` reading their return values and streams, and
``SteerLLMClient``.

* Groq: a stream that did not ask for ``include_usage`` carries its usage only in
  ``x_groq.usage`` of its last chunk;
* DeepSeek: answers without ``prompt_tokens_details`` name their cache reads
  ``prompt_cache_hit_tokens``;
* Gemini: the prompt of tool use (search grounding, code execution,
  ``toolUsePromptTokenCount``) is billed as input;
* an answer the provider withheld or cut short (OpenAI's content filter, the Responses
  API's, Anthropic's ``stop_reason: "refusal"``) is still billed: the client raises
  ``ContentFilterError`` with the text so far and the usage, and records that usage; the
  SDK paths record it as reported.

Groq's and DeepSeek's cases are recorded exchanges of the corpus (``test_groq/``,
``test_deepseek/``) with the field that carries the usage left alone and the other one
taken out, as those providers send them to a request that does not ask for it (or from
before they added it); Gemini's are recorded exchanges as they are. The refusals come from
LocalLLMServer's ``content_filter`` fault, whose billed usage each test reads from the raw
answer to the very request the client sent.
"""

import copy
import json
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
import requests
import yaml
from support.corpus import CORPUS, SDK_WARNINGS
from support.local import local_client, recorded
from support.sdk_clients import closing, local_sdk_clients

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.errors import ContentFilterError
from steer_llm_sdk.observability import (
    MetricsConfig,
    RequestMetrics,
    instrument,
    track_request,
    uninstrument,
)
from steer_llm_sdk.streaming import SSEDecoder, StreamReader
from steer_llm_sdk.streaming.assemble import Assembler
from steer_llm_sdk.streaming.usage import TokenUsage
from steer_llm_sdk.testing import Fault, LocalLLMServer, capture_metrics

pytestmark = [pytest.mark.timeout(60), *SDK_WARNINGS]

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
pytest.importorskip("google.genai")
if not CORPUS.is_dir():  # pragma: no cover - the corpus is required in CI
    pytest.skip("the recorded corpus is missing", allow_module_level=True)

QUIET = MetricsConfig(flush_on_exit=False, enable_cost_tracking=False)
MODES = ["instrument", "decorator"]


# ---------------------------------------------------------------------- recorded exchanges
def interaction(cassette: str, index: int) -> Dict[str, Any]:
    data = yaml.safe_load((CORPUS / cassette).read_text(encoding="utf-8"))
    return copy.deepcopy(data["interactions"][index])


def write_cassette(tmp_path: Path, *interactions: Dict[str, Any]) -> str:
    path = tmp_path / "derived.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "interactions": list(interactions)}))
    return str(path)


def rewrite_events(recorded: Dict[str, Any], change: Callable[[Dict[str, Any]], None]) -> None:
    """Apply ``change`` to the JSON of each SSE event of a recorded streamed response."""
    body = recorded["response"]["body"]
    frames = []
    for frame in body["string"].replace("\r\n", "\n").split("\n\n"):
        data = frame[5:].strip() if frame.startswith("data:") else None
        if data and data != "[DONE]":
            event = json.loads(data)
            change(event)
            frame = "data: " + json.dumps(event)
        frames.append(frame)
    body["string"] = "\n\n".join(frames)


def events_of(recorded: Dict[str, Any]) -> List[Dict[str, Any]]:
    decoder = SSEDecoder()
    events = decoder.feed(recorded["response"]["body"]["string"])
    decoder.close()
    return [json.loads(e.data) for e in events if e.data != "[DONE]"]


def user() -> List[Dict[str, str]]:
    return [{"role": "user", "content": "hi"}]


def counts(record: Any) -> Tuple[Any, ...]:
    return (
        record.prompt_tokens,
        record.completion_tokens,
        record.total_tokens,
        record.cached_tokens,
        record.reasoning_tokens,
    )


@pytest.fixture(scope="module")
def sdks(module_server: LocalLLMServer) -> Iterator[Dict[str, Any]]:
    made = local_sdk_clients(module_server.url)
    with closing(*made.values()):
        yield made


@pytest.fixture
def replaying(module_server: LocalLLMServer) -> Iterator[LocalLLMServer]:
    uninstrument()
    yield module_server
    uninstrument()
    module_server._replays.clear()


def measured(mode: str, provider: str, call: Callable[[], Any], streamed: bool) -> RequestMetrics:
    """``call()`` (an SDK call; its stream consumed) measured by ``instrument()`` or by
    ``@track_request``: the one RequestMetrics recorded."""
    with capture_metrics(QUIET) as sink:
        if mode == "instrument":
            instrument()
            try:
                result = call()
                for _ in result if streamed else ():
                    pass
            finally:
                uninstrument()
        else:
            result = track_request(provider, stream=streamed)(call)()
            for _ in result if streamed else ():
                pass
    (record,) = sink.get_metrics(metric_type="request")
    return record


# ---------------------------------------------------------------------- Groq: x_groq.usage
#: A Groq stream whose last chunk reports 343 prompt and 180 completion tokens (153 of
#: them reasoning) in ``x_groq.usage`` and, since the request asked for it, in ``usage``.
GROQ = ("test_groq/test_tool_use_failed_error_streaming_with_text.yaml", 1)
GROQ_COUNTS = (343, 180, 523, None, 153)


def groq_without_include_usage(tmp_path: Path) -> str:
    """The recorded Groq stream as Groq sends it without ``include_usage``: its usage only
    in ``x_groq.usage``."""
    recorded = interaction(*GROQ)
    rewrite_events(recorded, lambda event: event.pop("usage", None))
    events = events_of(recorded)
    assert not any("usage" in e for e in events)
    assert [
        e["x_groq"]["usage"]["prompt_tokens"] for e in events if "usage" in e.get("x_groq", {})
    ] == [343]
    return write_cassette(tmp_path, recorded)


@pytest.mark.parametrize("mode", MODES)
def test_groq_stream_usage_in_x_groq_through_the_openai_sdk(tmp_path, replaying, sdks, mode):
    replaying.replay(groq_without_include_usage(tmp_path))
    chat = sdks["openai"].chat
    record = measured(
        mode,
        "groq",
        lambda: chat.completions.create(model="openai/gpt-oss-120b", messages=user(), stream=True),
        True,
    )
    assert counts(record) == GROQ_COUNTS


def test_groq_stream_usage_in_x_groq_through_the_groq_sdk(tmp_path, replaying):
    groq = pytest.importorskip("groq")
    replaying.replay(groq_without_include_usage(tmp_path))
    with groq.Groq(base_url=replaying.url, api_key="test", max_retries=0) as client:
        record = measured(
            "decorator",
            "groq",
            lambda: client.chat.completions.create(
                model="openai/gpt-oss-120b", messages=user(), stream=True
            ),
            True,
        )
    assert counts(record) == GROQ_COUNTS


def test_groq_stream_usage_in_x_groq_through_the_client(tmp_path):
    with LocalLLMServer() as server, local_client(server) as client:
        server.replay(groq_without_include_usage(tmp_path))
        result = client.stream_with_usage("hi", model="openai/gpt-oss-120b", provider="openai")
        usage = result.usage
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (343, 180, 523)
        assert result.aggregation_method == "provider"
        (record,) = recorded(client, "request")
        assert counts(record) == GROQ_COUNTS and not record.tokens_estimated


def test_groq_usage_read_from_decoded_chunks(tmp_path):
    reader = StreamReader()
    recorded = interaction(*GROQ)
    rewrite_events(recorded, lambda event: event.pop("usage", None))
    for chunk in events_of(recorded):
        reader.observe(chunk)
    assert reader.token_usage() == TokenUsage(343, 180, 523, None, 153)


@pytest.mark.parametrize("read", ["reader", "assembler"])
def test_groq_usage_in_a_chunk_of_its_own(read):
    # x_groq.usage may also come after the finish reason, in a chunk without choices.
    chunks = [
        {"model": "m", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {"model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {
            "model": "m",
            "choices": [],
            "x_groq": {"usage": {"prompt_tokens": 9, "completion_tokens": 1}},
        },
    ]
    reader = StreamReader()
    assembler = Assembler("chat")
    for chunk in chunks:
        if read == "reader":
            reader.observe(chunk)
        else:
            assembler.read(reader, chunk)
    assert reader.token_usage() == TokenUsage(9, 1, 10)


# ---------------------------------------------------------------------- DeepSeek: cache hits
#: A DeepSeek answer that read 512 of its 563 prompt tokens from the cache; recorded with
#: both ``prompt_tokens_details.cached_tokens`` and ``prompt_cache_hit_tokens``.
DEEPSEEK = ("test_deepseek/test_deepseek_deferred_capability_with_thinking.yaml", 0)
DEEPSEEK_COUNTS = (563, 116, 679, 512, 60)
DEEPSEEK_STREAM = ("test_deepseek/test_deepseek_model_thinking_stream.yaml", 0)
DEEPSEEK_STREAM_COUNTS = (6, 212, 218, 0, 198)


def deepseek_hits_only(tmp_path: Path, which: Tuple[str, int]) -> str:
    """The recorded DeepSeek answer with its cache reads in ``prompt_cache_hit_tokens``
    only, as DeepSeek reported them before it added ``prompt_tokens_details``."""
    recorded = interaction(*which)
    response = recorded["response"]
    if "parsed_body" in response:
        usage = response["parsed_body"]["usage"]
        del usage["prompt_tokens_details"]
        assert usage["prompt_cache_hit_tokens"] == 512
    else:
        rewrite_events(recorded, lambda e: (e.get("usage") or {}).pop("prompt_tokens_details", 0))
        usages = [e["usage"] for e in events_of(recorded) if e.get("usage")]
        assert [("prompt_tokens_details" in u, u["prompt_cache_hit_tokens"]) for u in usages] == [
            (False, 0)
        ]
    return write_cassette(tmp_path, recorded)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
def test_deepseek_cache_hits_through_the_openai_sdk(tmp_path, replaying, sdks, mode, streamed):
    replaying.replay(deepseek_hits_only(tmp_path, DEEPSEEK_STREAM if streamed else DEEPSEEK))
    chat = sdks["openai"].chat
    record = measured(
        mode,
        "deepseek",
        lambda: chat.completions.create(
            model="deepseek-reasoner", messages=user(), stream=streamed
        ),
        streamed,
    )
    assert counts(record) == (DEEPSEEK_STREAM_COUNTS if streamed else DEEPSEEK_COUNTS)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
def test_deepseek_cache_hits_through_the_client(tmp_path, streamed):
    with LocalLLMServer() as server, local_client(server) as client:
        server.replay(deepseek_hits_only(tmp_path, DEEPSEEK_STREAM if streamed else DEEPSEEK))
        call = client.stream_with_usage if streamed else client.generate
        result = call("hi", model="deepseek-reasoner", provider="openai")
        want = DEEPSEEK_STREAM_COUNTS if streamed else DEEPSEEK_COUNTS
        assert result.usage.cached_tokens == want[3]
        (record,) = recorded(client, "request")
        assert counts(record) == want


# ---------------------------------------------------------------------- Gemini: tool use
#: cassette -> its exchanges as (streamed, prompt + tool-use prompt, candidates + thoughts,
#: totalTokenCount): Gemini's total counts the tool-use prompt, billed as input.
GEMINI = {
    "test_google/test_google_model_web_search_tool.yaml": [
        (False, 17 + 119, 201 + 213, 550),
        (False, 209 + 286, 206 + 131, 832),
    ],
    "test_google/test_google_model_web_search_tool_stream.yaml": [
        (True, 17 + 102, 241 + 412, 772),
        (False, 249 + 319, 240 + 301, 1109),
    ],
}


def ask_gemini(models: Any, name: str) -> Any:
    return getattr(models, name)(model="gemini-2.5-pro", contents="hi")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cassette", sorted(GEMINI))
def test_gemini_tool_use_prompt_counts_as_input(replaying, sdks, mode, cassette):
    replaying.replay(str(CORPUS / cassette))
    models = sdks["gemini"].models
    for streamed, prompt, completion, total in GEMINI[cassette]:
        name = "generate_content_stream" if streamed else "generate_content"
        # The method is looked up in the call: instrument() patches it first.
        record = measured(mode, "gemini", partial(ask_gemini, models, name), streamed)
        assert (record.prompt_tokens, record.completion_tokens) == (prompt, completion)
        assert record.total_tokens == total == prompt + completion


# ---------------------------------------------------------------------- refused answers
def billed(server: LocalLLMServer, body: Dict[str, Any]) -> Dict[str, Any]:
    """The whole answer the server gives to ``body`` (the client's own request, not
    streamed) under the ``content_filter`` fault: what the provider said and billed."""
    path = server.requests[-1].path
    server.script(Fault(content_filter="completion"))
    answer = requests.post(server.url + path, json={**body, "stream": False}, timeout=10)
    return answer.json()  # type: ignore[no-any-return]


def openai_billed(body: Dict[str, Any]) -> Tuple[int, int, int]:
    usage = body["usage"]
    if "input_tokens" in usage:  # the Responses API
        return usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]
    return usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]


def anthropic_billed(body: Dict[str, Any]) -> Tuple[int, int, int]:
    usage = body["usage"]
    prompt = (
        usage["input_tokens"]
        + usage["cache_read_input_tokens"]
        + usage["cache_creation_input_tokens"]
    )
    return prompt, usage["output_tokens"], prompt + usage["output_tokens"]


def refused_text(body: Dict[str, Any]) -> str:
    if "content" in body:  # Anthropic
        return "".join(b["text"] for b in body["content"] if b["type"] == "text")
    if "output" in body:  # the Responses API
        return "".join(p["text"] for item in body["output"] for p in item.get("content", ()))
    return body["choices"][0]["message"]["content"] or ""


#: API -> (client options, model, how the raw answer reports its usage)
REFUSING = {
    "openai chat": ({}, "gpt-4o-mini", openai_billed),
    "openai responses": ({"openai_api": "responses"}, "gpt-4o-mini", openai_billed),
    "anthropic": ({}, "claude-sonnet-4-5", anthropic_billed),
}


@pytest.mark.parametrize("streamed", [False, True], ids=["generate", "stream"])
@pytest.mark.parametrize("api", sorted(REFUSING))
def test_a_refused_answer_raises_with_its_text_and_keeps_its_billed_usage(api, streamed):
    options, model, read_usage = REFUSING[api]
    with LocalLLMServer() as server, local_client(server, **options) as client:
        server.script(Fault(content_filter="completion"))
        call = client.stream_with_usage if streamed else client.generate
        with pytest.raises(ContentFilterError) as caught:
            call("tell me the plan", model=model, retries=0)
        raw = billed(server, server.requests[-1].body)
        prompt, completion, total = read_usage(raw)
        assert prompt > 0 and completion > 0, raw  # a usage to lose
        error = caught.value
        assert error.usage[:3] == (prompt, completion, total)
        if api != "openai chat":  # cut short after part of the text
            assert error.text == refused_text(raw) != ""
        elif not streamed:  # withheld: the whole answer has no text
            assert error.text == refused_text(raw) == ""
        if api == "anthropic":
            assert error.filter_results["stop_details"]["category"] == "cyber"
        (record,) = recorded(client, "request")
        assert not record.success and record.error_category == "content_filter"
        assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (
            prompt,
            completion,
            total,
        )
        assert not record.tokens_estimated


def test_the_filtered_chat_stream_gives_the_text_it_streamed():
    with LocalLLMServer() as server, local_client(server) as client:
        seen: List[str] = []
        server.script(Fault(content_filter="completion"))
        with pytest.raises(ContentFilterError) as caught:
            client.stream_with_usage("tell me", model="gpt-4o-mini", on_chunk=seen.append)
        assert seen and caught.value.text == "".join(seen)


def test_a_refused_call_that_joined_a_tracked_call_hands_its_usage_over():
    with LocalLLMServer() as server, capture_metrics(QUIET) as sink:
        client = SteerLLMClient(
            anthropic_base_url=server.anthropic_base_url, anthropic_api_key="test", environ={}
        )
        try:

            @track_request("anthropic", model="claude-sonnet-4-5")
            def ask() -> Any:
                return client.generate("tell me the plan", model="claude-sonnet-4-5", retries=0)

            server.script(Fault(content_filter="completion"))
            with pytest.raises(ContentFilterError) as caught:
                ask()
        finally:
            client.close()
        raw = billed(server, server.requests[-1].body)
    (record,) = sink.get_metrics(metric_type="request")
    assert not record.success and record.error_category == "content_filter"
    assert (record.prompt_tokens, record.completion_tokens) == anthropic_billed(raw)[:2]
    assert caught.value.usage[:2] == anthropic_billed(raw)[:2]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
def test_anthropic_refusal_recorded_as_reported_through_the_sdk(
    sdks, module_server, mode, streamed
):
    messages = sdks["anthropic"].messages
    said = [{"role": "user", "content": "tell me the plan"}]
    module_server.script(Fault(content_filter="completion"))
    record = measured(
        mode,
        "anthropic",
        lambda: messages.create(
            model="claude-sonnet-4-5", max_tokens=64, messages=said, stream=streamed
        ),
        streamed,
    )
    body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": said}
    raw = billed(module_server, body)
    assert raw["stop_reason"] == "refusal"
    assert record.success  # the SDK returned the refusal: the caller decides what it means
    prompt, completion, total = anthropic_billed(raw)
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (
        prompt,
        completion,
        total,
    )


def test_a_refusal_whose_stream_then_breaks_off_raises_the_refusal(tmp_path):
    # The refusal and its usage came; the connection was lost before message_stop: the
    # refusal, not the lost connection, is what the caller must see (and it is never
    # retried).
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {"model": "claude-x", "usage": {"input_tokens": 3}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi"},
            },
        ),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "refusal"},
                "usage": {"output_tokens": 2},
            },
        ),
    ]
    body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    stream = {
        "request": {"method": "POST", "uri": "https://api.anthropic.com/v1/messages"},
        "response": {
            "status": {"code": 200},
            "headers": {"content-type": ["text/event-stream"]},
            "body": {"string": body},
        },
    }
    with LocalLLMServer() as server, local_client(server) as client:
        server.replay(write_cassette(tmp_path, stream))
        with pytest.raises(ContentFilterError) as caught:
            client.stream_with_usage("hi", model="claude-x", retries=2)
        assert caught.value.text == "Hi"
        assert caught.value.usage[:3] == (3, 2, 5)
        assert len(server.requests) == 1
        (record,) = recorded(client, "request")
        assert (record.prompt_tokens, record.completion_tokens) == (3, 2)
        assert record.error_category == "content_filter"
