"""Test helpers shipped to users: a local LLM server speaking both wire protocols, a real
OTLP metrics receiver, and a capture of metric records.

``LocalLLMServer`` runs a real HTTP server on 127.0.0.1; ``capture_metrics`` collects every
record a block of code produces. Names load on first use, so that
``python -m steer_llm_sdk.testing.server`` runs the server module only once.
"""

import importlib
from typing import Any

_EXPORTS = {
    "OTLPReceiver": "otlp",
    "Fault": "server",
    "LocalLLMServer": "server",
    "RecordedRequest": "server",
    "capture_metrics": "capture",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> Any:
    return sorted(list(globals()) + __all__)
