"""Azure OpenAI through SteerLLMClient against the local server: the deployment URL with
its api-version, the api-key header or a token provider, the provider recorded as
``azure.ai.openai``, the model behind the deployment, content filters, routing, variables;
and the official ``openai.AzureOpenAI`` client accepts the server's answers."""

import pytest
from support.local import CONFIG, recorded

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.errors import ContentFilterError, ProviderError
from steer_llm_sdk.streaming.tokens import STAND_IN_CONFIDENCE, TOKENIZER_CONFIDENCE
from steer_llm_sdk.testing import Fault, LocalLLMServer

pytestmark = [pytest.mark.timeout(60), pytest.mark.llm_server(reply_words=6)]


def test_deployment_url_key_header_and_records(server):
    with SteerLLMClient(
        CONFIG, azure_endpoint=server.url, azure_api_key="azure-secret-key", environ={}
    ) as client:
        response = client.generate("hello", model="azure:prod-chat")
        assert response.provider == "azure.ai.openai"
        assert response.model == server.azure_model  # the model behind the deployment
        sent = server.requests[-1]
        assert sent.path == "/openai/deployments/prod-chat/chat/completions?api-version=2024-10-21"
        assert sent.headers["api-key"] == "azure-secret-key"
        assert "authorization" not in sent.headers
        (record,) = recorded(client, "request")
        assert (record.provider, record.model, record.response_model) == (
            "azure.ai.openai",
            "prod-chat",
            server.azure_model,
        )
        assert record.attributes["server.address"] == "127.0.0.1"
        assert "azure-secret-key" not in repr(client)


def test_token_provider_called_for_each_request(server):
    tokens = iter(["tok-1", "tok-2"])
    with SteerLLMClient(
        CONFIG,
        azure_endpoint=server.url,
        azure_ad_token_provider=lambda: next(tokens),
        api_version="2025-01-01-preview",
        environ={},
    ) as client:
        client.generate("a", model="gpt-4o", provider="azure")
        client.generate("b", model="gpt-4o", provider="azure")
        assert [r.headers["authorization"] for r in server.requests] == [
            "Bearer tok-1",
            "Bearer tok-2",
        ]
        assert server.requests[0].path.endswith("?api-version=2025-01-01-preview")
        assert "token provider" in repr(client)


def test_v1_api_names_the_deployment_in_the_body(server):
    with SteerLLMClient(
        CONFIG, azure_endpoint=server.url, azure_api_key="k", api_version="v1", environ={}
    ) as client:
        client.generate("a", model="azure:prod-chat")
        sent = server.requests[-1]
        assert sent.path == "/openai/v1/chat/completions"
        assert sent.body["model"] == "prod-chat"


@pytest.mark.parametrize(
    "version, path",
    [("v1", "/openai/v1/responses"), ("2025-04-01-preview", "/openai/responses")],
)
def test_responses_api_on_azure(server, version, path):
    with SteerLLMClient(
        CONFIG,
        azure_endpoint=server.url,
        azure_api_key="k",
        api_version=version,
        openai_api="responses",
        environ={},
    ) as client:
        response = client.generate("hello", model="azure:prod-resp")
        streamed = client.stream_with_usage("hello", model="azure:prod-resp")
        sent = server.requests[-1]
        assert sent.path.split("?")[0] == path and sent.headers["api-key"] == "k"
        assert sent.body["model"] == "prod-resp" and "input" in sent.body
        assert response.model == streamed.model == server.azure_model
        assert response.text == streamed.text and response.finish_reason == "stop"
        records = recorded(client, "request")
        assert {r.provider for r in records} == {"azure.ai.openai"}


def test_failing_token_provider_is_an_sdk_error(server):
    def broken():
        raise OSError("no credentials")

    with SteerLLMClient(
        CONFIG, azure_endpoint=server.url, azure_ad_token_provider=broken, environ={}
    ) as client:
        with pytest.raises(ProviderError, match="token provider"):
            client.generate("a", model="azure:d", retries=0)
        assert server.requests == []


def test_routing_to_azure(server):
    env = {"AZURE_OPENAI_ENDPOINT": server.url, "AZURE_OPENAI_API_KEY": "k"}
    with SteerLLMClient(CONFIG, environ=env) as azure_only:
        azure_only.generate("x", model="gpt-4o")  # no OpenAI key: the deployment "gpt-4o"
        assert server.requests[-1].path.startswith("/openai/deployments/gpt-4o/")
    with SteerLLMClient(
        CONFIG, environ=env, openai_api_key="o", openai_base_url=server.openai_base_url
    ) as both:
        both.generate("x", model="gpt-4o")  # an OpenAI key too: OpenAI
        assert server.requests[-1].path == "/v1/chat/completions"
        both.generate("x", model="azure:gpt-4o")
        assert server.requests[-1].path.startswith("/openai/deployments/gpt-4o/")
    with (
        SteerLLMClient(CONFIG, environ={}, openai_api_key="o") as none,
        pytest.raises(ProviderError, match="not configured"),
    ):
        none.generate("x", model="azure:d", retries=0)


def test_local_counting_uses_the_model_the_response_names():
    with (
        LocalLLMServer(reply_words=6, report_usage=False) as server,
        SteerLLMClient(CONFIG, azure_endpoint=server.url, azure_api_key="k", environ={}) as client,
    ):
        result = client.stream_with_usage("hello", model="azure:my-deployment")
        # The deployment's name names no tokenizer; the answering model does.
        assert result.model == server.azure_model
        assert result.aggregation_method == "tokenizer"
        assert result.aggregation_confidence == TOKENIZER_CONFIDENCE > STAND_IN_CONFIDENCE


@pytest.mark.parametrize("where", ["prompt", "completion"])
def test_content_filter_outcomes(server, where):
    with SteerLLMClient(CONFIG, azure_endpoint=server.url, azure_api_key="k", environ={}) as client:
        server.script(Fault(content_filter=where))
        with pytest.raises(ContentFilterError) as caught:
            client.generate("x", model="azure:d")
        assert caught.value.filter_results and caught.value.provider == "azure.ai.openai"
        (record,) = recorded(client, "request")
        assert record.error_category == "content_filter"


def test_official_azure_client_accepts_the_servers_answers(server):
    openai = pytest.importorskip("openai")
    with openai.AzureOpenAI(
        azure_endpoint=server.url, api_key="k", api_version="2024-10-21"
    ) as client:
        completion = client.chat.completions.create(
            model="prod-chat", messages=[{"role": "user", "content": "hi"}]
        )
    assert completion.model == server.azure_model and completion.choices[0].message.content
    assert server.requests[-1].headers["api-key"] == "k"
