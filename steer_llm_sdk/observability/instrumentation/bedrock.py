"""``boto3``'s ``bedrock-runtime``: ``converse`` and ``converse_stream``.

botocore builds client classes at run time, so their methods are not patched: every API call
of every client passes through ``BaseClient._make_api_call`` (the hook OpenTelemetry's
botocore instrumentation uses too), which is wrapped once and measures only Bedrock's
Converse operations, for clients made before and after ``instrument()``."""

from typing import Any, Callable, List, Tuple

from ..measure.sdk import measure
from ._measure import endpoint, target

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
    )


def targets() -> List[Tuple[str, str, Callable[..., Any]]]:
    return [("botocore.client", "BaseClient._make_api_call", wrapper)]
