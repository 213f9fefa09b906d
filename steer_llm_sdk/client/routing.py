"""Which provider serves a model, and the request pieces every call shares."""

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

from ..errors import InvalidRequestError
from ..providers import ALIASES, PROTOCOLS, WireProtocol
from ..types import Messages
from .options import CallOptions

_ROUTES: Tuple[Tuple[Tuple[str, ...], str], ...] = (
    (("gpt-", "o1", "o3", "o4", "chatgpt-"), "openai"),
    (("claude-",), "anthropic"),
)


def route(
    model: str, provider: Optional[str] = None, openai_target: str = "openai"
) -> Tuple[str, str]:
    """(provider, model) for a model name: ``gpt-*``, ``o1*``/``o3*``/``o4*``, ``chatgpt-*``
    go to ``openai_target`` (OpenAI, or Azure OpenAI for a client configured only for it),
    ``claude-*`` to Anthropic; ``"provider:model"`` or ``provider=`` override (``azure`` names
    Azure OpenAI, the model then being the deployment).

    Raises:
        InvalidRequestError: the provider cannot be told, or is not supported.
    """
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("model must be a non-empty string")
    if provider is None and ":" in model:
        prefix, rest = model.split(":", 1)
        if prefix in PROTOCOLS or prefix in ALIASES:
            provider, model = prefix, rest
    if provider is None:
        for prefixes, name in _ROUTES:
            if model.startswith(prefixes):
                provider = openai_target if name == "openai" else name
                break
    provider = ALIASES.get(provider, provider) if provider is not None else None
    if provider is None:
        raise InvalidRequestError(
            f"cannot tell the provider of model {model!r}: pass provider='openai' (any "
            "OpenAI-compatible server), 'anthropic' or 'azure', or 'provider:model'"
        )
    if provider not in PROTOCOLS:
        raise InvalidRequestError(f"unknown provider {provider!r}; known: {sorted(PROTOCOLS)}")
    return provider, model


def normalize_messages(messages: Messages) -> List[Dict[str, Any]]:
    """A list of ``{"role", "content"}`` dicts; a string is one user message.

    Raises:
        InvalidRequestError: a message is not a mapping with a role, or there is none.
    """
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    out = []
    for message in messages:
        if not isinstance(message, Mapping) or "role" not in message:
            raise InvalidRequestError("each message must be a mapping with 'role' and 'content'")
        out.append(dict(message))
    if not out:
        raise InvalidRequestError("messages must not be empty")
    return out


class Routed(NamedTuple):
    """One call, routed: its options and what they resolved to.

    Attributes:
        options: what the caller asked for.
        provider: the provider that serves it (a key of the client's protocols).
        model: the model (or Azure deployment) asked of it.
        protocol: the provider's wire protocol.
        messages: the messages as dicts (:func:`normalize_messages`).
        body: the request's JSON body, in the protocol's shape.
    """

    options: CallOptions
    provider: str
    model: str
    protocol: WireProtocol
    messages: List[Dict[str, Any]]
    body: Dict[str, Any]


def route_call(
    options: CallOptions,
    protocols: Mapping[str, WireProtocol],
    openai_target: str,
    stream: bool,
) -> Routed:
    """Route one call (:func:`route`) and build its request body with the protocol.

    Args:
        protocols: the client's wire protocol of each provider.
        openai_target: where ``gpt-*`` models go (see :func:`route`).
        stream: whether the answer is asked for as a stream.

    Raises:
        InvalidRequestError: the provider cannot be told, the messages are malformed, or
            the protocol cannot express them.
    """
    provider, model = route(options.model, options.provider, openai_target)
    messages = normalize_messages(options.messages)
    protocol = protocols[provider]
    body = protocol.request_body(
        messages,
        model,
        max_tokens=options.max_tokens,
        temperature=options.temperature,
        response_format=options.response_format,
        stream=stream,
        params=options.params,
        tools=list(options.tools) if options.tools else None,
        tool_choice=options.tool_choice,
    )
    return Routed(options, provider, model, protocol, messages, body)
