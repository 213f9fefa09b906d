"""The ``google-genai`` SDK: sync ``models.generate_content`` and
``models.generate_content_stream`` (Gemini API and Vertex AI)."""

from typing import Any, Callable, Dict, List, Tuple

from ._measure import PLAIN, STREAM, endpoint, entry_point


def _client_info(instance: Any) -> Tuple[str, Dict[str, Any]]:
    api = getattr(instance, "_api_client", None)
    provider = "gcp.vertex_ai" if getattr(api, "vertexai", False) else "gcp.gemini"
    options = getattr(api, "_http_options", None)
    base = getattr(options, "base_url", None) or ""
    return provider, endpoint(base, provider)[1]


def _model(kwargs: Any) -> Any:
    model = kwargs.get("model")
    if isinstance(model, str):
        return model.rsplit("/", 1)[-1]  # "models/gemini-2.5-flash" -> "gemini-2.5-flash"
    return None


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    module, op = "google.genai.models", "generate_content"
    return [
        (module, "Models.generate_content", entry_point(_client_info, op, PLAIN, _model)),
        (
            module,
            "Models.generate_content_stream",
            entry_point(_client_info, op, STREAM, _model),
        ),
    ]
