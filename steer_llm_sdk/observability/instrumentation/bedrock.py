"""``boto3``'s ``bedrock-runtime``: ``converse`` and ``converse_stream``.

botocore builds client classes at run time, so their methods are not patched: every API call
of every client passes through ``BaseClient._make_api_call`` (the hook OpenTelemetry's
botocore instrumentation uses too), which is wrapped once and measures only Bedrock's
Converse operations, for clients made before and after ``instrument()``."""

from typing import Any, Callable, List, Tuple

from ..measure.sdk import measure
from ._measure import endpoint, target

#: Where botocore's credentials keep their values: ``Credentials`` in plain attributes,
#: ``RefreshableCredentials`` behind properties (read without refreshing).
_CREDENTIALS = ("access_key", "secret_key", "token", "_access_key", "_secret_key", "_token")

_OPERATIONS = {"Converse": False, "ConverseStream": True}


def _stream(result: Any, wrap: Callable[[Any], Any]) -> Any:
    if isinstance(result, dict) and "stream" in result:
        result["stream"] = wrap(result["stream"])
    return result


def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
    operation = args[0] if args else kwargs.get("operation_name")
    streamed = _OPERATIONS.get(operation)
    meta = getattr(instance, "meta", None)
    service = getattr(getattr(meta, "service_model", None), "service_name", None)
    if streamed is None or service != "bedrock-runtime":
        return wrapped(*args, **kwargs)
    params = args[1] if len(args) > 1 else kwargs.get("api_params") or {}
    model = params.get("modelId") if isinstance(params, dict) else None
    return measure(
        target(),
        lambda: wrapped(*args, **kwargs),
        "aws.bedrock",
        "chat",
        model,
        endpoint(getattr(meta, "endpoint_url", ""), "aws.bedrock")[1],
        _stream if streamed else None,
        (secrets, instance, params),
    )


def secrets(client: Any) -> List[str]:
    """The credentials a botocore client signs with (read when a call fails): access key,
    secret key and session token (sent as ``x-amz-security-token``), and a bearer token
    (``AWS_BEARER_TOKEN_BEDROCK``), read as stored, never refreshed.

    Reads botocore's privates ``_request_signer``, its ``_credentials`` and
    ``_auth_token``: tests/test_leaks.py fails when a release removes them.
    """
    signer = client._request_signer
    values = vars(signer._credentials) if signer._credentials is not None else {}
    found = [values.get(name) for name in _CREDENTIALS]
    token = signer._auth_token
    found.append(getattr(token, "token", None) if token is not None else None)
    return [value for value in found if isinstance(value, str) and value]


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    return [("botocore.client", "BaseClient._make_api_call", wrapper)]
