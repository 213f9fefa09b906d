"""Error answers: the kind and default message of each status, the ``Retry-After`` header,
and the body in the shape of the protocol asked (each protocol module has its shape)."""

from typing import Any, Callable, Dict, Optional, Tuple

from .wire import Writer

#: (status, message, error kind) -> (body, headers beside the usual ones)
ErrorShape = Callable[[int, str, str], Tuple[Dict[str, Any], Dict[str, str]]]

_STATUS_ERRORS = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "Invalid API key"),
    403: ("permission_error", "Permission denied"),
    404: ("not_found_error", "Not found"),
    429: ("rate_limit_error", "Rate limit reached"),
    500: ("api_error", "Internal server error"),
    502: ("api_error", "Bad gateway"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}


def _described(status: int) -> Tuple[str, str]:
    """(error kind, default message) of a status."""
    return _STATUS_ERRORS.get(status, ("api_error", "Error"))


def default_message(status: int) -> str:
    return _described(status)[1]


def send_error(
    writer: Writer,
    shape: ErrorShape,
    status: int,
    message: Optional[str] = None,
    retry_after: Optional[float] = None,
    extra: Optional[Dict[str, Any]] = None,
) -> None:
    """Answer with ``status``: ``message`` (else the status's default) in ``shape``, with
    ``extra`` beside it in the body."""
    kind, default = _described(status)
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
    payload, more = shape(status, message or default, kind)
    writer.write_json(status, {**payload, **(extra or {})}, {**headers, **more})
