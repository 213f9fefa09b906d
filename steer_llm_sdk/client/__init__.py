"""The client: :class:`SteerLLMClient` and what it returns."""

from .core import SteerLLMClient
from .routing import normalize_messages, route
from .streams import TextStream

__all__ = ["SteerLLMClient", "TextStream", "normalize_messages", "route"]
