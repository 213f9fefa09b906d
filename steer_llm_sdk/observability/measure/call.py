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

from time import perf_counter
from time import time as _now
from typing import Any, Callable, Iterable, List, Mapping, Optional, Tuple

from ..._secrets import redact, remove_request_text, request_texts
from ...errors import error_category, is_retryable, status_code_of
from ...streaming.usage import TokenUsage
from .._ids import next_seq
from .._signals import signal_exception
from ..models import ChunkGaps, ErrorMetrics, Reported, RequestMetrics, StreamingMetrics, trust
from ..tracing import STATE as _TRACING
from .scope import ATTRIBUTES, SCOPE

_MESSAGE_LIMIT = 500
# Bound once: new_request runs on every call.
_scope, _attributes = SCOPE.get, ATTRIBUTES.get


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
    not put in scope. While tracing is active (see :mod:`..tracing`) it keeps the current
    OpenTelemetry context, the parent of its span.
    """
    scope = _scope()
    attributes = _attributes()
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
    trust(metrics)
    if scope is not None:  # the field's default: most calls skip the store
        metrics._outer = scope
    if operation != "chat":  # the field's default: most calls skip the store
        metrics.operation = operation
    if _TRACING.active:  # one attribute read while no TracerProvider is set
        metrics._trace = _TRACING.capture()
    return metrics


def start_clock(metrics: RequestMetrics) -> None:
    """Start the clock of the call of ``metrics`` (built by :func:`new_request`) now: its
    duration is measured from here to :func:`end_call`'s ``end``."""
    metrics._start = perf_counter()


def end_call(collector: Any, metrics: RequestMetrics, end: float) -> None:
    """End a call that returned: its duration (unless already set) and its record, once.
    A call that streams joined (a ``with`` block around an SDK stream, say) is recorded as
    a stream of what they measured (:func:`_as_stream`). Never raises."""
    if metrics._ended:
        return
    metrics._ended = True
    if metrics.duration_ms is None:
        metrics.duration_ms = (end - metrics._start) * 1000.0
    streamed = _joined_stream(metrics) if metrics._joined else None
    collector.admit(metrics)
    if streamed is not None:
        _streaming(collector, metrics, streamed)


def record_failure(
    collector: Any,
    metrics: RequestMetrics,
    exc: BaseException,
    end: float,
    sensitive: "Optional[Sensitive]" = None,
) -> None:
    """End a failed call: its RequestMetrics and an ErrorMetrics, once (``sensitive``: see
    :func:`error_record`). Never raises, except an exception a signal handler raised while
    it ran (it belongs to the caller)."""
    try:
        if metrics._ended:
            return
        metrics._ended = True
        metrics.duration_ms = (end - metrics._start) * 1000.0
        metrics.success = False
        metrics.error_class = type(exc).__name__
        metrics.error_category = error_category(exc)
        streamed = _joined_stream(metrics) if metrics._joined else None
        collector.admit(metrics)
        collector.admit(error_record(metrics, exc, sensitive))
        if streamed is not None:
            _streaming(collector, metrics, streamed)
    except Exception as internal:
        timeout = signal_exception(internal)
        if timeout is not None:
            raise timeout


#: ``(secrets_of, client, request)``: what a failed call's stored message must not show,
#: resolved only when a call fails: the credentials ``secrets_of(client)`` returns (the SDK
#: client's keys) and the text content of ``request`` (the call's keyword arguments; see
#: :func:`..._secrets.request_texts`).
Sensitive = Tuple[Callable[[Any], Iterable[str]], Any, Any]


def error_record(
    metrics: RequestMetrics, exc: BaseException, sensitive: "Optional[Sensitive]" = None
) -> ErrorMetrics:
    """The ErrorMetrics of ``exc`` for the request of ``metrics``.

    Its message is the provider's structured error field when ``exc`` carries one
    (:func:`provider_message`), with the request's own text removed and credentials
    redacted, then cut to 500 characters. Credentials are found by pattern; the call's own
    credential values and text come from ``sensitive`` and from the calls that joined this
    one and failed (:func:`join_failure`). ``exc`` itself is never changed. Runs on the
    caller's thread, on failures only.
    """
    try:
        message = provider_message(exc)
        secrets, texts = _resolve(sensitive) if sensitive is not None else ((), [])
        for item in metrics._joined or ():
            if type(item) is Reported and item.sensitive is not None:
                more_secrets, more_texts = _resolve(item.sensitive)
                secrets += more_secrets
                texts = texts + more_texts
        if texts:
            message = remove_request_text(message, texts)
        message = redact(message, secrets)[:_MESSAGE_LIMIT]
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
    trust(record)
    return record


