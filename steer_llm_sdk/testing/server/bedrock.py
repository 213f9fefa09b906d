"""Bedrock's Converse paths: answered with scripted error statuses only, in Bedrock's error
shape (the error's name in a header), so that instrumented ``boto3`` calls can be made to
fail."""

from typing import Any, Dict, Tuple

#: The ends of the Converse paths (``/model/<model>/converse``).
PATHS = ("/converse", "/converse-stream")

_ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    422: "ValidationException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def error_body(status: int, message: str, kind: str) -> Tuple[Dict[str, Any], Dict[str, str]]:
    errortype = _ERRORS.get(status, "InternalServerException")
    return {"message": message}, {"x-amzn-errortype": errortype}
