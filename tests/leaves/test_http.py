"""The HTTP boundary: every requests exception maps to an SDK error; Retry-After parsing;
error bodies of both protocols."""

import inspect

import pytest
import requests
import urllib3

from steer_llm_sdk.errors import (
    CATEGORIES,
    ContentFilterError,
    ProviderTimeoutError,
    RateLimitError,
    SteerLLMError,
    StreamError,
)
from steer_llm_sdk.providers import anthropic, openai
from steer_llm_sdk.providers.http import (
    error_from_response,
    retry_after_seconds,
    translate_requests_error,
)

REQUESTS_ERRORS = [
    cls
    for _, cls in inspect.getmembers(requests.exceptions, inspect.isclass)
    if issubclass(cls, requests.RequestException)
]


def test_every_requests_exception_is_mapped():
    assert len(REQUESTS_ERRORS) > 15
    for cls in REQUESTS_ERRORS:
        if issubclass(cls, ValueError) and "JSONDecodeError" in cls.__name__:
            exc = cls("boom", "{", 0)  # also a json.JSONDecodeError: (msg, doc, pos)
        else:
            exc = cls("boom")
        ours = translate_requests_error(exc, "openai")
        assert isinstance(ours, SteerLLMError), cls
        assert ours.category in CATEGORIES and ours.provider == "openai"


def test_specific_mappings():
    assert isinstance(
        translate_requests_error(requests.ConnectTimeout(), "x"), ProviderTimeoutError
    )
    assert isinstance(
        translate_requests_error(requests.exceptions.ChunkedEncodingError(), "x"), StreamError
    )
    wrapped = requests.ConnectionError(urllib3.exceptions.ReadTimeoutError(None, None, "t"))
    assert isinstance(translate_requests_error(wrapped, "x"), ProviderTimeoutError)
    assert translate_requests_error(requests.exceptions.SSLError(), "x").retryable is False


def test_retry_after_forms():
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert retry_after_seconds({"retry-after": date}, now=lambda: 1445412470.0) == 10.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


@pytest.mark.parametrize(
    "protocol,body",
    [
        (openai, '{"error": {"message": "Slow down", "type": "rate_limit_error", "code": null}}'),
        (
            anthropic,
            '{"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}}',
        ),
    ],
)
def test_error_bodies(protocol, body):
    exc = error_from_response(
        429,
        body,
        {"retry-after": "2", "x-request-id": "abc"},
        protocol.NAME,
        protocol.describe_error,
    )
    assert isinstance(exc, RateLimitError)
    assert "Slow down" in str(exc) and exc.retry_after == 2.0 and exc.request_id == "abc"


def test_content_filter_and_secret_redaction():
    body = (
        '{"error": {"message": "bad content from key sk-live-abcdefghijklmn", '
        '"code": "content_policy_violation"}}'
    )
    exc = error_from_response(
        400, body, {}, "openai", openai.describe_error, secrets=("sk-live-abcdefghijklmn",)
    )
    assert isinstance(exc, ContentFilterError) and "sk-live" not in str(exc)
    plain = error_from_response(
        502, "<html>bad gateway</html>", {}, "openai", openai.describe_error
    )
    assert "bad gateway" in str(plain)
