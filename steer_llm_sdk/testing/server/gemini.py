"""Gemini's generation paths: answered with scripted error statuses only, in Gemini's error
shape (so that instrumented ``google-genai`` calls can be made to fail)."""

from typing import Any, Dict, Tuple

#: The ends of the generation paths (``models/<model>:generateContent``).
PATHS = (":generateContent", ":streamGenerateContent")

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def error_body(status: int, message: str, kind: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
    code = _STATUS.get(status, "UNKNOWN")
    return {"error": {"code": status, "message": message, "status": code}}, {}
