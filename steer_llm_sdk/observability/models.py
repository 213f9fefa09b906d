"""Metric record types.

Plain slotted classes built from one field table each (see :mod:`._fields`): building one on
the caller's thread costs a few hundred nanoseconds and no dict. Records are mutable while a
tracked call fills them in; once handed to ``MetricsCollector.record`` they belong to the
pipeline and must not be changed.

Bad values are clamped on the background thread, not refused (see :mod:`._sanitize`): metrics
describe user code, and a ``prompt_tokens="12"`` set by hand must not cost the rest of the
record.

No I/O here; from the rest of the package only the leaves ``_fields`` and ``_ids``.
"""

from bisect import bisect_left
from typing import Any, ClassVar, Dict, Optional, Tuple, Union

from ._fields import Attributes, Id, Ratio, RecordMeta, Scalar, private
from .conventions import DURATION_BUCKETS, GapHistogram

__all__ = [
    "METRIC_TYPES",
    "AgentMetrics",
    "AnyRecord",
    "BaseMetrics",
    "ChunkGaps",
    "ErrorMetrics",
    "GapHistogram",
    "ReliabilityMetrics",
    "RequestMetrics",
    "Scalar",
    "StreamingMetrics",
    "UsageMetrics",
]


class BaseMetrics(metaclass=RecordMeta):
    """Fields every record has.

    Attributes:
        timestamp: when the call started, seconds since the epoch.
        request_id: identifies the request; records of one request share it.
        provider: ``"openai"``, ``"anthropic"``, ... (``"unknown"`` if not given).
        model: the model asked for, or None.
        attributes: str -> str/int/float/bool, bounded by the collector's config. Records
            of one thread's context may share one read-only mapping: to change attributes
            (in a filter, say), assign a new dict.
        sample_rate: the sampling rate this record survived (1.0 when not sampled).
        parent_request_id: the enclosing tracked request's id, for nested calls.
    """

    metric_type: ClassVar[str] = "base"
    #: (name, kind) of every scalar field, set by the metaclass from the annotations below.
    _schema: ClassVar[Tuple[Tuple[str, str], ...]] = ()

    timestamp: float = 0.0
    request_id: Id = ""
    provider: str = "unknown"
    model: Optional[str] = None
    attributes: Attributes = None  # type: ignore[assignment]  # None: a new empty dict
    sample_rate: Ratio = 1.0
    parent_request_id: Optional[Id] = None
    # True only for records built by the SDK itself, whose numeric and flag fields are
    # known to be valid: they skip field validation (user-supplied text is still checked).
    _trusted: bool = private(False)

    def request_fields(self) -> Dict[str, Any]:
        """The fields that tie another record to this one's request (timestamp, ids,
        provider, model, a copy of the attributes), as keyword arguments."""
        out = self._link()
        del out["sample_rate"]
        out["request_id"] = self.request_id
        out["parent_request_id"] = self.parent_request_id
        out["attributes"] = dict(self.attributes)
        return out

    def _link(self) -> Dict[str, Any]:
        """:meth:`request_fields` for a related record the SDK builds and hands to the
        pipeline at once (see :meth:`_base`)."""
        return dict(zip(_BASE_FIELDS, self._base()))

    def _base(self) -> Tuple[float, Any, str, Optional[str], Any, float, Any]:
        """The base fields of a related record the SDK builds, positionally in field order
        (positional arguments cost a third of keyword ones): the ids raw (formatted only if
        someone reads them), the thread's read-only ambient attributes shared rather than
        copied (a plain dict, which a filter may change in place, is copied), sample rate 1."""
        attributes = self.attributes
        return (
            self.timestamp,
            self._request_id,  # type: ignore[attr-defined]
            self.provider,
            self.model,
            attributes if type(attributes) is not dict else dict(attributes),
            1.0,
            self._parent_request_id,  # type: ignore[attr-defined]
        )

    def _failed(self) -> bool:
        """Whether this record describes a failure (judged by the error sampling rate)."""
        return False

    def _streamed(self) -> bool:
        """Whether this record belongs to a streamed request (streaming sampling rate)."""
        return False

    def to_dict(self) -> Dict[str, Any]:
        """A dict of every public field, plus ``metric_type``."""
        out: Dict[str, Any] = {"metric_type": self.metric_type}
        for name, _ in self._schema:
            out[name] = getattr(self, name)
        out["attributes"] = dict(self.attributes)
        return out

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if v is not None)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable


