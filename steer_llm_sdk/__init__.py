"""steer_llm_sdk: metrics for every LLM call in synchronous, thread-per-request Python.

The metrics API lives in :mod:`steer_llm_sdk.observability`; errors in
:mod:`steer_llm_sdk.errors`.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
