"""Wire protocols, one module each, and the HTTP boundary they share.

Each protocol module implements :class:`~.base.WireProtocol` (mypy checks it through the
:data:`PROTOCOLS` table below).
"""

from typing import Dict

from . import anthropic, azure_openai, openai
from .base import END, SKIP, WireProtocol

PROTOCOLS: Dict[str, WireProtocol] = {
    openai.NAME: openai,
    anthropic.NAME: anthropic,
    azure_openai.NAME: azure_openai,
}
#: Names accepted for a provider besides its own (``"azure:my-deployment"``).
ALIASES = {"azure": azure_openai.NAME, "azure_openai": azure_openai.NAME}

__all__ = [
    "ALIASES",
    "END",
    "PROTOCOLS",
    "SKIP",
    "WireProtocol",
    "anthropic",
    "azure_openai",
    "openai",
]