#: The base fields in the order of ``__init__`` (checked below, as records are built
#: positionally from :meth:`BaseMetrics._base`).
_BASE_FIELDS = (
    "timestamp",
    "request_id",
    "provider",
    "model",
    "attributes",
    "sample_rate",
    "parent_request_id",
)
if tuple(name for name, _, _ in BaseMetrics._fields) != _BASE_FIELDS:  # type: ignore[attr-defined]
    raise RuntimeError("BaseMetrics fields changed: update _BASE_FIELDS and _base()")


def trust(record: BaseMetrics, trusted: bool = True) -> None:
    """Say whether ``record``'s numeric and flag fields are known to be valid.

    True for a record the SDK built itself: admission then skips their checks (text a user
    supplied is still checked). False once user code may have set any value (a tracked
    call handed to ``current_request()``, a record an enrichment failed on): admission
    checks every field, as for a record given to ``collector.record()``. The one way a
    module other than this one changes the mark. Not thread-safe: the record's owner calls it.
    """
    record._trusted = trusted


class RequestMetrics(BaseMetrics):
    """One LLM call, blocking or streamed.

    Arguments may be given by position, in the order of the fields below (after the base
    fields): the tracker builds one per call, and positional arguments cost a third of
    keyword ones.

    Attributes:
        duration_ms: wall time of the whole call (for streams: until the stream ended).
        time_to_first_token_ms: time to first content: until the first chunk carrying
            text, a tool call or reasoning; None if not streamed or nothing came.
        prompt_tokens, completion_tokens, total_tokens, cached_tokens: as the provider
            reported them (None when unknown), in the OpenTelemetry GenAI meaning: prompt
            tokens include cache reads and writes, completion tokens include reasoning.
        method: ``"generate"`` or ``"stream"``.
        response_format: ``"text"``, ``"json_object"``, ``"json_schema"``, ...
        success: False when the call raised (or the stream ended in an error).
        error_class: the exception's class name on failure.
        error_category: see :mod:`steer_llm_sdk.errors` (``rate_limit``, ``timeout``, ...).
        cost_usd: with cost tracking on and a known price; None otherwise.
        response_model: the model the provider says answered.
        operation: the GenAI operation called: ``chat``, ``text_completion``,
            ``embeddings``, ``generate_content`` (``gen_ai.operation.name``).
        reasoning_tokens: the part of the completion spent reasoning, when reported.
        cache_creation_tokens: prompt tokens written to a cache (Anthropic, Bedrock).
        price_source: where ``cost_usd`` came from: ``override`` (``MetricsConfig.pricing``
            or ``STEER_PRICING_FILE``), ``genai-prices`` or ``bundled``.
        tokens_estimated: True when a token count was estimated locally (tokenizer or
            characters / 4) because the provider reported none. Exporting sinks leave
            such counts, and the cost priced from them, out unless asked to export them.
        time_to_first_chunk_ms: until the first chunk of any kind (the GenAI conventions'
            ``time_to_first_chunk``: a role-only or metadata chunk counts); None if not
            streamed or no chunk came.
        trace_id, span_id: the OpenTelemetry ids (32 and 16 lowercase hex digits) of the
            GenAI client span of this call, when one was started and sampled (see
            :mod:`.tracing`); None otherwise. Set on the flush thread after the filters,
            so filters never see them.
    """

    metric_type: ClassVar[str] = "request"

    duration_ms: Optional[float] = None
    time_to_first_token_ms: Optional[float] = None
    prompt_tokens: Optional[int] = None
    completion_tokens: Optional[int] = None
    total_tokens: Optional[int] = None
    cached_tokens: Optional[int] = None
    method: str = "generate"
    response_format: str = "text"
    success: bool = True
    error_class: Optional[str] = None
    error_category: Optional[str] = None
    cost_usd: Optional[float] = None
    response_model: Optional[str] = None
    operation: str = "chat"
    tokens_estimated: bool = False
    reasoning_tokens: Optional[int] = None
    cache_creation_tokens: Optional[int] = None
    price_source: Optional[str] = None
    time_to_first_chunk_ms: Optional[float] = None
    trace_id: Optional[str] = None
    span_id: Optional[str] = None
    _start: float = private(0.0)  # perf_counter() at the start of the call
    _response: Any = private(None)  # read for usage on the background thread
    _extractor: Any = private(None)
    # The type of a response read already on the caller's thread (measure/sdk.py), which
    # tracing.spanned_elsewhere still needs once the response itself is gone.
    _response_type: Any = private(None)
    # What calls that joined this one reported (responses or TokenUsage), read for usage
    # on the background thread when the record carries none of its own.
    _joined: Any = private(None)
    # The measured call this one ran inside (the scope when it started), and whether this
    # call has ended: an ended call is never joined (see measure/scope.py).
    _outer: Any = private(None)
    _ended: bool = private(False)
    # Tracing (see tracing.py): the OpenTelemetry context current when the call started
    # (captured only while tracing is active), replaced on the flush thread by the span
    # started for the call, which the span sink ends; None otherwise.
    _trace: Any = private(None)

    def _failed(self) -> bool:
        return not self.success

    def _streamed(self) -> bool:
        return self.method == "stream"

    def _link(self) -> Dict[str, Any]:
        out = super()._link()
        out["operation"] = self.operation
        return out

    def set_response(self, response: Any, usage_extractor: Any = None) -> None:
        """Read token counts and the response model from ``response`` later, on the
        background thread (OpenAI- and Anthropic-shaped objects or dicts).

        Args:
            response: the provider's response object or decoded JSON.
            usage_extractor: optional ``(response) -> TokenUsage | dict | None`` to use instead.
        """
        self._response = response
        self._extractor = usage_extractor

    def set_usage(
        self,
        prompt_tokens: Optional[int] = None,
        completion_tokens: Optional[int] = None,
        total_tokens: Optional[int] = None,
        cached_tokens: Optional[int] = None,
        reasoning_tokens: Optional[int] = None,
        cache_creation_tokens: Optional[int] = None,
    ) -> None:
        """Set token counts (in ``TokenUsage`` order, so ``set_usage(*usage)`` works);
        ``total_tokens`` defaults to prompt + completion when both known."""
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        if total_tokens is None and prompt_tokens is not None and completion_tokens is not None:
            total_tokens = prompt_tokens + completion_tokens
        self.total_tokens = total_tokens
        self.cached_tokens = cached_tokens
        self.reasoning_tokens = reasoning_tokens
        self.cache_creation_tokens = cache_creation_tokens


