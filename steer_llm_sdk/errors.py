"""The SDK's one error tree.

::

    SteerLLMError                     root: catch this to catch everything the SDK raises
    ├── ProviderError                 a provider call failed
    │   ├── RateLimitError            429                        rate_limit       retryable
    │   ├── AuthenticationError       401, 403                   authentication
    │   ├── InvalidRequestError       400, 404, 409, 413, 422    invalid_request
    │   ├── ContentFilterError        refused by content policy  content_filter
    │   ├── ServerError               5xx, 529 (overloaded)      server_error     retryable
    │   ├── ProviderTimeoutError      connect or read timeout    timeout          retryable
    │   ├── ProviderConnectionError   refused, reset, DNS        connection       retryable
    │   └── StreamError               stream broken or malformed connection       retryable*
    └── CircuitOpenError              rejected without a call    circuit_open

    * a stream is retried only while no chunk has reached the caller.

Every error carries ``category``, ``status_code``, ``retryable``, ``provider`` and
``request_id``. Messages and reprs are passed through :func:`steer_llm_sdk._secrets.redact`,
so no API key appears in them.

:func:`error_category` classifies *any* exception, including foreign ones (the ``openai`` and
``anthropic`` packages, ``requests``, builtins), by class name and status code, without
importing those packages. It lives here, in a leaf module, so that the observability layer can
categorise errors without depending on the reliability layer.
"""

from typing import Any, Dict, Optional, Tuple, Type

from ._secrets import redact

RATE_LIMIT = "rate_limit"
AUTHENTICATION = "authentication"
INVALID_REQUEST = "invalid_request"
SERVER_ERROR = "server_error"
TIMEOUT = "timeout"
CONNECTION = "connection"
CONTENT_FILTER = "content_filter"
CIRCUIT_OPEN = "circuit_open"
UNKNOWN = "unknown"

CATEGORIES = (
    RATE_LIMIT,
    AUTHENTICATION,
    INVALID_REQUEST,
    SERVER_ERROR,
    TIMEOUT,
    CONNECTION,
    CONTENT_FILTER,
    CIRCUIT_OPEN,
    UNKNOWN,
)

#: Categories worth retrying: the same request may succeed later.
RETRYABLE_CATEGORIES = frozenset({RATE_LIMIT, SERVER_ERROR, TIMEOUT, CONNECTION})


class SteerLLMError(Exception):
    """Root of every error the SDK raises.

    Attributes:
        category: one of :data:`CATEGORIES`.
        status_code: the HTTP status, when there was a response.
        retryable: whether retrying the same request may succeed.
        provider: ``"openai"``, ``"anthropic"``, ... or None.
        request_id: the provider's request id, when it sent one.
    """

    category = UNKNOWN
    retryable = False

    def __init__(
        self,
        message: str = "",
        *,
        status_code: Optional[int] = None,
        provider: Optional[str] = None,
        request_id: Optional[str] = None,
        retryable: Optional[bool] = None,
        category: Optional[str] = None,
    ) -> None:
        self.message = redact(str(message))
        super().__init__(self.message)
        self.status_code = status_code
        self.provider = provider
        self.request_id = request_id
        if retryable is not None:
            self.retryable = retryable
        if category is not None:
            self.category = category

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, category={self.category!r}, "
            f"status_code={self.status_code!r}, provider={self.provider!r})"
        )


class ProviderError(SteerLLMError):
    """A call to a provider failed."""


