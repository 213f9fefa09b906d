"""The ``anthropic`` SDK (also ``AnthropicBedrock`` and ``AnthropicVertex``): sync
``messages.create`` (streamed or not) and the ``messages.stream`` helper."""

from typing import Any, Callable, Dict, List, Tuple

from ._measure import CREATE, HELPER, entry_point, provider_of, server_attributes

FAMILY = "anthropic"
_BY_CLASS = {"AnthropicBedrock": "aws.bedrock", "AnthropicVertex": "gcp.vertex_ai"}


def _client_info(instance: Any) -> Tuple[str, Dict[str, Any]]:
    client = getattr(instance, "_client", None)
    base = getattr(client, "base_url", "")
    provider = _BY_CLASS.get(type(client).__name__) or provider_of(base, "anthropic")
    return provider, server_attributes(base)


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    module = "anthropic.resources.messages"
    return [
        (module, "Messages.create", entry_point(_client_info, FAMILY, "chat", CREATE)),
        (module, "Messages.stream", entry_point(_client_info, FAMILY, "chat", HELPER)),
    ]