class Reported:
    """What a call that joined another reported, handed to that call's record
    (``RequestMetrics._joined``): ``usage`` (a ``TokenUsage`` or None), ``model`` (the
    answering model or None), for a stream ``outcome`` (what it measured), and for a call
    that failed ``sensitive`` (what the owner's error record must not show)."""

    __slots__ = ("usage", "model", "outcome", "sensitive")

    def __init__(
        self, usage: Any, model: Optional[str], outcome: Any = None, sensitive: Any = None
    ) -> None:
        self.usage = usage
        self.model = model
        self.outcome = outcome
        self.sensitive = sensitive


class StreamingMetrics(BaseMetrics):
    """How a streamed response arrived.

    Attributes:
        total_chunks: items the stream yielded (SSE events for the client).
        total_chars: characters of text content received.
        chunks_per_second: total_chunks over the stream's duration.
        first_chunk_latency_ms: until the first chunk of any kind.
        json_objects_found: complete top-level JSON values in the text (JSON formats only).
        aggregation_method: how the token counts were obtained: ``provider`` (reported by the
            provider), ``tokenizer`` (counted locally with a BPE tokenizer), ``heuristic``
            (characters / 4) or ``none`` (no counts).
        aggregation_confidence: 1.0 for ``provider``, lower for local estimates, 0 for none.
        status: ``completed``, ``error`` or ``cancelled`` (closed or abandoned early).
        operation: the GenAI operation, as on the request's RequestMetrics.
        response_model: the model the stream said answered, when it said.
        error_class: the exception's class name when the stream failed (the same value as
            the request's ``error_class``).
        chunk_gaps: (read-only) the gaps between consecutive chunks as a
            :class:`GapHistogram`, when the stream meter measured them; None otherwise.
    """

    metric_type: ClassVar[str] = "streaming"

    total_chunks: int = 0
    total_chars: int = 0
    chunks_per_second: Optional[float] = None
    first_chunk_latency_ms: Optional[float] = None
    json_objects_found: int = 0
    aggregation_method: str = "none"
    aggregation_confidence: Ratio = 0.0
    status: str = "completed"
    operation: str = "chat"
    response_model: Optional[str] = None
    error_class: Optional[str] = None
    _gaps: Any = private(None)  # a ChunkGaps

    @property
    def chunk_gaps(self) -> Optional[GapHistogram]:
        gaps = self._gaps
        return None if gaps is None else gaps.histogram()

    def _failed(self) -> bool:
        return self.status == "error"

    def _streamed(self) -> bool:
        return True