def _resolve(sensitive: "Sensitive") -> Tuple[Tuple[str, ...], List[str]]:
    """(credentials, request text) of ``sensitive``; a ``secrets_of`` that fails (an SDK
    that changed shape) gives none (the patterns still apply)."""
    secrets_of, client, request = sensitive
    try:
        secrets = tuple(s for s in secrets_of(client) if isinstance(s, str))
    except Exception:
        secrets = ()
    return secrets, request_texts(request)


def join_failure(owner: RequestMetrics, sensitive: "Sensitive") -> None:
    """A call that joined ``owner`` failed: what it must not show (its client's keys, its
    text) goes to the owner's error record, should the owner fail too."""
    join_response(owner, Reported(None, None, None, sensitive))


_MISSING = object()


def provider_message(exc: BaseException) -> str:
    """The message of ``exc`` worth storing: the provider's structured error field when
    ``exc`` is an SDK's error that has one, never the raw body around it (which may echo
    the request).

    * ``openai``/``anthropic`` ``APIError`` (``body``): ``error.message`` of the body, after
      its ``code``/``type``; without one a status error says its status only;
    * google-genai ``APIError`` (``details``): ``message``, after ``status``;
    * botocore ``ClientError`` (``response["Error"]``): ``Message``, after ``Code``;
    * anything else (this SDK's own errors included): ``str(exc)``.

    Not redacted. May raise (``str`` of a hostile exception).
    """
    body = getattr(exc, "body", _MISSING)
    if body is not _MISSING:  # openai / anthropic APIError
        found = _error_field(body)
        if found is not None:
            return found
        status = status_code_of(exc)
        if status is not None:
            return f"error status {status} without a structured message"
        return str(exc) if body is None else type(exc).__name__
    details = getattr(exc, "details", _MISSING)
    if details is not _MISSING and type(exc).__module__.startswith("google."):
        return _labelled(getattr(exc, "status", None), getattr(exc, "message", None)) or (
            f"error status {getattr(exc, 'code', None)} without a structured message"
        )
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and isinstance(response.get("Error"), dict):  # botocore
        error = response["Error"]
        return _labelled(error.get("Code"), error.get("Message")) or type(exc).__name__
    return str(exc)


def _error_field(body: Any) -> Optional[str]:
    """``"kind: message"`` of an error body (``{"error": {...}}`` or the error itself:
    openai unwraps it, anthropic does not), or None without a message."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        body = error
    kind = body.get("code") or body.get("type")
    return _labelled(kind, body.get("message"))


def _labelled(kind: Any, message: Any) -> Optional[str]:
    if not isinstance(message, str) or not message:
        return None
    return f"{kind}: {message}" if isinstance(kind, str) and kind else message


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
    """Hand the usage a joined call reported (a ``TokenUsage``) and its answering model to
    ``owner``, as :func:`join_response` does for a response."""
    if usage is None and model is None:
        return
    join_response(owner, Reported(usage, model))


def join_stream(owner: RequestMetrics, outcome: "StreamOutcome", usage: Any) -> None:
    """Hand what a joined stream measured (``outcome``) and the usage its provider reported
    (``usage``, or None) to ``owner``. An owner that is a stream of its own measures its
    chunks itself and takes only the usage; one that is not is recorded as a stream of
    what its joined streams measured."""
    join_response(owner, Reported(usage, outcome.response_model, outcome))


def _joined_stream(metrics: RequestMetrics) -> "Optional[StreamOutcome]":
    """The streams that joined a call that is not a stream itself, as one outcome, with the
    call's times and method set from it; None when none joined."""
    if metrics.method == "stream":
        return None
    outcomes = [
        item.outcome
        for item in metrics._joined
        if type(item) is Reported and item.outcome is not None
    ]
    if not outcomes:
        return None
    outcome = outcomes[0] if len(outcomes) == 1 else merge_outcomes(outcomes)
    metrics.method = "stream"
    stream_times(metrics, outcome)
    return outcome


