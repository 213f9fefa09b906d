"""Wire protocols, one module each, and the HTTP boundary they share.

A protocol module provides ``NAME``, ``DEFAULT_BASE_URL``, ``url(base)``,
``headers(api_key, version)``, ``request_body(...)``, ``parse_response(data)``,
``describe_error(data)``, ``decode_event(event)`` and ``is_end(chunk)``.
"""

from . import anthropic, openai

PROTOCOLS = {openai.NAME: openai, anthropic.NAME: anthropic}

__all__ = ["PROTOCOLS", "anthropic", "openai"]