class ReliabilityMetrics(BaseMetrics):
    """Retries and circuit-breaker state of one request.

    Attributes:
        retry_attempts: retries made (0 when the first attempt settled it).
        retry_succeeded: True when a retry turned a failure into a success.
        total_retry_delay_ms: time spent waiting between attempts.
        circuit_breaker_state: ``CLOSED``, ``OPEN`` or ``HALF_OPEN`` at the end of the request.
        error_category: the last failure's category, None if the request succeeded first time.
        final_success: whether the request succeeded in the end.
        method: ``generate`` or ``stream``, so the record is sampled with its request.
        event: ``request`` (one per request) or ``circuit_transition`` (one per breaker
            state change of ``provider``/``model``).
        previous_circuit_state: for a transition, the state it left.
        operation: the GenAI operation of the request.
    """

    metric_type: ClassVar[str] = "reliability"

    retry_attempts: int = 0
    retry_succeeded: bool = False
    total_retry_delay_ms: float = 0.0
    circuit_breaker_state: str = "CLOSED"
    error_category: Optional[str] = None
    final_success: bool = True
    method: str = "generate"
    event: str = "request"
    previous_circuit_state: Optional[str] = None
    operation: str = "chat"

    def _failed(self) -> bool:
        return not self.final_success

    def _streamed(self) -> bool:
        return self.method == "stream"


class ErrorMetrics(BaseMetrics):
    """One failure (of a call, or of one attempt of it).

    Attributes:
        error_class: the exception's class name.
        error_category: see :mod:`steer_llm_sdk.errors`.
        status_code: HTTP status, when there was a response.
        retryable: whether retrying may succeed.
        message: the exception message, truncated and with credentials redacted.
        operation: the GenAI operation of the failed request.
    """

    metric_type: ClassVar[str] = "error"

    error_class: str = "Exception"
    error_category: str = "unknown"
    status_code: Optional[int] = None
    retryable: Optional[bool] = None
    message: Optional[str] = None
    operation: str = "chat"

    def _failed(self) -> bool:
        return True


class UsageMetrics(BaseMetrics):
    """Totals over a time window for one provider and model (never sampled).

    Attributes:
        window_start, window_end: epoch seconds.
        request_count, error_count: requests in the window, and how many failed.
        prompt_tokens, completion_tokens, total_tokens, cached_tokens: sums.
        cost_usd: sum of known costs, None if none was known.
    """

    metric_type: ClassVar[str] = "usage"

    window_start: float = 0.0
    window_end: float = 0.0
    request_count: int = 0
    error_count: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: Optional[float] = None


_INF = float("inf")
#: The bounds of each gap bucket: bucket ``i`` holds the gaps in ``(LOWS[i], HIGHS[i]]``.
GAP_LOWS: Tuple[float, ...] = (-_INF, *DURATION_BUCKETS)
GAP_HIGHS: Tuple[float, ...] = (*DURATION_BUCKETS, _INF)


class ChunkGaps:
    """The gaps between one stream's consecutive chunks, bucketed as they arrive.

    The stream meter buckets each gap on the caller's thread (see
    :meth:`~.streams.StreamMeter.measure`: consecutive gaps mostly fall in one bucket, and a
    run of them costs a comparison and an addition a chunk) and adds each run here when it
    ends; :meth:`add` takes one gap. A record therefore holds 15 counts and 15 sums whatever
    the stream's length, and the flush thread has nothing to bucket.

    Thread-safety: the meter's thread fills it while the stream runs; once the stream has
    ended any thread may call :meth:`histogram`.
    """

    __slots__ = ("counts", "sums", "minimum", "maximum", "_result")

    def __init__(self) -> None:
        self.counts = [0] * len(GAP_HIGHS)
        self.sums = [0.0] * len(GAP_HIGHS)
        self.minimum = _INF
        self.maximum = -_INF
        self._result: Optional[GapHistogram] = None

    def add(self, gap: float) -> None:
        """Count one gap of ``gap`` seconds (a gap equal to a boundary closes its bucket)."""
        index = bisect_left(DURATION_BUCKETS, gap)
        self.counts[index] += 1
        self.sums[index] += gap
        if gap < self.minimum:
            self.minimum = gap
        if gap > self.maximum:
            self.maximum = gap

    def histogram(self) -> GapHistogram:
        """The gaps, bucketed (built once; two threads asking at once get equal values)."""
        result = self._result
        if result is None:
            result = self._result = GapHistogram(
                DURATION_BUCKETS,
                tuple(self.counts),
                tuple(self.sums),
                sum(self.counts),
                sum(self.sums),
                self.minimum,
                self.maximum,
            )
        return result


#: Any record the pipeline carries; the type sinks receive.
AnyRecord = Union[RequestMetrics, StreamingMetrics, ReliabilityMetrics, ErrorMetrics, UsageMetrics]

#: The earlier name of :data:`AnyRecord` (kept for code that imports it; nothing here is about
#: agents: it means any record).
AgentMetrics = AnyRecord

METRIC_TYPES = {
    cls.metric_type: cls
    for cls in (RequestMetrics, StreamingMetrics, ReliabilityMetrics, ErrorMetrics, UsageMetrics)
}