class RateLimitError(ProviderError):
    """429: slow down. ``retry_after`` holds the provider's hint in seconds, if it sent one."""

    category = RATE_LIMIT
    retryable = True

    def __init__(self, message: str = "", *, retry_after: Optional[float] = None, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class AuthenticationError(ProviderError):
    """401/403: the key is missing, wrong or lacks permission. Never retried."""

    category = AUTHENTICATION


class InvalidRequestError(ProviderError):
    """The request itself is wrong (bad parameters, unknown model). Never retried."""

    category = INVALID_REQUEST


class ContentFilterError(ProviderError):
    """The provider refused the content: the prompt, or the answer it withheld or cut short
    (OpenAI's and Azure's content filters, Anthropic's ``stop_reason: "refusal"``). Never
    retried.

    Attributes:
        filter_results: what the provider said of its filters (Azure OpenAI's
            ``content_filter_results``/``prompt_filter_results``, Anthropic's
            ``stop_details``), {} when it said nothing.
        text: the answer's text up to where it was stopped, "" when none came.
        usage: the token counts the provider reported, and billed, for the refused call
            (a ``TokenUsage``, as the call's records hold them), or None when it reported
            none.
    """

    category = CONTENT_FILTER

    def __init__(
        self,
        message: str = "",
        *,
        filter_results: Optional[Dict[str, Any]] = None,
        text: str = "",
        usage: Any = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.filter_results: Dict[str, Any] = dict(filter_results or {})
        self.text = text
        self.usage = usage


class ServerError(ProviderError):
    """5xx or 529 (overloaded): the provider failed; worth retrying."""

    category = SERVER_ERROR
    retryable = True

    def __init__(self, message: str = "", *, retry_after: Optional[float] = None, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ProviderTimeoutError(ProviderError):
    """Connecting or reading timed out."""

    category = TIMEOUT
    retryable = True


class ProviderConnectionError(ProviderError):
    """The connection could not be made or was lost."""

    category = CONNECTION
    retryable = True


class StreamError(ProviderError):
    """A stream broke off or carried data that could not be decoded."""

    category = CONNECTION
    retryable = True


class CircuitOpenError(SteerLLMError):
    """The circuit breaker for this provider and model is open: rejected without a call."""

    category = CIRCUIT_OPEN


_STATUS_CLASSES: Dict[int, Type[ProviderError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: InvalidRequestError,
    409: InvalidRequestError,
    413: InvalidRequestError,
    422: InvalidRequestError,
    429: RateLimitError,
}


def error_class_for_status(status: int) -> Type[ProviderError]:
    """Map an HTTP error status to the error class raised for it.

    408 is a timeout; any other 4xx not listed is an invalid request; 5xx and 529 are
    server errors; anything else is a plain :class:`ProviderError`.
    """
    if status in _STATUS_CLASSES:
        return _STATUS_CLASSES[status]
    if status == 408:
        return ProviderTimeoutError
    if status >= 500:
        return ServerError
    if 400 <= status < 500:
        return InvalidRequestError
    return ProviderError


# Foreign exception class names (openai, anthropic, requests, urllib3, httpx, builtins),
# matched against every class in the exception's MRO. Order matters: the first hit wins, and
# ConnectTimeout is both a timeout and a connection error.
_NAME_CATEGORIES: Tuple[Tuple[str, str], ...] = (
    ("RateLimitError", RATE_LIMIT),
    ("AuthenticationError", AUTHENTICATION),
    ("PermissionDeniedError", AUTHENTICATION),
    ("ContentFilterError", CONTENT_FILTER),
    ("ContentPolicyViolationError", CONTENT_FILTER),
    ("BadRequestError", INVALID_REQUEST),
    ("NotFoundError", INVALID_REQUEST),
    ("UnprocessableEntityError", INVALID_REQUEST),
    ("ConflictError", INVALID_REQUEST),
    ("InvalidRequestError", INVALID_REQUEST),
    ("OverloadedError", SERVER_ERROR),
    ("InternalServerError", SERVER_ERROR),
    ("ServiceUnavailableError", SERVER_ERROR),
    ("APITimeoutError", TIMEOUT),
    ("ConnectTimeout", TIMEOUT),
    ("ReadTimeout", TIMEOUT),
    ("Timeout", TIMEOUT),
    ("TimeoutException", TIMEOUT),
    ("TimeoutError", TIMEOUT),
    ("APIConnectionError", CONNECTION),
    ("ChunkedEncodingError", CONNECTION),
    ("ConnectionError", CONNECTION),
    ("ProtocolError", CONNECTION),
    ("RemoteProtocolError", CONNECTION),
)
_NAME_MAP = dict(_NAME_CATEGORIES)
_NAME_RANK = {name: rank for rank, (name, _) in enumerate(_NAME_CATEGORIES)}


def status_code_of(exc: BaseException) -> Optional[int]:
    """The HTTP status an exception carries (``status_code``, ``status``, ``response``: an
    HTTP response object, or botocore's response dict with ``ResponseMetadata``)."""
    for attr in ("status_code", "http_status", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore's ClientError
        metadata = response.get("ResponseMetadata")
        value = metadata.get("HTTPStatusCode") if isinstance(metadata, dict) else None
    else:
        value = getattr(response, "status_code", None)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def category_for_status(status: int) -> str:
    """The category of an HTTP error status."""
    return error_class_for_status(status).category


def error_category(exc: BaseException) -> str:
    """Classify any exception into one of :data:`CATEGORIES`.

    SDK errors carry their category. Foreign errors are classified by the names of the
    classes in their MRO (``openai.RateLimitError``, ``requests.ReadTimeout``, ...), then by
    the HTTP status they carry. Never raises.
    """
    if isinstance(exc, SteerLLMError):
        return exc.category
    try:
        hits = [cls.__name__ for cls in type(exc).__mro__ if cls.__name__ in _NAME_MAP]
        if hits:
            return _NAME_MAP[min(hits, key=_NAME_RANK.__getitem__)]
        status = status_code_of(exc)
        if status is not None and status >= 400:
            return category_for_status(status)
    except Exception:  # a hostile __mro__ or property must not break classification
        pass
    return UNKNOWN


def is_retryable(exc: BaseException) -> bool:
    """Whether retrying the request that raised ``exc`` may succeed."""
    if isinstance(exc, SteerLLMError):
        return bool(exc.retryable)
    return error_category(exc) in RETRYABLE_CATEGORIES
