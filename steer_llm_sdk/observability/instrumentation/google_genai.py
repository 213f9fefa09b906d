"""The ``google-genai`` SDK: sync ``models.generate_content`` and
``models.generate_content_stream`` (Gemini API and Vertex AI)."""

from typing import Any, Callable, List, Tuple

from ._measure import measure, server_attributes

FAMILY = "gemini"


def _client_info(instance: Any) -> Tuple[str, dict]:
    api = getattr(instance, "_api_client", None)
    provider = "gcp.vertex_ai" if getattr(api, "vertexai", False) else "gcp.gemini"
    options = getattr(api, "_http_options", None)
    base = getattr(options, "base_url", None) or ""
    return provider, server_attributes(base)


def _model(args: Any, kwargs: Any) -> Any:
    model = kwargs.get("model")
    if isinstance(model, str):
        return model.rsplit("/", 1)[-1]  # "models/gemini-2.5-flash" -> "gemini-2.5-flash"
    return None


def _wrapper(streamed: bool) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        provider, attributes = _client_info(instance)
        stream: Any = (lambda result, wrap: wrap(result)) if streamed else None
        return measure(
            lambda: wrapped(*args, **kwargs),
            provider,
            FAMILY,
            "generate_content",
            _model(args, kwargs),
            attributes,
            stream,
        )

    return wrapper


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    return [
        ("google.genai.models", "Models.generate_content", _wrapper(False)),
        ("google.genai.models", "Models.generate_content_stream", _wrapper(True)),
    ]
