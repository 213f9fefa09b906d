"""Wire protocols, one module each, and the HTTP boundary they share.

Each protocol module implements :class:`~.base.WireProtocol` (mypy checks it through the
:data:`PROTOCOLS` table below).
"""

from typing import Dict

from . import anthropic, openai
from .base import END, SKIP, WireProtocol

PROTOCOLS: Dict[str, WireProtocol] = {openai.NAME: openai, anthropic.NAME: anthropic}

__all__ = ["END", "PROTOCOLS", "SKIP", "WireProtocol", "anthropic", "openai"]
