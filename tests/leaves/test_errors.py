"""The error tree and classification of foreign errors."""

import pytest
import requests

from steer_llm_sdk import errors
from steer_llm_sdk.errors import (
    AuthenticationError,
    CircuitOpenError,
    InvalidRequestError,
    ProviderTimeoutError,
    RateLimitError,
    ServerError,
    SteerLLMError,
    error_category,
    error_class_for_status,
    is_retryable,
)


@pytest.mark.parametrize(
    "status,cls",
    [
        (400, InvalidRequestError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, InvalidRequestError),
        (408, ProviderTimeoutError),
        (409, InvalidRequestError),
        (418, InvalidRequestError),
        (422, InvalidRequestError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (529, ServerError),
    ],
)
def test_status_map(status, cls):
    assert error_class_for_status(status) is cls


def test_every_error_carries_context_and_hides_keys():
    exc = RateLimitError(
        "key sk-abcdefghijklmnop12 over quota",
        status_code=429,
        provider="openai",
        request_id="req_1",
        retry_after=2.0,
    )
    assert (exc.category, exc.retryable, exc.status_code, exc.provider, exc.request_id) == (
        "rate_limit",
        True,
        429,
        "openai",
        "req_1",
    )
    assert "sk-abc" not in str(exc) and "sk-abc" not in repr(exc)
    assert isinstance(exc, SteerLLMError) and exc.retry_after == 2.0
    assert CircuitOpenError("open").category == "circuit_open"


@pytest.mark.parametrize(
    "exc,category",
    [
        (requests.ConnectTimeout(), "timeout"),
        (requests.ReadTimeout(), "timeout"),
        (requests.ConnectionError(), "connection"),
        (requests.exceptions.ChunkedEncodingError(), "connection"),
        (TimeoutError(), "timeout"),
        (ConnectionResetError(), "connection"),
        (ValueError(), "unknown"),
    ],
)
def test_foreign_exceptions(exc, category):
    assert error_category(exc) == category


def test_foreign_sdk_errors_by_name_and_status():
    def make(name, status=None):
        cls = type(name, (Exception,), {})
        exc = cls("x")
        if status is not None:
            exc.status_code = status
        return exc

    assert error_category(make("RateLimitError")) == "rate_limit"
    assert error_category(make("PermissionDeniedError")) == "authentication"
    assert error_category(make("OverloadedError")) == "server_error"
    assert error_category(make("APIStatusError", 503)) == "server_error"
    assert error_category(make("APIStatusError", 401)) == "authentication"
    assert is_retryable(make("APIStatusError", 503))
    assert not is_retryable(make("APIStatusError", 400))


def test_categories_are_complete():
    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, SteerLLMError):
            assert obj.category in errors.CATEGORIES


def test_botocore_client_errors_carry_their_status():
    exceptions = pytest.importorskip("botocore.exceptions")
    from steer_llm_sdk.errors import error_category, status_code_of

    response = {
        "Error": {"Code": "ThrottlingException", "Message": "slow down"},
        "ResponseMetadata": {"HTTPStatusCode": 429},
    }
    exc = exceptions.ClientError(response, "Converse")
    assert status_code_of(exc) == 429
    assert error_category(exc) == "rate_limit"
    assert status_code_of(exceptions.ClientError({"Error": {}}, "Converse")) is None
