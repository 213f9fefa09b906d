"""The ``anthropic`` SDK (also ``AnthropicBedrock`` and ``AnthropicVertex``): sync
``messages.create`` (streamed or not) and the ``messages.stream`` helper."""

from typing import Any, Callable, Dict, List, Tuple

from ._measure import CREATE, HELPER, base_url_of, client_secrets, endpoint, entry_point

_BY_CLASS = {"AnthropicBedrock": "aws.bedrock", "AnthropicVertex": "gcp.vertex_ai"}


def _client_info(instance: Any) -> Tuple[str, Dict[str, Any]]:
    client = getattr(instance, "_client", None)
    base = base_url_of(client)
    provider, attributes = endpoint(base, "anthropic")
    return _BY_CLASS.get(type(client).__name__) or provider, attributes


#: Where the anthropic clients keep credentials: ``Anthropic`` (``x-api-key``, or
#: ``auth_token`` as a Bearer), ``AnthropicBedrock`` (AWS keys), ``AnthropicVertex``.
_KEYS = (
    "api_key",
    "auth_token",
    "aws_access_key",
    "aws_secret_key",
    "aws_session_token",
    "access_token",
)


def secrets(instance: Any) -> List[str]:
    """The credentials of the client behind an anthropic resource (read when a call
    fails): its keys and tokens, a Vertex credentials object's token, credential headers
    given as ``default_headers``, and its base URL's userinfo.

    Reads the SDK's privates ``_client`` (a resource's client) and ``_custom_headers``:
    tests/instrument/test_leaks.py fails when a release removes them.
    """
    client = instance._client
    found = client_secrets(client, _KEYS, client._custom_headers)
    token = getattr(getattr(client, "credentials", None), "token", None)
    return found + [token] if isinstance(token, str) and token else found


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    module = "anthropic.resources.messages"
    return [
        (module, "Messages.create", entry_point(_client_info, "chat", CREATE, secrets_of=secrets)),
        (module, "Messages.stream", entry_point(_client_info, "chat", HELPER, secrets_of=secrets)),
    ]
