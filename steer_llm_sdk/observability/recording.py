"""Building the records of a tracked call: the one request-record builder and the one
failure recorder, shared by the decorator, the context manager, tracked streams and the
client."""

from time import time as _now
from typing import Any, Mapping, Optional

from .._secrets import redact
from ..errors import error_category, is_retryable, status_code_of
from ._ids import next_seq
from .context import Context
from .models import ErrorMetrics, RequestMetrics

_MESSAGE_LIMIT = 500


def new_request(
    ctx: Context,
    provider: str,
    model: Optional[str],
    extra: Mapping[str, Any],
    method: str,
    response_format: str,
    operation: str = "chat",
) -> RequestMetrics:
    """A RequestMetrics for a call starting now in the thread whose context is ``ctx``
    (``_state.ctx``, read once by the caller: a thread-local read costs as much as several
    attribute reads): the ambient attributes (shared, read-only) plus ``extra``, the
    enclosing request as parent. Marked trusted (built by the SDK); its clock is not started
    and it is not on the thread's stack.
    """
    stack = ctx.stack
    metrics = RequestMetrics(
        _now(),
        next_seq(),  # type: ignore[arg-type]  # a counter until formatted: see _ids
        provider,
        model,
        {**ctx.attributes, **extra} if extra else ctx.attributes,
        1.0,
        # The raw id (maybe still a counter): formatted when read.
        stack[-1]._request_id if stack else ctx.parent_id,  # type: ignore[attr-defined]
        None,
        None,
        None,
        None,
        None,
        None,
        method,
        response_format,
    )
    metrics._trusted = True
    if operation != "chat":  # the field's default: most calls skip the store
        metrics.operation = operation
    return metrics


def record_failure(collector: Any, metrics: RequestMetrics, exc: BaseException, end: float) -> None:
    """Record a failed call: its RequestMetrics and an ErrorMetrics. Never raises."""
    try:
        metrics.duration_ms = (end - metrics._start) * 1000.0
        metrics.success = False
        metrics.error_class = type(exc).__name__
        metrics.error_category = error_category(exc)
        collector._admit(metrics)
        collector._admit(error_record(metrics, exc))
    except Exception:
        pass


def error_record(metrics: RequestMetrics, exc: BaseException) -> ErrorMetrics:
    """The ErrorMetrics of ``exc`` for the request of ``metrics`` (message redacted)."""
    try:
        message: Optional[str] = redact(str(exc))[:_MESSAGE_LIMIT]
    except Exception:
        message = None
    record = ErrorMetrics(
        **metrics._link(),
        error_class=metrics.error_class or type(exc).__name__,
        error_category=metrics.error_category or "unknown",
        status_code=status_code_of(exc),
        retryable=is_retryable(exc),
        message=message,
    )
    record._trusted = True
    return record
