"""The ``litellm`` library: sync ``litellm.completion`` (streamed or not) and
``litellm.embedding``; the async functions are left untouched.

Both are functions of the ``litellm`` package (re-exported from ``litellm.main``), patched
there: a ``from litellm import completion`` made after the patch (as the post-import hook
patches it, when the application imports LiteLLM) gets the measured function; one made
before keeps LiteLLM's own. Each call records the provider LiteLLM routes it to
(``litellm.get_llm_provider``), named as the GenAI conventions name it (:data:`PROVIDERS`;
a provider they do not name keeps LiteLLM's name), and the model sent to it. A stream (the
``CustomStreamWrapper`` of ``stream=True``) comes back behind a transparent proxy; its
usage is what LiteLLM hands out, in its last chunk when asked with
``stream_options={"include_usage": True}``.

LiteLLM calls the official openai SDK for some providers (Azure, OpenAI's embeddings and
text completions); with that SDK instrumented too, those calls join LiteLLM's call, which
is recorded once, with the usage the server reported.
"""

from typing import Any, Callable, Dict, List, Optional, Tuple

from ..._secrets import url_secrets
from ..measure.sdk import measure
from ._measure import endpoint, target

#: LiteLLM's provider names -> the GenAI ``gen_ai.provider.name`` values; any other keeps
#: LiteLLM's name.
PROVIDERS: Dict[str, str] = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "azure": "azure.ai.openai",
    "azure_text": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "anthropic": "anthropic",
    "anthropic_text": "anthropic",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "groq": "groq",
    "mistral": "mistral_ai",
    "codestral": "mistral_ai",
    "text-completion-codestral": "mistral_ai",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "perplexity": "perplexity",
    "openrouter": "openrouter",
    "watsonx": "ibm.watsonx.ai",
    "watsonx_text": "ibm.watsonx.ai",
}

#: The provider recorded for a model LiteLLM cannot route (the call itself then fails).
UNROUTED = "litellm"

#: (model, custom_llm_provider, api_base) -> (provider, model sent, server attributes).
_ROUTES: Dict[Tuple[Any, Any, Any], Tuple[str, Any, Dict[str, Any]]] = {}
_ROUTES_MAX = 256


def _routed(model: Any, custom: Any, base: Any) -> Tuple[str, Any, Dict[str, Any]]:
    """Where LiteLLM sends ``model``: (GenAI provider, the model name it sends, server
    attributes of the API base when one is known). A host the conventions know names the
    provider, as for the SDKs (``openai/...`` sent to api.groq.com is Groq)."""
    import litellm  # imported already: its functions are what is patched

    try:
        sent, provider, _, routed_base = litellm.get_llm_provider(
            model=model, custom_llm_provider=custom, api_base=base
        )
    except Exception:  # LiteLLM cannot route it: the call fails the same way
        return UNROUTED, model, {}
    name = PROVIDERS.get(provider, provider) if isinstance(provider, str) else UNROUTED
    base = base or routed_base
    if not base:
        return name, sent, {}
    name, attributes = endpoint(base, name)
    return name, sent, attributes


def route(model: Any, kwargs: Dict[str, Any]) -> Tuple[str, Any, Dict[str, Any]]:
    """:func:`_routed` for a call's ``model`` and keyword arguments (``custom_llm_provider``,
    ``api_base`` or its alias ``base_url``), remembered per (model, provider, base): routing
    walks LiteLLM's provider tables, and an application calls few models. Thread-safe."""
    key = (
        model,
        kwargs.get("custom_llm_provider"),
        kwargs.get("api_base") or kwargs.get("base_url"),
    )
    try:
        found = _ROUTES.get(key)
    except TypeError:  # an unhashable argument: LiteLLM will refuse it
        return _routed(*key)
    if found is None:
        found = _routed(*key)
        if len(_ROUTES) < _ROUTES_MAX:  # past it, each call is routed anew
            _ROUTES[key] = found
    return found


#: Keyword arguments of a LiteLLM call that hold credentials.
_KEYS = (
    "api_key",
    "azure_ad_token",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "vertex_credentials",
)


def secrets(kwargs: Dict[str, Any]) -> List[str]:
    """The credentials of a LiteLLM call (read when it fails): those given as keyword
    arguments (:data:`_KEYS`), the key LiteLLM's routing finds for its provider (from the
    environment, for OpenAI-compatible providers), and its API base's userinfo."""
    found = [kwargs.get(name) for name in _KEYS]
    base = kwargs.get("api_base") or kwargs.get("base_url")
    model: Any = kwargs.get("model")
    try:
        import litellm

        routed = litellm.get_llm_provider(
            model=model, custom_llm_provider=kwargs.get("custom_llm_provider"), api_base=base
        )
        found.append(routed[2])
        base = base or routed[3]
    except Exception:  # not routable: nothing more to find
        pass
    found.extend(url_secrets(base or ""))
    return [value for value in found if isinstance(value, str) and value]


def _stream(result: Any, wrap: Callable[[Any], Any]) -> Any:
    return wrap(result)


def _call(operation: str) -> Callable[..., Any]:
    """The wrapper of a LiteLLM function whose calls are ``operation``: the model is its
    first argument (positional or ``model=``); ``stream=True`` makes it a stream."""

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        model = args[0] if args else kwargs.get("model")
        provider, sent, attributes = route(model, kwargs)
        request = kwargs if not args else {**kwargs, "model": model}
        stream: Optional[Callable[..., Any]] = _stream if kwargs.get("stream") is True else None
        return measure(
            target(),
            wrapped,
            provider,
            operation,
            sent,
            attributes,
            stream,
            (secrets, request, request),
            args,
            kwargs,
        )

    return wrapper


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    return [
        ("litellm", "completion", _call("chat")),
        ("litellm", "embedding", _call("embeddings")),
    ]
