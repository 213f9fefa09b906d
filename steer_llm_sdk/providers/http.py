"""The providers package's HTTP interface: what the client needs to speak HTTP with a
provider, whatever its wire protocol. The client imports these names from here; the
protocol modules beside it never send anything themselves.

The contract:

* :func:`translate_requests_error`: every ``requests`` exception becomes one of the SDK's
  errors (:mod:`steer_llm_sdk.errors`, a test checks each one is mapped); its message and
  the exceptions chained under it are redacted (:func:`scrub`), and the caller raises it
  ``from`` the original.
* :func:`error_from_response`: every HTTP error status becomes one of the SDK's errors,
  classed by status and by the provider's error code (content filters), with the provider's
  own message (read by the protocol's ``describe_error``), ``retry_after`` and the request
  id; the given secrets are redacted and the given request texts removed from its message.
  :func:`read_body` reads such a response's body, bounded, never raising.
* :func:`iter_events`: the server-sent events of a streamed response as its bytes arrive;
  a broken connection, a read timeout or bytes that are not UTF-8 raise SDK errors.
* :func:`request_id_of`, :func:`retry_after_seconds`: what a response's headers say.

Nothing from ``requests`` leaks past these functions: their callers see SDK errors only.
They keep no state and are safe to call from any thread.
"""

import codecs
import email.utils
import json
import time
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Type

import requests
import urllib3

from .._secrets import redact, remove_request_text
from ..errors import (
    ContentFilterError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
    SteerLLMError,
    StreamError,
    error_class_for_status,
)
from ..streaming.sse import ServerSentEvent, SSEDecoder

# Most specific first: the first isinstance() match wins. ConnectTimeout is a ConnectionError
# and a Timeout; SSLError and ProxyError are ConnectionErrors that retrying will not fix.
_REQUESTS_ERRORS: Tuple[Tuple[Type[BaseException], Type[SteerLLMError], Optional[bool]], ...] = (
    (requests.exceptions.ConnectTimeout, ProviderTimeoutError, None),
    (requests.exceptions.ReadTimeout, ProviderTimeoutError, None),
    (requests.exceptions.Timeout, ProviderTimeoutError, None),
    (requests.exceptions.SSLError, ProviderConnectionError, False),
    (requests.exceptions.ProxyError, ProviderConnectionError, False),
    (requests.exceptions.ChunkedEncodingError, StreamError, None),
    (requests.exceptions.ContentDecodingError, StreamError, False),
    (requests.exceptions.ConnectionError, ProviderConnectionError, None),
    (requests.exceptions.InvalidURL, InvalidRequestError, None),
    (requests.exceptions.InvalidSchema, InvalidRequestError, None),
    (requests.exceptions.MissingSchema, InvalidRequestError, None),
    (requests.exceptions.InvalidHeader, InvalidRequestError, None),
    (requests.exceptions.InvalidJSONError, InvalidRequestError, None),
    (requests.exceptions.URLRequired, InvalidRequestError, None),
    (requests.exceptions.RequestException, ProviderError, False),
)


_STATUS_TEXT = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    408: "request timeout",
    409: "conflict",
    413: "request too large",
    422: "unprocessable request",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
    529: "overloaded",
}


def scrub(exc: Optional[BaseException], secrets: Tuple[str, ...] = ()) -> None:
    """Redact credentials in place from a foreign exception that is about to be chained
    (``raise ours from exc``), and from the exceptions chained under it: their arguments
    become redacted strings and URLs lose their secret query parameters, so no traceback
    shows them."""
    seen = 0
    while exc is not None and seen < 8:  # requests -> urllib3 -> socket errors
        seen += 1
        try:
            exc.args = tuple(redact(str(arg), secrets) for arg in exc.args)
            for holder in (exc, getattr(exc, "request", None)):
                url = getattr(holder, "url", None)
                if isinstance(url, str):
                    holder.url = redact(url, secrets)  # type: ignore[union-attr]
        except Exception:  # a type that refuses: leave it, ours is redacted
            pass
        exc = exc.__cause__ or exc.__context__


