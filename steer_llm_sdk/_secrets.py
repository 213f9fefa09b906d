"""Redaction of credentials from text that may reach metrics, logs or exception messages.

Provider error bodies and exception strings sometimes echo the key that was sent
("Incorrect API key provided: sk-..."). Everything the SDK stores or prints from foreign text
goes through :func:`redact` first. The patterns are deliberately broad: a false positive
costs a few characters of a message, a false negative leaks a credential.
"""

import re
from typing import Iterable

REDACTED = "[REDACTED]"

_PATTERNS = re.compile(
    r"""
    (?:sk|rk|pk)-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{8,}  # OpenAI / Anthropic style
    | (?i:bearer)\s+[A-Za-z0-9._~+/\-]{8,}=*                          # Authorization headers
    | (?i:(?:api[_-]?key|x-api-key|access[_-]?token|secret)["']?\s*[:=]\s*["']?)
      [A-Za-z0-9._~+/\-]{8,}                                          # key=value forms
    | (?i:[?&;](?:key|api-key|api_key|apikey|token|access_token|auth|sig|signature|
      password|passwd|secret|client_secret|code|x-goog-api-key)=)[^&#\s'"]+  # URL query
    """,
    re.VERBOSE,
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with credentials replaced by ``[REDACTED]``.

    Args:
        text: any string (an exception message, a response body).
        secrets: literal values to remove as well (the keys a client was configured with),
            even when they do not look like a known key format.

    Returns:
        The redacted string. Never raises for ``str`` input.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return _PATTERNS.sub(_replace, text)


def _replace(match: "re.Match[str]") -> str:
    value = match.group(0)
    # Keep the "api_key=" / "Bearer " / "?key=" prefix so the message still says what was
    # wrong.
    for sep in ("=", ":", " "):
        head, found, _ = value.partition(sep)
        if found and head and not head.startswith(("sk-", "rk-", "pk-")):
            return head + found + REDACTED
    return REDACTED


def mask_key(key: "str | None") -> str:
    """Say whether a key is set without showing any of it: ``'<set>'`` or ``'<unset>'``."""
    return "<set>" if key else "<unset>"
