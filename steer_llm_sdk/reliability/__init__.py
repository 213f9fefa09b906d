"""Reliability: error classification, retries with backoff, and circuit breaking.

Imports only leaf modules (``errors``).
"""

from ..errors import error_category
from .circuit_breaker import CircuitBreaker, CircuitState
from .retry import RetryPolicy


def classify_error(exc: BaseException) -> str:
    """The category of any exception, SDK or foreign (``openai``/``anthropic``/``requests``
    errors by status code and class name); see :mod:`steer_llm_sdk.errors`."""
    return error_category(exc)


__all__ = ["CircuitBreaker", "CircuitState", "RetryPolicy", "classify_error"]
