"""steer_llm_sdk: metrics for every LLM call in synchronous, thread-per-request Python.

``SteerLLMClient`` speaks the OpenAI and Anthropic wire protocols and measures itself; the
metrics API (usable around any SDK) lives in :mod:`steer_llm_sdk.observability`; errors in
:mod:`steer_llm_sdk.errors`; test helpers in :mod:`steer_llm_sdk.testing`.

The public names are loaded on first use: importing the package (as importing
``steer_llm_sdk.observability`` does) loads neither the client nor ``requests``.
"""

import typing

from ._lazy import lazy_names as _lazy_names

if typing.TYPE_CHECKING:
    from .client import SteerLLMClient, TextStream
    from .types import GenerationResponse, StreamingResponseWithUsage, Usage

__version__ = "0.1.0.dev0"

__all__ = [
    "GenerationResponse",
    "SteerLLMClient",
    "StreamingResponseWithUsage",
    "TextStream",
    "Usage",
    "__version__",
]

#: Each public name -> the submodule defining it.
_LAZY = {
    "GenerationResponse": "types",
    "SteerLLMClient": "client",
    "StreamingResponseWithUsage": "types",
    "TextStream": "client",
    "Usage": "types",
}

#: Submodules reachable as attributes of the package without importing them first, as when
#: the package imported the client (and with it these) eagerly.
_SUBMODULES = frozenset(
    {
        "_secrets",
        "client",
        "errors",
        "observability",
        "pricing",
        "providers",
        "reliability",
        "streaming",
        "types",
    }
)


# What dir() leaves out: this module's own machinery, not the package's.
_HIDDEN = frozenset(
    {"typing", "_lazy_names", "_lazy", "_LAZY", "_SUBMODULES", "_HIDDEN", "__getattr__", "__dir__"}
)
__getattr__, __dir__ = _lazy_names(__name__, globals(), _LAZY, _SUBMODULES, _HIDDEN)
