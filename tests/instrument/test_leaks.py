"""Credentials and the request's own text kept out of everything the SDK stores, logs or
prints, on every path: ``instrument()`` (real exceptions of the official SDKs, raised by
errors of the local server that echo the request's key, headers or messages), calls that
join a tracked one, ``SteerLLMClient``, and reprs.

The SDK exceptions re-raised to the caller are the SDKs' own and stay unchanged: each test
first checks that the echo is in the exception (so the check below it means something),
then that nothing we keep shows it.
"""

import json
from typing import Any, Callable, Dict, List, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.corpus import SDK_WARNINGS
from support.sdk_clients import closing, local_sdk_clients, official_sdks

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk._secrets import (
    REQUEST_TEXT,
    redact,
    remove_request_text,
    request_texts,
    url_secrets,
)
from steer_llm_sdk.errors import SteerLLMError
from steer_llm_sdk.observability import (
    MetricsConfig,
    get_collector,
    instrument,
    track_request,
    uninstrument,
)
from steer_llm_sdk.observability.measure import sdk as measure_sdk
from steer_llm_sdk.reliability import RetryPolicy
from steer_llm_sdk.testing import Fault, LocalLLMServer, capture_metrics

pytestmark = SDK_WARNINGS

openai, anthropic, genai, boto3 = official_sdks()

# Keys of no known shape (an OpenAI-compatible gateway's, Azure's 32 hex digits, ...): only
# the client's own values can find them in a message.
OPENAI_KEY = "gw-7Qm2Vx9Lp4Zr8Tn3Wb6"
AZURE_KEY = "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e"
ANTHROPIC_KEY = "gw-Hq7Wd2Kx5Jc8Nv1Bt4"
GEMINI_KEY = "AIzaTESTgeminiKey0123456789abcdefghij"
AWS_ACCESS = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLEsessionTOKENvalue0123456789"
SECRETS = {
    "openai": [OPENAI_KEY],
    "azure": [AZURE_KEY],
    "anthropic": [ANTHROPIC_KEY],
    "gemini": [GEMINI_KEY],
    "bedrock": [AWS_ACCESS, AWS_TOKEN],  # the secret key signs; it is never sent
}
PROMPT = "Plan the surprise party for Dana on the 14th; the venue door code is 4471."
SYSTEM = "You are the party planner of the Okafor family, never reveal the guest list."
SDKS = ["openai", "azure", "anthropic", "gemini", "bedrock"]
CONFIG = MetricsConfig(flush_on_exit=False, enable_cost_tracking=False)


@pytest.fixture
def instrumented():
    uninstrument()
    instrument()
    yield
    uninstrument()


def _clients(server: LocalLLMServer) -> Dict[str, Any]:
    """A client of each SDK for ``server``, holding the secrets above."""
    return local_sdk_clients(
        server.url,
        openai_key=OPENAI_KEY,
        azure_key=AZURE_KEY,
        anthropic_key=ANTHROPIC_KEY,
        gemini_key=GEMINI_KEY,
        aws_access_key=AWS_ACCESS,
        aws_secret_key=AWS_SECRET,
        aws_session_token=AWS_TOKEN,
    )


@pytest.fixture(scope="module")
def clients(module_server):
    made = _clients(module_server)
    with closing(*made.values()):
        yield made


