"""Azure OpenAI: the OpenAI chat-completions protocol at a deployment's URL.

``POST {endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...`` (or,
with ``api_version="v1"``, Azure's v1 API at ``{endpoint}/openai/v1/chat/completions``) with
an ``api-key`` header (or ``Authorization: Bearer`` with a Microsoft Entra token). The
``model`` the client is given is the deployment name; the response names the model behind
it. Bodies, streams, errors and content filters are OpenAI's (see :mod:`.openai`).
"""

from typing import Any, Callable, Dict, Optional, TypeVar
from urllib.parse import quote

from ..errors import SteerLLMError
from ..streaming.sse import ServerSentEvent
from . import openai
from .base import Parsed
from .openai import describe_error, request_body

T = TypeVar("T")
NAME = "azure.ai.openai"
STREAM_SHAPE = "chat"
#: No public default: an Azure resource has its own endpoint.
DEFAULT_BASE_URL = ""
DEFAULT_API_VERSION = "2024-10-21"
#: Where the deployment goes in a base URL built by :func:`base_url`.
DEPLOYMENT = "{deployment}"

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "NAME",
    "STREAM_SHAPE",
    "as_azure",
    "base_url",
    "decode_event",
    "describe_error",
    "headers",
    "parse_response",
    "raise_for_chunk",
    "request_body",
    "url",
]


def base_url(endpoint: str, api_version: str = DEFAULT_API_VERSION) -> str:
    """The URL template of a resource: the deployment is filled in per call. With
    ``api_version="v1"``, Azure's v1 API: ``{endpoint}/openai/v1/chat/completions``, the
    deployment named by the body's ``model``, no version parameter."""
    if api_version == "v1":
        return f"{endpoint.rstrip('/')}/openai/v1/chat/completions"
    return (
        f"{endpoint.rstrip('/')}/openai/deployments/{DEPLOYMENT}/chat/completions"
        f"?api-version={quote(api_version)}"
    )


def url(base_url: str, model: str = "") -> str:
    return base_url.replace(DEPLOYMENT, quote(model, safe=""))


def headers(api_key: Optional[str], version: str = "") -> Dict[str, str]:
    """``api-key``, or ``Authorization`` for a key given as ``"Bearer <token>"`` (how the
    transport passes an Entra token from a token provider)."""
    out = openai.headers(None)
    if api_key:
        if api_key.startswith("Bearer "):
            out["Authorization"] = api_key
        else:
            out["api-key"] = api_key
    return out


def as_azure(read: Callable[[Any], T]) -> Callable[[Any], T]:
    """``read`` with the errors it raises naming this provider (OpenAI's readers name
    ``openai``)."""

    def wrapped(value: Any) -> T:
        try:
            return read(value)
        except SteerLLMError as exc:
            exc.provider = NAME
            raise

    wrapped.__doc__ = f"As :func:`.openai.{read.__name__}`; errors name this provider."
    return wrapped


parse_response: Callable[[Any], Parsed] = as_azure(openai.parse_response)
decode_event: Callable[[ServerSentEvent], Any] = as_azure(openai.decode_event)
raise_for_chunk: Callable[[Any], None] = as_azure(openai.raise_for_chunk)
