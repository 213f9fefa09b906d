"""Wire protocols, one module each, and the HTTP boundary they share (:mod:`.http`, the
package's HTTP interface).

Each protocol module implements :class:`~.base.WireProtocol` (mypy checks it through the
:data:`PROTOCOLS` table below).
"""

from typing import Dict

from . import anthropic, azure_openai, azure_openai_responses, openai, openai_responses
from .base import END, SKIP, WireProtocol

PROTOCOLS: Dict[str, WireProtocol] = {
    openai.NAME: openai,
    anthropic.NAME: anthropic,
    azure_openai.NAME: azure_openai,
}
#: The wire protocols ``SteerLLMClient(openai_api=...)`` chooses between for ``openai``.
OPENAI_APIS: Dict[str, WireProtocol] = {
    "chat_completions": openai,
    "responses": openai_responses,
}
#: Names accepted for a provider besides its own (``"azure:my-deployment"``).
ALIASES = {"azure": azure_openai.NAME, "azure_openai": azure_openai.NAME}

__all__ = [
    "ALIASES",
    "END",
    "OPENAI_APIS",
    "PROTOCOLS",
    "SKIP",
    "WireProtocol",
    "anthropic",
    "azure_openai",
    "azure_openai_responses",
    "openai",
    "openai_responses",
]