def _call(clients: Dict[str, Any], sdk: str, streamed: bool = False) -> Callable[[], Any]:
    """The SDK's chat call with PROMPT (and SYSTEM), as a thunk."""
    client = clients[sdk]
    if sdk in ("openai", "azure"):
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
        return lambda: client.chat.completions.create(
            model="gpt-4o", messages=messages, stream=streamed
        )
    if sdk == "anthropic":
        return lambda: client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=16,
            system=SYSTEM,
            messages=[{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
            stream=streamed,
        )
    if sdk == "gemini":
        from google.genai import types

        config = types.GenerateContentConfig(system_instruction=SYSTEM)
        models = client.models
        if streamed:  # the request is sent at the first step
            return lambda: list(
                models.generate_content_stream(
                    model="gemini-2.5-flash", contents=PROMPT, config=config
                )
            )
        return lambda: models.generate_content(
            model="gemini-2.5-flash", contents=PROMPT, config=config
        )
    messages = [{"role": "user", "content": [{"text": PROMPT}]}]
    call = client.converse_stream if streamed else client.converse
    return lambda: call(modelId="m", messages=messages, system=[{"text": SYSTEM}])


def _fail(server: LocalLLMServer, fault: Fault, call: Callable[[], Any]) -> Tuple[Any, List]:
    """Run ``call`` (which must fail with ``fault``): (its exception, every record kept)."""
    server.script(fault)
    with capture_metrics(CONFIG) as sink, pytest.raises(Exception) as info:
        call()
    return info.value, sink.get_metrics()


def _kept(records: List) -> str:
    """Everything the records say (fields and attributes), as one text."""
    assert records, "nothing was recorded"
    return "\n".join(json.dumps(r.to_dict(), default=str) + repr(r) for r in records)


def _message(records: List) -> str:
    errors = [r for r in records if r.metric_type == "error"]
    assert len(errors) == 1, records
    return errors[0].message


# ---------------------------------------------------------------------- credentials


@pytest.mark.parametrize("echo", ["key", "headers"])
@pytest.mark.parametrize("sdk", SDKS)
def test_the_sdk_clients_keys_are_kept_out_of_records(
    module_server, clients, instrumented, sdk, echo
):
    fault = Fault(status=403, echo_key=echo == "key", echo_headers=echo == "headers")
    exc, records = _fail(module_server, fault, _call(clients, sdk))
    kept = _kept(records)
    for secret in SECRETS[sdk]:
        assert secret in str(exc), "the error did not echo the key: nothing was tested"
        assert secret not in kept
    assert "[REDACTED]" in _message(records)


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_stream_helpers_keep_keys_and_text_out_of_records(
    module_server, clients, instrumented, sdk
):
    client = clients[sdk]
    messages = [{"role": "user", "content": PROMPT}]

    def call() -> List[Any]:
        if sdk == "openai":
            manager = client.chat.completions.stream(model="gpt-4o", messages=messages)
        else:
            manager = client.messages.stream(
                model="claude-sonnet-4-5", max_tokens=16, messages=messages
            )
        with manager as stream:  # the request is sent on entering
            return list(stream)

    exc, records = _fail(
        module_server, Fault(status=400, echo_key=True, echo_request="message"), call
    )
    assert SECRETS[sdk][0] in str(exc) and PROMPT in str(exc)
    kept = _kept(records)
    assert SECRETS[sdk][0] not in kept and PROMPT not in kept
    assert REQUEST_TEXT in _message(records)


def test_url_userinfo_and_basic_credentials_are_kept_out(module_server, instrumented):
    host = module_server.url.split("://", 1)[1]
    client = openai.OpenAI(
        base_url=f"http://alice:s3cr3t-pw@{host}/v1", api_key=OPENAI_KEY, max_retries=0
    )
    messages = [{"role": "user", "content": PROMPT}]
    with closing(client):
        exc, records = _fail(
            module_server,
            Fault(status=401, echo_headers=True),
            lambda: client.chat.completions.create(model="gpt-4o", messages=messages),
        )
    kept = _kept(records)
    sent = module_server.requests[-1].headers["authorization"]
    if sent.startswith("Basic "):  # the HTTP client turned the userinfo into Basic auth
        assert sent in str(exc)
        assert sent.split(" ", 1)[1] not in kept
    assert "s3cr3t-pw" not in kept and "alice" not in kept
    assert OPENAI_KEY not in kept


def test_the_client_keeps_userinfo_and_basic_credentials_out(module_server):
    host = module_server.url.split("://", 1)[1]
    with SteerLLMClient(
        CONFIG,
        openai_base_url=f"http://alice:s3cr3t-pw@{host}/v1",
        openai_api_key=OPENAI_KEY,
        retry_policy=RetryPolicy(max_attempts=1),
        environ={},
    ) as client:
        assert "s3cr3t-pw" not in repr(client) and "alice" not in repr(client)
        module_server.script(Fault(status=401, echo_headers=True, echo_key=True))
        with pytest.raises(SteerLLMError) as info:
            client.generate(PROMPT, model="gpt-4o")
        assert client.metrics_collector.flush(5)
        records = client.metrics_collector.sinks[0].get_metrics()
    sent = module_server.requests[-1].headers["authorization"]
    shown = [str(info.value), repr(info.value), _kept(records)]
    cause = info.value.__cause__ or info.value.__context__
    while cause is not None:
        shown.append(f"{cause!s} {cause!r} {cause.args!r}")
        cause = cause.__cause__ or cause.__context__
    for text in shown:
        assert "s3cr3t-pw" not in text and OPENAI_KEY not in text
        assert sent.split(" ", 1)[1] not in text


def test_an_azure_key_echoed_to_the_client_is_kept_out(module_server):
    with SteerLLMClient(
        CONFIG,
        azure_endpoint=module_server.url,
        azure_api_key=AZURE_KEY,
        retry_policy=RetryPolicy(max_attempts=1),
        environ={},
    ) as client:
        module_server.script(Fault(status=401, echo_key=True))
        with pytest.raises(SteerLLMError) as info:
            client.generate(PROMPT, model="azure:prod-chat")
        assert client.metrics_collector.flush(5)
        records = client.metrics_collector.sinks[0].get_metrics()
    assert AZURE_KEY not in str(info.value) + repr(info.value) + _kept(records)
    assert AZURE_KEY not in repr(client)


# ---------------------------------------------------------------------- the request's text

#: The stored message of a 400 whose error body carries the whole request beside it.
STRUCTURED = {
    "openai": "invalid_request_error: Invalid request",
    "azure": "invalid_request_error: Invalid request",
    "anthropic": "invalid_request_error: Invalid request",
    "gemini": "INVALID_ARGUMENT: Invalid request",
    "bedrock": "ValidationException: Invalid request",
}


@pytest.mark.parametrize("sdk", SDKS)
def test_the_stored_message_is_the_providers_structured_error_field(
    module_server, clients, instrumented, sdk
):
    exc, records = _fail(module_server, Fault(status=400, echo_request="body"), _call(clients, sdk))
    if sdk in ("anthropic", "gemini"):  # their str(exc) is the whole body
        assert PROMPT in str(exc)
    assert _message(records) == STRUCTURED[sdk]
    assert PROMPT not in _kept(records) and SYSTEM not in _kept(records)


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("sdk", SDKS)
def test_the_request_text_a_provider_quotes_is_removed(
    module_server, clients, instrumented, sdk, streamed
):
    call = _call(clients, sdk, streamed)
    exc, records = _fail(module_server, Fault(status=400, echo_request="message"), call)
    assert PROMPT in str(exc) or json.dumps(PROMPT) in str(exc)
    kept = _kept(records)
    assert PROMPT not in kept and SYSTEM not in kept
    assert "Dana" not in kept and "Okafor" not in kept
    message = _message(records)
    assert message.startswith(STRUCTURED[sdk]) and REQUEST_TEXT in message


@pytest.mark.parametrize("rewrap", [False, True])
def test_a_failed_sdk_call_inside_a_tracked_function(module_server, clients, instrumented, rewrap):
    """The SDK call joins the tracked call, which records the failure: the text and keys
    the SDK call had are still removed, also from an exception the function raises from
    the SDK's."""

    @track_request("anthropic", model="claude-sonnet-4-5")
    def plan() -> Any:
        try:
            return _call(clients, "anthropic")()
        except anthropic.APIStatusError as exc:
            if rewrap:
                raise RuntimeError(f"planning failed: {exc}") from exc
            raise

    fault = Fault(status=400, echo_request="message", echo_key=True)
    exc, records = _fail(module_server, fault, plan)
    assert PROMPT in str(exc) and ANTHROPIC_KEY in str(exc)
    assert len([r for r in records if r.metric_type == "request"]) == 1
    kept = _kept(records)
    assert PROMPT not in kept and SYSTEM not in kept and ANTHROPIC_KEY not in kept


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet-4-5", "azure:prod-chat"])
def test_the_client_removes_the_request_text_a_provider_quotes(module_server, model):
    with SteerLLMClient(
        CONFIG,
        openai_base_url=module_server.openai_base_url,
        anthropic_base_url=module_server.anthropic_base_url,
        azure_endpoint=module_server.url,
        openai_api_key=OPENAI_KEY,
        anthropic_api_key=ANTHROPIC_KEY,
        azure_api_key=AZURE_KEY,
        retry_policy=RetryPolicy(max_attempts=1),
        environ={},
    ) as client:
        module_server.script(Fault(status=400, echo_request="message"))
        with pytest.raises(SteerLLMError) as info:
            client.generate(
                [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
                model=model,
            )
        assert client.metrics_collector.flush(5)
        records = client.metrics_collector.sinks[0].get_metrics()
    for text in (str(info.value), repr(info.value), _kept(records)):
        assert "Dana" not in text and "Okafor" not in text
    assert REQUEST_TEXT in _message(records)


def test_sensitive_parts_are_read_only_when_a_call_fails():
    reads = []

    def secrets_of(client: Any) -> List[str]:
        reads.append(client)
        return ["hunter2-secret"]

    def fail() -> Any:
        raise ValueError("denied for hunter2-secret: " + PROMPT)

    sensitive = (secrets_of, "client", {"messages": [{"content": PROMPT}]})
    with capture_metrics(CONFIG) as sink:
        collector = get_collector()  # the capturing one, for the block
        measure_sdk.measure(collector, lambda: 1, "openai", "chat", "m", {}, None, sensitive)
        assert reads == []
        with pytest.raises(ValueError):
            measure_sdk.measure(collector, fail, "openai", "chat", "m", {}, None, sensitive)
        assert reads == ["client"]
    message = _message(sink.get_metrics())
    assert message == f"denied for [REDACTED]: {REQUEST_TEXT}"


# ---------------------------------------------------------------------- SDK privates read


def test_each_sdk_adapter_finds_the_clients_credentials():
    """Each adapter reads SDK privates; this fails when a release moves them."""
    from botocore.credentials import RefreshableCredentials

    from steer_llm_sdk.observability.instrumentation import anthropic as ours_anthropic
    from steer_llm_sdk.observability.instrumentation import bedrock as ours_bedrock
    from steer_llm_sdk.observability.instrumentation import google_genai as ours_genai
    from steer_llm_sdk.observability.instrumentation import openai as ours_openai

    with LocalLLMServer() as srv:
        clients = _clients(srv)
    ad = openai.AzureOpenAI(
        azure_endpoint="https://x", azure_ad_token="ad-token-1234", api_version="v"
    )
    headed = openai.OpenAI(
        api_key="k", base_url="http://u:pw-1234@h/v1", default_headers={"api-key": "hdr-1234"}
    )
    token = anthropic.Anthropic(auth_token="bearer-tok-1234")
    aws = anthropic.AnthropicBedrock(
        aws_access_key=AWS_ACCESS,
        aws_secret_key=AWS_SECRET,
        aws_session_token=AWS_TOKEN,
        aws_region="us-east-1",
    )
    with closing(*clients.values(), ad, headed, token, aws):
        assert OPENAI_KEY in ours_openai.secrets(clients["openai"].chat.completions)
        assert AZURE_KEY in ours_openai.secrets(clients["azure"].chat.completions)
        assert "ad-token-1234" in ours_openai.secrets(ad.chat.completions)
        assert {"hdr-1234", "u", "pw-1234"} <= set(ours_openai.secrets(headed.chat.completions))
        assert ANTHROPIC_KEY in ours_anthropic.secrets(clients["anthropic"].messages)
        assert "bearer-tok-1234" in ours_anthropic.secrets(token.messages)
        assert {AWS_ACCESS, AWS_SECRET, AWS_TOKEN} <= set(ours_anthropic.secrets(aws.messages))
        assert GEMINI_KEY in ours_genai.secrets(clients["gemini"].models)
        bedrock = clients["bedrock"]
        assert {AWS_ACCESS, AWS_SECRET, AWS_TOKEN} <= set(ours_bedrock.secrets(bedrock))

        refreshes = []

        def refresh() -> Dict[str, str]:
            refreshes.append(1)
            return {}

        bedrock._request_signer._credentials = RefreshableCredentials(
            "ASIAREFRESHABLE00001", "refreshable-secret", "refreshable-token", None, refresh, "x"
        )
        found = set(ours_bedrock.secrets(bedrock))
        assert {"ASIAREFRESHABLE00001", "refreshable-secret", "refreshable-token"} <= found
        assert refreshes == []  # read as stored, never refreshed


# ---------------------------------------------------------------------- the pure parts


def test_credential_patterns():
    text = (
        "Authorization: Basic YWxpY2U6czNjcjN0 | https://alice:pw@h.example/v1 | "
        "https://tok3n@h.example | x-amz-security-token:IQoJb3JpZ2luX2VjEXAMPLE== | "
        "Credential=AKIAIOSFODNN7EXAMPLE/20250101/us-east-1/bedrock/aws4_request | "
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG | ?X-Amz-Security-Token=IQo%2Fab12cd34"
    )
    out = redact(text)
    for leaked in ("YWxpY2U6", "alice", ":pw@", "tok3n", "IQoJ", "AKIA", "wJalr", "IQo%2F"):
        assert leaked not in out
    assert "Basic [REDACTED]" in out and "https://[REDACTED]@h.example/v1" in out
    harmless = "Basic information about basic models; mail me at dana@example.com"
    assert redact(harmless) == harmless
    assert redact("token%2Fwith%3Dslash", ["token/with=slash"]) == "[REDACTED]"
    assert url_secrets("http://a%40b:p%3Aw@h/") == ("a@b", "p:w", "YUBiOnA6dw==")
    assert url_secrets("http://h/") == () and url_secrets(None) == ()


def test_request_texts_of_each_sdks_call_shape():
    from google.genai import types

    assert sorted(
        request_texts(
            {
                "model": "gpt-4o-mini-long-name",
                "messages": [
                    {"role": "system", "content": "sys text"},
                    {"role": "user", "content": [{"type": "text", "text": "part text"}]},
                ],
                "input": ["embed one"],
                "instructions": "be brief",
                "system": [{"text": "bedrock sys"}],
                "contents": [types.Content(role="user", parts=[types.Part(text="genai part")])],
                "config": types.GenerateContentConfig(system_instruction="genai sys"),
            }
        )
    ) == sorted(
        ["sys text", "part text", "embed one", "be brief", "bedrock sys", "genai part", "genai sys"]
    )


def test_request_text_removal_forms():
    prompt = 'He said "stop"\nthen left the building at dawn, quietly and alone.'
    for quoted in (prompt, json.dumps(prompt)[1:-1], repr(prompt)[1:-1]):
        out = remove_request_text(f"bad input: {quoted}.", [prompt])
        assert out == f"bad input: {REQUEST_TEXT}."
    part = prompt[10:40]
    assert remove_request_text(f"x '{part}' y", [prompt]) == f"x '{REQUEST_TEXT}' y"
    # short texts only whole and as words: "test" stays in "latest"
    assert remove_request_text("latest test", ["test"]) == f"latest {REQUEST_TEXT}"
    assert remove_request_text("no quote here", [prompt]) == "no quote here"


@given(
    prompt=st.text(min_size=24, max_size=400),
    start=st.integers(0, 400),
    size=st.integers(23, 400),
    before=st.text(max_size=60),
    after=st.text(max_size=60),
)
def test_no_quoted_run_of_the_request_text_survives(prompt, start, size, before, after):
    start = min(start, len(prompt) - 23)
    quote = prompt[start : start + size]
    out = remove_request_text(before + quote + after, [prompt])
    assert quote not in out
