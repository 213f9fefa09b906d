"""The ``openai`` SDK (also ``AzureOpenAI`` and OpenAI-compatible base URLs): sync entry
points only; the async clients are left untouched."""

from typing import Any, Callable, Dict, List, Tuple

from ._measure import CREATE, HELPER, PLAIN, base_url_of, endpoint, entry_point


def _client_info(instance: Any) -> Tuple[str, Dict[str, Any]]:
    client = getattr(instance, "_client", None)
    base = base_url_of(client)
    default = "azure.ai.openai" if type(client).__name__ == "AzureOpenAI" else "openai"
    return endpoint(base, default)


#: (module, attribute path, operation, mode)
TARGETS: List[Tuple[str, str, str, str]] = [
    ("openai.resources.chat.completions", "Completions.create", "chat", CREATE),
    ("openai.resources.chat.completions", "Completions.parse", "chat", PLAIN),
    ("openai.resources.chat.completions", "Completions.stream", "chat", HELPER),
    ("openai.resources.responses", "Responses.create", "chat", CREATE),
    ("openai.resources.responses", "Responses.parse", "chat", PLAIN),
    ("openai.resources.responses", "Responses.stream", "chat", HELPER),
    ("openai.resources.completions", "Completions.create", "text_completion", CREATE),
    ("openai.resources.embeddings", "Embeddings.create", "embeddings", PLAIN),
]


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    return [
        (module, path, entry_point(_client_info, operation, mode))
        for module, path, operation, mode in TARGETS
    ]
