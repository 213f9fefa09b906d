"""The ``google-genai`` SDK: sync ``models.generate_content`` and
``models.generate_content_stream`` (Gemini API and Vertex AI)."""

from typing import Any, Callable, Dict, List, Tuple

from ..._secrets import url_secrets
from ._measure import PLAIN, STREAM, client_secrets, endpoint, entry_point


def _client_info(instance: Any) -> Tuple[str, Dict[str, Any]]:
    api = getattr(instance, "_api_client", None)
    provider = "gcp.vertex_ai" if getattr(api, "vertexai", False) else "gcp.gemini"
    options = getattr(api, "_http_options", None)
    base = getattr(options, "base_url", None) or ""
    return provider, endpoint(base, provider)[1]


def secrets(instance: Any) -> List[str]:
    """The credentials of the client behind ``client.models`` (read when a call fails):
    its API key (sent as ``x-goog-api-key``), the OAuth token of its Google credentials
    (Vertex AI), and credential headers and userinfo of its HTTP options.

    Reads the SDK's privates ``_api_client``, its ``_credentials`` and ``_http_options``:
    tests/instrument/test_leaks.py fails when a release removes them.
    """
    api = instance._api_client
    options = api._http_options
    found = client_secrets(api, ("api_key",), options.headers)
    token = getattr(api._credentials, "token", None)
    if isinstance(token, str) and token:
        found.append(token)
    return found + list(url_secrets(options.base_url or ""))


def _model(kwargs: Any) -> Any:
    model = kwargs.get("model")
    if isinstance(model, str):
        return model.rsplit("/", 1)[-1]  # "models/gemini-2.5-flash" -> "gemini-2.5-flash"
    return None


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    module, op = "google.genai.models", "generate_content"
    return [
        (module, "Models.generate_content", entry_point(_client_info, op, PLAIN, _model, secrets)),
        (
            module,
            "Models.generate_content_stream",
            entry_point(_client_info, op, STREAM, _model, secrets),
        ),
    ]
