"""steer_llm_sdk: metrics for every LLM call in synchronous, thread-per-request Python.

``SteerLLMClient`` speaks the OpenAI and Anthropic wire protocols and measures itself; the
metrics API (usable around any SDK) lives in :mod:`steer_llm_sdk.observability`; errors in
:mod:`steer_llm_sdk.errors`; test helpers in :mod:`steer_llm_sdk.testing`.

The public names are loaded on first use: importing the package (as importing
``steer_llm_sdk.observability`` does) loads neither the client nor ``requests``.
"""

import importlib
import typing

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


def __getattr__(name: str) -> typing.Any:
    """A public name or submodule, imported on first access and kept in the package."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> typing.List[str]:
    return sorted((set(globals()) - _HIDDEN) | set(_LAZY) | _SUBMODULES)


# What dir() leaves out: this module's own machinery, not the package's.
_HIDDEN = frozenset(
    {"importlib", "typing", "_LAZY", "_SUBMODULES", "_HIDDEN", "__getattr__", "__dir__"}
)