def translate_requests_error(
    exc: BaseException, provider: str, secrets: Tuple[str, ...] = ()
) -> SteerLLMError:
    """The SDK error for a ``requests`` exception. Its message is redacted, and so is
    ``exc`` itself (see :func:`scrub`): the caller chains it with ``raise ... from exc``."""
    read_timeout = (
        isinstance(exc, requests.exceptions.ConnectionError)
        and bool(exc.args)
        and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError)
    )
    scrub(exc, secrets)
    if read_timeout:
        # requests reports a read timeout while iterating a streamed body as a
        # ConnectionError wrapping urllib3's ReadTimeoutError: it is a timeout.
        return ProviderTimeoutError(redact(f"ReadTimeout: {exc}", secrets), provider=provider)
    message = redact(f"{type(exc).__name__}: {exc}", secrets)
    for foreign, ours, retryable in _REQUESTS_ERRORS:
        if isinstance(exc, foreign):
            return ours(message, provider=provider, retryable=retryable)
    return ProviderError(message, provider=provider)


def retry_after_seconds(
    headers: Mapping[str, str], now: Callable[[], float] = time.time
) -> Optional[float]:
    """The server's Retry-After hint in seconds (``retry-after-ms``, then ``Retry-After`` as
    seconds or an HTTP date), or None."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now())


def request_id_of(headers: Mapping[str, str]) -> Optional[str]:
    """The provider's id of a request (``x-request-id``, else ``request-id``), or None."""
    return headers.get("x-request-id") or headers.get("request-id")


def error_from_response(
    status: int,
    body: str,
    headers: Mapping[str, str],
    provider: str,
    describe: Callable[[Any], Tuple[Optional[str], Optional[str]]],
    secrets: Tuple[str, ...] = (),
    texts: Sequence[str] = (),
) -> ProviderError:
    """The SDK error for an HTTP error response.

    Args:
        describe: the protocol's reader of its error body: ``(message, code)``.
        secrets: literal values to redact from the message (the configured keys).
        texts: the request's text content, removed from the message where the provider
            quotes it (validation errors quote their input).
    """
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    message, code = describe(data) if data is not None else (None, None)
    if not isinstance(message, str) or not message:
        # Only the provider's structured error field is kept: a raw body may echo the
        # request (the prompt), so without one the message is the status alone.
        message = _STATUS_TEXT.get(status, "error response without an error message")
    if texts:
        message = remove_request_text(message, texts)
    text = redact(f"{provider} returned {status}: {redact(message, secrets)[:500]}", secrets)
    cls: Type[ProviderError] = error_class_for_status(status)
    if code and ("content_policy" in code or "content_filter" in code):
        cls = ContentFilterError
    extra: Dict[str, Any] = {}
    if cls in (RateLimitError, ServerError):
        extra["retry_after"] = retry_after_seconds(headers)
    if cls is ContentFilterError and isinstance(data, dict):
        error = data.get("error")
        inner = error.get("innererror") if isinstance(error, dict) else None
        results = inner.get("content_filter_result") if isinstance(inner, dict) else None
        if results is not None:  # Azure: which filter, at what severity
            extra["filter_results"] = {"content_filter_result": results}
    return cls(
        text, status_code=status, provider=provider, request_id=request_id_of(headers), **extra
    )


def read_body(response: requests.Response, limit: int = 65536) -> str:
    """The body of an error response, at most ``limit`` bytes, decoded leniently (works
    whether or not ``requests`` already read it)."""
    data = b""
    try:
        for chunk in response.iter_content(8192):
            data += chunk
            if len(data) >= limit:
                break
    except Exception:
        pass
    return data[:limit].decode("utf-8", "replace")


def iter_events(response: requests.Response, provider: str) -> Iterator[ServerSentEvent]:
    """Server-sent events from a streamed response, as the bytes arrive.

    Raises:
        StreamError: the connection broke off or the bytes are not UTF-8.
        ProviderTimeoutError: no data within the read timeout.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    events = SSEDecoder()
    try:
        for raw in response.iter_content(chunk_size=None):
            yield from events.feed(decoder.decode(raw))
        yield from events.feed(decoder.decode(b"", final=True))
        events.close()
    except UnicodeDecodeError as exc:
        raise StreamError(
            f"{provider} stream is not valid UTF-8", provider=provider, retryable=False
        ) from exc
    except requests.RequestException as exc:
        raise translate_requests_error(exc, provider) from exc
