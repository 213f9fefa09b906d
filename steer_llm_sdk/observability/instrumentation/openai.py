"""The ``openai`` SDK (also ``AzureOpenAI`` and OpenAI-compatible base URLs): sync entry
points only; the async clients are left untouched."""

from typing import Any, Callable, Dict, List, Tuple

from ._measure import CREATE, HELPER, PLAIN, base_url_of, client_secrets, endpoint, entry_point


def _client_info(instance: Any) -> Tuple[str, Dict[str, Any]]:
    client = getattr(instance, "_client", None)
    base = base_url_of(client)
    default = "azure.ai.openai" if type(client).__name__ == "AzureOpenAI" else "openai"
    return endpoint(base, default)


def secrets(instance: Any) -> List[str]:
    """The credentials of the client behind an openai resource (read when a call fails):
    its key (sent as ``Authorization: Bearer`` or Azure's ``api-key``), admin key, Azure AD
    token, credential headers given as ``default_headers``, and its base URL's userinfo.

    Reads the SDK's privates ``_client`` (a resource's client), ``_azure_ad_token`` and
    ``_custom_headers``: tests/instrument/test_leaks.py fails when a release removes them.
    """
    client = instance._client
    return client_secrets(
        client, ("api_key", "admin_api_key", "_azure_ad_token"), client._custom_headers
    )


#: (module, attribute path, operation, mode)
TARGETS: List[Tuple[str, str, str, str]] = [
    ("openai.resources.chat.completions", "Completions.create", "chat", CREATE),
    ("openai.resources.chat.completions", "Completions.parse", "chat", PLAIN),
    ("openai.resources.chat.completions", "Completions.stream", "chat", HELPER),
    ("openai.resources.responses", "Responses.create", "chat", CREATE),
    ("openai.resources.responses", "Responses.parse", "chat", PLAIN),
    ("openai.resources.responses", "Responses.stream", "chat", HELPER),
    ("openai.resources.completions", "Completions.create", "text_completion", CREATE),
    ("openai.resources.embeddings", "Embeddings.create", "embeddings", PLAIN),
]


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    return [
        (module, path, entry_point(_client_info, operation, mode, secrets_of=secrets))
        for module, path, operation, mode in TARGETS
    ]
