"""The ``openai`` SDK (also ``AzureOpenAI`` and OpenAI-compatible base URLs): sync entry
points only; the async clients are left untouched."""

from typing import Any, Callable, List, Tuple

from ._measure import measure, measure_helper, provider_of, server_attributes

FAMILY = "openai"


def _client_info(instance: Any) -> Tuple[str, dict]:
    client = getattr(instance, "_client", None)
    base = getattr(client, "base_url", "")
    default = "azure.ai.openai" if type(client).__name__ == "AzureOpenAI" else "openai"
    return provider_of(base, default), server_attributes(base)


def _streamed(result: Any, wrap: Callable[[Any], Any]) -> Any:
    return wrap(result)


def _wrapper(operation: str, mode: str) -> Callable[..., Any]:
    """mode: ``create`` (streams when ``stream=True``), ``plain`` (never streams) or
    ``helper`` (returns a stream helper's context manager)."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        provider, attributes = _client_info(instance)
        if mode == "helper":
            stream: Any = measure_helper
        elif mode == "create" and kwargs.get("stream") is True:
            stream = _streamed
        else:
            stream = None
        return measure(
            lambda: wrapped(*args, **kwargs),
            provider,
            FAMILY,
            operation,
            kwargs.get("model"),
            attributes,
            stream,
        )

    return wrapper


#: (module, attribute path, operation, mode)
TARGETS: List[Tuple[str, str, str, str]] = [
    ("openai.resources.chat.completions", "Completions.create", "chat", "create"),
    ("openai.resources.chat.completions", "Completions.parse", "chat", "plain"),
    ("openai.resources.chat.completions", "Completions.stream", "chat", "helper"),
    ("openai.resources.responses", "Responses.create", "chat", "create"),
    ("openai.resources.responses", "Responses.parse", "chat", "plain"),
    ("openai.resources.responses", "Responses.stream", "chat", "helper"),
    ("openai.resources.completions", "Completions.create", "text_completion", "create"),
    ("openai.resources.embeddings", "Embeddings.create", "embeddings", "plain"),
]


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    return [(module, path, _wrapper(op, mode)) for module, path, op, mode in TARGETS]
