"""The ``mistralai`` SDK (the ``mistralai.client`` package of its 2.x and later releases):
sync ``chat.complete`` and ``chat.stream``; the async methods are left untouched.

``chat.parse`` and ``chat.parse_stream`` call these on the same resource, so they are
measured through them. ``stream`` returns the SDK's ``EventStream`` of ``CompletionEvent``s
(read by :mod:`...streaming.readers.mistral`); the caller gets it behind a transparent
proxy, ``with`` included.
"""

from typing import Any, Callable, Dict, List, Tuple

from ..._secrets import url_secrets
from ._measure import PLAIN, STREAM, endpoint, entry_point


def _server_url(instance: Any) -> Any:
    """The client's server URL: the one it was given (the same object each call, which is
    how :func:`._measure.endpoint` knows it), else its named server's."""
    config = getattr(instance, "sdk_configuration", None)
    url = getattr(config, "server_url", None)
    if url:
        return url
    try:
        return config.get_server_details()[0]  # type: ignore[union-attr]
    except Exception:  # an unknown named server: the SDK itself refuses the call
        return ""


def _client_info(instance: Any) -> Tuple[str, Dict[str, Any]]:
    return endpoint(_server_url(instance), "mistral_ai")


def secrets(instance: Any) -> List[str]:
    """The credentials of a mistralai resource's client (read when a call fails): the API
    key of its ``security`` (sent as ``Authorization: Bearer``) and its server URL's
    userinfo. A ``security`` given as a function is not called: its key is found by
    pattern only.

    Reads only the SDK's public ``sdk_configuration`` (its ``security`` and server):
    tests/instrument/test_instrument_sdks.py fails when a release moves them.
    """
    config = instance.sdk_configuration
    security = config.security
    key = None if callable(security) else getattr(security, "api_key", None)
    found = [key] + list(url_secrets(str(_server_url(instance))))
    return [value for value in found if isinstance(value, str) and value]


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    module = "mistralai.client.chat"
    return [
        (module, "Chat.complete", entry_point(_client_info, "chat", PLAIN, secrets_of=secrets)),
        (module, "Chat.stream", entry_point(_client_info, "chat", STREAM, secrets_of=secrets)),
    ]
