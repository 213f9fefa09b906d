"""The ``anthropic`` SDK (also ``AnthropicBedrock`` and ``AnthropicVertex``): sync
``messages.create`` (streamed or not) and the ``messages.stream`` helper."""

from typing import Any, Callable, Dict, List, Tuple

from ._measure import CREATE, HELPER, base_url_of, endpoint, entry_point

_BY_CLASS = {"AnthropicBedrock": "aws.bedrock", "AnthropicVertex": "gcp.vertex_ai"}


def _client_info(instance: Any) -> Tuple[str, Dict[str, Any]]:
    client = getattr(instance, "_client", None)
    base = base_url_of(client)
    provider, attributes = endpoint(base, "anthropic")
    return _BY_CLASS.get(type(client).__name__) or provider, attributes


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    module = "anthropic.resources.messages"
    return [
        (module, "Messages.create", entry_point(_client_info, "chat", CREATE)),
        (module, "Messages.stream", entry_point(_client_info, "chat", HELPER)),
    ]
