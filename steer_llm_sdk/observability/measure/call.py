"""One measured call: its record built at the start, its single end, and joining.

Every entry (the decorator in each form, the context manager, ``instrument()``'s wrappers
and SDK helpers, the client) starts a call with :func:`new_request`, puts it in scope while
the wrapped code runs, and ends it once: :func:`end_call` for a blocking call,
:func:`record_failure` for one that raised, :func:`.stream.record_stream` for a stream.
Its RequestMetrics is the call's state: ``_start`` its clock, ``_outer`` the scope it
started in, ``_ended`` set by the end.

An automatic measurement starting while a call is in scope joins that call instead
(:func:`join_response`, :func:`join_usage`): it records nothing itself and hands what the
provider reported to the owner, whose usage is then read on the flush thread from all it
was handed (:func:`.pipeline.enrich.complete_from_response`).
"""

from time import time as _now
from typing import Any, Mapping, Optional

from ..._secrets import redact
from ...errors import error_category, is_retryable, status_code_of
from .._ids import next_seq
from .._signals import raised_by_signal
from ..models import ErrorMetrics, Reported, RequestMetrics
from .scope import ATTRIBUTES, SCOPE

_MESSAGE_LIMIT = 500


def new_request(
    provider: str,
    model: Optional[str],
    extra: Mapping[str, Any],
    method: str,
    response_format: str,
    operation: str = "chat",
) -> RequestMetrics:
    """A RequestMetrics for a call starting now in the current context: the ambient
    attributes (shared, read-only) plus ``extra``, the call in scope as its parent (and as
    its ``_outer``). Marked trusted (built by the SDK); its clock is not started and it is
    not put in scope.
    """
    scope = SCOPE.get()
    attributes = ATTRIBUTES.get()
    metrics = RequestMetrics(
        _now(),
        next_seq(),  # type: ignore[arg-type]  # a counter until formatted: see _ids
        provider,
        model,
        {**attributes, **extra} if extra else attributes,
        1.0,
        # The raw id (maybe still a counter): formatted when read.
        None if scope is None else scope._request_id,  # type: ignore[attr-defined]
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
    metrics._outer = scope
    if operation != "chat":  # the field's default: most calls skip the store
        metrics.operation = operation
    return metrics


def end_call(collector: Any, metrics: RequestMetrics, end: float) -> None:
    """End a blocking call that returned: its duration (unless already set) and its
    record, once. Never raises."""
    if metrics._ended:
        return
    metrics._ended = True
    if metrics.duration_ms is None:
        metrics.duration_ms = (end - metrics._start) * 1000.0
    collector._admit(metrics)


def record_failure(collector: Any, metrics: RequestMetrics, exc: BaseException, end: float) -> None:
    """End a failed call: its RequestMetrics and an ErrorMetrics, once. Never raises,
    except an exception a signal handler raised while it ran (it belongs to the caller)."""
    try:
        if metrics._ended:
            return
        metrics._ended = True
        metrics.duration_ms = (end - metrics._start) * 1000.0
        metrics.success = False
        metrics.error_class = type(exc).__name__
        metrics.error_category = error_category(exc)
        collector._admit(metrics)
        collector._admit(error_record(metrics, exc))
    except Exception as internal:
        if raised_by_signal(internal):
            raise


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


def join_response(owner: RequestMetrics, response: Any) -> None:
    """Hand a joined blocking call's response to ``owner``: its usage and model are read on
    the flush thread, summed with what other joined calls handed over. Ignored once the
    owner has ended (its record is already on its way)."""
    if owner._ended or response is None:
        return
    joined = owner._joined
    if joined is None:
        owner._joined = [response]
    else:
        joined.append(response)


def join_usage(owner: RequestMetrics, usage: Any, model: Optional[str]) -> None:
    """Hand what a joined stream reported (a ``TokenUsage`` and the answering model) to
    ``owner``, as :func:`join_response` does for a response."""
    if usage is None and model is None:
        return
    join_response(owner, Reported(usage, model))
