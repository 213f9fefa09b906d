"""What every instrumented entry point shares: the provider and server of a client, and
the wrapper that hands each call to the one measured call (:mod:`..measure.sdk`).
"""

from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from ..._secrets import url_secrets
from ..conventions import server_attributes
from ..measure.sdk import measure, measure_helper
from ..runtime import get_collector

#: The collector instrument() was given (None: the default one at the time of each call).
_target: Dict[str, Any] = {"collector": None}

#: OpenTelemetry GenAI ``gen_ai.provider.name`` values by host suffix.
_HOSTS = (
    ("api.openai.com", "openai"),
    (".openai.azure.com", "azure.ai.openai"),
    (".services.ai.azure.com", "azure.ai.inference"),
    ("api.anthropic.com", "anthropic"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    ("amazonaws.com", "aws.bedrock"),
    ("api.groq.com", "groq"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.deepseek.com", "deepseek"),
    ("api.x.ai", "x_ai"),
    ("api.cohere.com", "cohere"),
    ("api.perplexity.ai", "perplexity"),
    ("openrouter.ai", "openrouter"),
)


def provider_of(url: Any, default: str) -> str:
    """The GenAI provider name for a base URL (``default`` when the host is not known, as
    for a local or self-hosted server speaking the SDK's protocol)."""
    host = urlsplit(str(url)).hostname or ""
    for suffix, name in _HOSTS:
        if host == suffix or host.endswith(suffix):
            return name
    return default


#: (base URL as text, default provider) -> what :func:`endpoint` returns; bounded.
_ENDPOINTS: Dict[Tuple[str, str], Tuple[str, Dict[str, Any]]] = {}
_ENDPOINTS_MAX = 256


def endpoint(url: Any, default: str) -> Tuple[str, Dict[str, Any]]:
    """``(provider_of(url, default), server_attributes(url))``, remembered per URL: parsing
    a URL costs several µs a call, and a client's base URL seldom changes. The attributes
    dict is shared by every call to that URL (records copy it). Thread-safe."""
    key = (str(url), default)
    found = _ENDPOINTS.get(key)
    if found is None:
        found = (provider_of(key[0], default), server_attributes(key[0]))
        if len(_ENDPOINTS) < _ENDPOINTS_MAX:  # past it, a fleet of URLs is parsed each call
            _ENDPOINTS[key] = found
    return found


def base_url_of(client: Any) -> Any:
    """An openai/anthropic client's base URL: the attribute behind the ``base_url``
    property when it is there (the property costs ~1 µs a read; the attribute ~10 ns)."""
    base = getattr(client, "_base_url", None)
    return base if base is not None else getattr(client, "base_url", "")


#: Header names whose values are credentials (lower case).
_AUTH_HEADERS = frozenset(
    {"authorization", "api-key", "x-api-key", "x-goog-api-key", "x-amz-security-token"}
)


def client_secrets(
    client: Any, attributes: Iterable[str], headers: Optional[Mapping[str, Any]] = None
) -> List[str]:
    """The credentials an SDK client holds, for redaction: the string values of its
    ``attributes``, the values of credential ``headers`` (a ``Bearer``/``Basic`` scheme
    dropped), and the userinfo of its base URL. Called on failures only."""
    found = [getattr(client, name, None) for name in attributes]
    for name, value in (headers or {}).items():
        if isinstance(name, str) and name.lower() in _AUTH_HEADERS and isinstance(value, str):
            found.append(value.split(" ", 1)[-1])
    found.extend(url_secrets(base_url_of(client)))
    return [value for value in found if isinstance(value, str) and value]


def target() -> Any:
    """The collector ``instrument()`` was given, or the default one now."""
    return _target["collector"] or get_collector()


#: How an entry point returns: ``plain`` (never a stream), ``create`` (a stream when called
#: with ``stream=True``), ``stream`` (always a stream), ``helper`` (a stream helper's context
#: manager).
PLAIN, CREATE, STREAM, HELPER = "plain", "create", "stream", "helper"


def _whole(result: Any, wrap: Callable[[Any], Any]) -> Any:
    return wrap(result)


def entry_point(
    client_info: Callable[[Any], Tuple[str, Dict[str, Any]]],
    operation: str,
    mode: str,
    model_of: Callable[[Any], Any] = lambda kwargs: kwargs.get("model"),
    secrets_of: Optional[Callable[[Any], Iterable[str]]] = None,
) -> Callable[..., Any]:
    """The ``wrapt`` wrapper of one SDK entry point: each call measured by
    :func:`..measure.sdk.measure`.

    Args:
        client_info: ``(resource instance) -> (provider, server attributes)``.
        operation: ``chat``, ``text_completion``, ``embeddings``, ``generate_content``.
        mode: :data:`PLAIN`, :data:`CREATE`, :data:`STREAM` or :data:`HELPER`.
        model_of: ``(call keyword arguments) -> requested model``.
        secrets_of: ``(resource instance) -> the SDK client's credentials``, called only
            when a call fails, to keep them (and the call's text) out of its error record.
    """

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        provider, attributes = client_info(instance)
        if mode == HELPER:
            stream: Any = measure_helper
        elif mode == STREAM or (mode == CREATE and kwargs.get("stream") is True):
            stream = _whole
        else:
            stream = None
        return measure(
            target(),
            lambda: wrapped(*args, **kwargs),
            provider,
            operation,
            model_of(kwargs),
            attributes,
            stream,
            None if secrets_of is None else (secrets_of, instance, kwargs),
        )

    return wrapper
