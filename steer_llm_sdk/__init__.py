"""steer_llm_sdk: metrics for every LLM call in synchronous, thread-per-request Python.

``SteerLLMClient`` speaks the OpenAI and Anthropic wire protocols and measures itself; the
metrics API (usable around any SDK) lives in :mod:`steer_llm_sdk.observability`; errors in
:mod:`steer_llm_sdk.errors`; test helpers in :mod:`steer_llm_sdk.testing`.
"""

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