def _streaming(collector: Any, metrics: RequestMetrics, outcome: "StreamOutcome") -> None:
    if collector.config.enable_streaming_metrics:
        collector.admit(streaming_record(metrics, outcome, (metrics.duration_ms or 0.0) / 1000.0))


def stream_times(metrics: RequestMetrics, outcome: "StreamOutcome") -> None:
    """Set a call's times to its first chunk and first content from a stream's outcome."""
    start = metrics._start
    if outcome.first is not None:
        metrics.time_to_first_chunk_ms = (outcome.first - start) * 1000.0
    if outcome.first_token is not None:
        metrics.time_to_first_token_ms = (outcome.first_token - start) * 1000.0


def streaming_record(
    metrics: RequestMetrics, outcome: "StreamOutcome", elapsed: float
) -> StreamingMetrics:
    """The StreamingMetrics of the stream of ``metrics`` that lasted ``elapsed`` seconds."""
    first = outcome.first
    streaming = StreamingMetrics(  # positional, in field order: built per stream
        *metrics._base(),
        outcome.chunks,  # total_chunks
        outcome.chars,  # total_chars
        outcome.chunks / elapsed if elapsed > 0 else None,  # chunks_per_second
        None if first is None else (first - metrics._start) * 1000.0,  # first_chunk_latency_ms
        outcome.json_objects,  # json_objects_found
        outcome.aggregation_method,
        outcome.aggregation_confidence,
        outcome.status,
        metrics.operation,
        metrics.response_model,
        metrics.error_class,
    )
    streaming._gaps = outcome.gaps
    trust(streaming)
    return streaming


def merge_outcomes(outcomes: "List[StreamOutcome]") -> "StreamOutcome":
    """Several streams of one call as one: counts added, the earliest first chunk and
    content, the latest end; ``completed`` only if all completed, else ``error`` if one
    failed, else ``cancelled``."""
    merged = StreamOutcome()
    gaps = merged.gaps = ChunkGaps()
    statuses = set()
    for outcome in outcomes:
        statuses.add(outcome.status)
        merged.chunks += outcome.chunks
        merged.chars += outcome.chars
        merged.json_objects += outcome.json_objects
        merged.read_errors += outcome.read_errors
        merged.end = max(merged.end, outcome.end)
        for name in ("first", "first_token"):
            mine, theirs = getattr(merged, name), getattr(outcome, name)
            if theirs is not None and (mine is None or theirs < mine):
                setattr(merged, name, theirs)
        if merged.response_model is None:
            merged.response_model = outcome.response_model
        if outcome.usage is not None:
            merged.aggregation_method = outcome.aggregation_method
            merged.aggregation_confidence = outcome.aggregation_confidence
        if outcome.gaps is not None:
            for index, count in enumerate(outcome.gaps.counts):
                gaps.counts[index] += count
                gaps.sums[index] += outcome.gaps.sums[index]
            gaps.minimum = min(gaps.minimum, outcome.gaps.minimum)
            gaps.maximum = max(gaps.maximum, outcome.gaps.maximum)
    if statuses == {"completed"}:
        merged.status = "completed"
    else:
        merged.status = "error" if "error" in statuses else "cancelled"
    return merged


class StreamOutcome:
    """What a finished stream reports; turned into records by :func:`record_stream`.

    Times are ``perf_counter()`` readings; ``usage`` is None when nothing counted tokens.
    """

    __slots__ = (
        "status",
        "error",
        "chunks",
        "chars",
        "first",
        "first_token",
        "end",
        "usage",
        "response_model",
        "json_objects",
        "aggregation_method",
        "aggregation_confidence",
        "read_errors",
        "gaps",
    )

    def __init__(self) -> None:
        self.gaps: Optional[ChunkGaps] = None
        self.read_errors = 0  # chunks of a shape no reader understood (passed through)
        self.status = "cancelled"
        self.error: Optional[BaseException] = None
        self.chunks = 0
        self.chars = 0
        self.first: Optional[float] = None
        self.first_token: Optional[float] = None
        self.end = 0.0
        self.usage: Optional[TokenUsage] = None
        self.response_model: Optional[str] = None
        self.json_objects = 0
        self.aggregation_method = "none"
        self.aggregation_confidence = 0.0
