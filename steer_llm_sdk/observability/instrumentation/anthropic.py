"""The ``anthropic`` SDK (also ``AnthropicBedrock`` and ``AnthropicVertex``): sync
``messages.create`` (streamed or not) and the ``messages.stream`` helper."""

from typing import Any, Callable, List, Tuple

from ._measure import measure, measure_helper, provider_of, server_attributes

FAMILY = "anthropic"
_BY_CLASS = {"AnthropicBedrock": "aws.bedrock", "AnthropicVertex": "gcp.vertex_ai"}


def _client_info(instance: Any) -> Tuple[str, dict]:
    client = getattr(instance, "_client", None)
    base = getattr(client, "base_url", "")
    provider = _BY_CLASS.get(type(client).__name__) or provider_of(base, "anthropic")
    return provider, server_attributes(base)


def _wrapper(helper: bool) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        provider, attributes = _client_info(instance)
        if helper:
            stream: Any = measure_helper
        elif kwargs.get("stream") is True:
            stream = lambda result, wrap: wrap(result)  # noqa: E731
        else:
            stream = None
        return measure(
            lambda: wrapped(*args, **kwargs),
            provider,
            FAMILY,
            "chat",
            kwargs.get("model"),
            attributes,
            stream,
        )

    return wrapper


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    return [
        ("anthropic.resources.messages", "Messages.create", _wrapper(False)),
        ("anthropic.resources.messages", "Messages.stream", _wrapper(True)),
    ]
