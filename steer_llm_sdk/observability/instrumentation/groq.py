"""The ``groq`` SDK: sync ``chat.completions.create``, streamed or not; the async client is
left untouched.

Its clients, resources and streams are built like the openai SDK's, and its chunks are
OpenAI-shaped (a stream's usage comes in ``x_groq.usage`` of its last chunk).
"""

from typing import Any, Callable, Dict, List, Tuple

from ._measure import CREATE, base_url_of, client_secrets, endpoint, entry_point


def _client_info(instance: Any) -> Tuple[str, Dict[str, Any]]:
    return endpoint(base_url_of(getattr(instance, "_client", None)), "groq")


def secrets(instance: Any) -> List[str]:
    """The credentials of the client behind a groq resource (read when a call fails): its
    key (sent as ``Authorization: Bearer``), credential headers given as
    ``default_headers``, and its base URL's userinfo.

    Reads the SDK's privates ``_client`` (a resource's client) and ``_custom_headers``:
    tests/instrument/test_instrument_sdks.py fails when a release removes them.
    """
    client = instance._client
    return client_secrets(client, ("api_key",), client._custom_headers)


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    return [
        (
            "groq.resources.chat.completions",
            "Completions.create",
            entry_point(_client_info, "chat", CREATE, secrets_of=secrets),
        )
    ]
