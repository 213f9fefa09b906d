"""Metric record types.

Plain slotted classes: building one on the caller's thread costs a few hundred nanoseconds and
no dict. Records are mutable while a tracked call fills them in; once handed to
``MetricsCollector.record`` they belong to the pipeline and must not be changed.

Each class declares a ``_schema`` (field name -> kind) that :func:`sanitize` uses, on the
background thread, to clamp bad values instead of failing: metrics describe user code, and a
``prompt_tokens="12"`` set by hand must not cost the rest of the record.

No I/O here, and no imports from the rest of the package.
"""

import math
from operator import attrgetter
from typing import Any, Dict, Mapping, Optional, Tuple, Union

Scalar = Union[str, int, float, bool]

# Field kinds understood by sanitize():
#   count   non-negative int or None          seconds/ms: non-negative float or None
#   ratio   float in [0, 1] or None           text: str or None (truncated)
#   name    str, never None                   flag: bool (None allowed only where declared)
_COUNT, _FLOAT, _RATIO, _TEXT, _NAME, _FLAG, _OPT_FLAG = (
    "count",
    "float",
    "ratio",
    "text",
    "name",
    "flag",
    "opt_flag",
)

_BASE_SCHEMA: Tuple[Tuple[str, str], ...] = (
    ("timestamp", _FLOAT),
    ("request_id", _NAME),
    ("provider", _NAME),
    ("model", _TEXT),
    ("sample_rate", _RATIO),
    ("parent_request_id", _TEXT),
)


class BaseMetrics:
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

    __slots__ = (
        "timestamp",
        "request_id",
        "provider",
        "model",
        "attributes",
        "sample_rate",
        "parent_request_id",
        "_trusted",
    )
    metric_type = "base"
    _schema: Tuple[Tuple[str, str], ...] = _BASE_SCHEMA

    def __init__(
        self,
        *,
        timestamp: float = 0.0,
        request_id: str = "",
        provider: str = "unknown",
        model: Optional[str] = None,
        attributes: Optional[Mapping[str, Scalar]] = None,
        sample_rate: float = 1.0,
        parent_request_id: Optional[str] = None,
    ) -> None:
        self.timestamp = timestamp
        self.request_id = request_id
        self.provider = provider
        self.model = model
        self.attributes = {} if attributes is None else attributes
        self.sample_rate = sample_rate
        self.parent_request_id = parent_request_id
        # True only for records built by the SDK itself, whose numeric and flag fields are
        # known to be valid: they skip field validation (user-supplied text is still checked).
        self._trusted = False

    def request_fields(self) -> Dict[str, Any]:
        """The fields that tie another record to this one's request (timestamp, ids,
        provider, model, a copy of the attributes), as keyword arguments."""
        return {
            "timestamp": self.timestamp,
            "request_id": self.request_id,
            "provider": self.provider,
            "model": self.model,
            "attributes": dict(self.attributes),
            "parent_request_id": self.parent_request_id,
        }

    def _failed(self) -> bool:
        """Whether this record describes a failure (judged by the error sampling rate)."""
        return False

    def _streamed(self) -> bool:
        """Whether this record belongs to a streamed request (streaming sampling rate)."""
        return False

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-safe dict of every public field, plus ``metric_type``."""
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


class RequestMetrics(BaseMetrics):
    """One LLM call, blocking or streamed.

    Attributes:
        duration_ms: wall time of the whole call (for streams: until the stream ended).
        time_to_first_token_ms: until the first chunk carrying content; None if not streamed.
        prompt_tokens, completion_tokens, total_tokens, cached_tokens: as the provider
            reported them (None when unknown).
        method: ``"generate"`` or ``"stream"``.
        response_format: ``"text"``, ``"json_object"``, ``"json_schema"``, ...
        success: False when the call raised (or the stream ended in an error).
        error_class: the exception's class name on failure.
        error_category: see :mod:`steer_llm_sdk.errors` (``rate_limit``, ``timeout``, ...).
        cost_usd: with cost tracking on and a known price; None otherwise.
        response_model: the model the provider says answered.
    """

    __slots__ = (
        "duration_ms",
        "time_to_first_token_ms",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cached_tokens",
        "method",
        "response_format",
        "success",
        "error_class",
        "error_category",
        "cost_usd",
        "response_model",
        "_start",
        "_response",
        "_extractor",
    )
    metric_type = "request"
    _schema = _BASE_SCHEMA + (
        ("duration_ms", _FLOAT),
        ("time_to_first_token_ms", _FLOAT),
        ("prompt_tokens", _COUNT),
        ("completion_tokens", _COUNT),
        ("total_tokens", _COUNT),
        ("cached_tokens", _COUNT),
        ("method", _NAME),
        ("response_format", _NAME),
        ("success", _FLAG),
        ("error_class", _TEXT),
        ("error_category", _TEXT),
        ("cost_usd", _FLOAT),
        ("response_model", _TEXT),
    )

    # Positional-or-keyword (unlike the other records): the tracker builds one per call and
    # positional arguments cost a third of keyword ones.
    def __init__(
        self,
        timestamp: float = 0.0,
        request_id: str = "",
        provider: str = "unknown",
        model: Optional[str] = None,
        attributes: Optional[Mapping[str, Scalar]] = None,
        sample_rate: float = 1.0,
        parent_request_id: Optional[str] = None,
        duration_ms: Optional[float] = None,
        time_to_first_token_ms: Optional[float] = None,
        prompt_tokens: Optional[int] = None,
        completion_tokens: Optional[int] = None,
        total_tokens: Optional[int] = None,
        cached_tokens: Optional[int] = None,
        method: str = "generate",
        response_format: str = "text",
        success: bool = True,
        error_class: Optional[str] = None,
        error_category: Optional[str] = None,
        cost_usd: Optional[float] = None,
        response_model: Optional[str] = None,
    ) -> None:
        self.timestamp = timestamp
        self.request_id = request_id
        self.provider = provider
        self.model = model
        self.attributes = {} if attributes is None else attributes
        self.sample_rate = sample_rate
        self.parent_request_id = parent_request_id
        self._trusted = False
        self.duration_ms = duration_ms
        self.time_to_first_token_ms = time_to_first_token_ms
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.total_tokens = total_tokens
        self.cached_tokens = cached_tokens
        self.method = method
        self.response_format = response_format
        self.success = success
        self.error_class = error_class
        self.error_category = error_category
        self.cost_usd = cost_usd
        self.response_model = response_model
        self._start = 0.0
        self._response: Any = None
        self._extractor: Any = None

    def _failed(self) -> bool:
        return not self.success

    def _streamed(self) -> bool:
        return self.method == "stream"

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
    ) -> None:
        """Set token counts; ``total_tokens`` defaults to prompt + completion when both known."""
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        if total_tokens is None and prompt_tokens is not None and completion_tokens is not None:
            total_tokens = prompt_tokens + completion_tokens
        self.total_tokens = total_tokens
        self.cached_tokens = cached_tokens


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
    """

    __slots__ = (
        "total_chunks",
        "total_chars",
        "chunks_per_second",
        "first_chunk_latency_ms",
        "json_objects_found",
        "aggregation_method",
        "aggregation_confidence",
        "status",
    )
    metric_type = "streaming"
    _schema = _BASE_SCHEMA + (
        ("total_chunks", _COUNT),
        ("total_chars", _COUNT),
        ("chunks_per_second", _FLOAT),
        ("first_chunk_latency_ms", _FLOAT),
        ("json_objects_found", _COUNT),
        ("aggregation_method", _NAME),
        ("aggregation_confidence", _RATIO),
        ("status", _NAME),
    )

    def __init__(
        self,
        *,
        timestamp: float = 0.0,
        request_id: str = "",
        provider: str = "unknown",
        model: Optional[str] = None,
        attributes: Optional[Mapping[str, Scalar]] = None,
        sample_rate: float = 1.0,
        parent_request_id: Optional[str] = None,
        total_chunks: int = 0,
        total_chars: int = 0,
        chunks_per_second: Optional[float] = None,
        first_chunk_latency_ms: Optional[float] = None,
        json_objects_found: int = 0,
        aggregation_method: str = "none",
        aggregation_confidence: float = 0.0,
        status: str = "completed",
    ) -> None:
        self.timestamp = timestamp
        self.request_id = request_id
        self.provider = provider
        self.model = model
        self.attributes = {} if attributes is None else attributes
        self.sample_rate = sample_rate
        self.parent_request_id = parent_request_id
        self._trusted = False
        self.total_chunks = total_chunks
        self.total_chars = total_chars
        self.chunks_per_second = chunks_per_second
        self.first_chunk_latency_ms = first_chunk_latency_ms
        self.json_objects_found = json_objects_found
        self.aggregation_method = aggregation_method
        self.aggregation_confidence = aggregation_confidence
        self.status = status

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
    """

    __slots__ = (
        "retry_attempts",
        "retry_succeeded",
        "total_retry_delay_ms",
        "circuit_breaker_state",
        "error_category",
        "final_success",
        "method",
        "event",
        "previous_circuit_state",
    )
    metric_type = "reliability"
    _schema = _BASE_SCHEMA + (
        ("retry_attempts", _COUNT),
        ("retry_succeeded", _FLAG),
        ("total_retry_delay_ms", _FLOAT),
        ("circuit_breaker_state", _NAME),
        ("error_category", _TEXT),
        ("final_success", _FLAG),
        ("method", _NAME),
        ("event", _NAME),
        ("previous_circuit_state", _TEXT),
    )

    def __init__(
        self,
        *,
        timestamp: float = 0.0,
        request_id: str = "",
        provider: str = "unknown",
        model: Optional[str] = None,
        attributes: Optional[Mapping[str, Scalar]] = None,
        sample_rate: float = 1.0,
        parent_request_id: Optional[str] = None,
        retry_attempts: int = 0,
        retry_succeeded: bool = False,
        total_retry_delay_ms: float = 0.0,
        circuit_breaker_state: str = "CLOSED",
        error_category: Optional[str] = None,
        final_success: bool = True,
        method: str = "generate",
        event: str = "request",
        previous_circuit_state: Optional[str] = None,
    ) -> None:
        self.timestamp = timestamp
        self.request_id = request_id
        self.provider = provider
        self.model = model
        self.attributes = {} if attributes is None else attributes
        self.sample_rate = sample_rate
        self.parent_request_id = parent_request_id
        self._trusted = False
        self.retry_attempts = retry_attempts
        self.retry_succeeded = retry_succeeded
        self.total_retry_delay_ms = total_retry_delay_ms
        self.circuit_breaker_state = circuit_breaker_state
        self.error_category = error_category
        self.final_success = final_success
        self.method = method
        self.event = event
        self.previous_circuit_state = previous_circuit_state

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
    """

    __slots__ = ("error_class", "error_category", "status_code", "retryable", "message")
    metric_type = "error"
    _schema = _BASE_SCHEMA + (
        ("error_class", _NAME),
        ("error_category", _NAME),
        ("status_code", _COUNT),
        ("retryable", _OPT_FLAG),
        ("message", _TEXT),
    )

    def __init__(
        self,
        *,
        timestamp: float = 0.0,
        request_id: str = "",
        provider: str = "unknown",
        model: Optional[str] = None,
        attributes: Optional[Mapping[str, Scalar]] = None,
        sample_rate: float = 1.0,
        parent_request_id: Optional[str] = None,
        error_class: str = "Exception",
        error_category: str = "unknown",
        status_code: Optional[int] = None,
        retryable: Optional[bool] = None,
        message: Optional[str] = None,
    ) -> None:
        self.timestamp = timestamp
        self.request_id = request_id
        self.provider = provider
        self.model = model
        self.attributes = {} if attributes is None else attributes
        self.sample_rate = sample_rate
        self.parent_request_id = parent_request_id
        self._trusted = False
        self.error_class = error_class
        self.error_category = error_category
        self.status_code = status_code
        self.retryable = retryable
        self.message = message

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

    __slots__ = (
        "window_start",
        "window_end",
        "request_count",
        "error_count",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cached_tokens",
        "cost_usd",
    )
    metric_type = "usage"
    _schema = _BASE_SCHEMA + (
        ("window_start", _FLOAT),
        ("window_end", _FLOAT),
        ("request_count", _COUNT),
        ("error_count", _COUNT),
        ("prompt_tokens", _COUNT),
        ("completion_tokens", _COUNT),
        ("total_tokens", _COUNT),
        ("cached_tokens", _COUNT),
        ("cost_usd", _FLOAT),
    )

    def __init__(
        self,
        *,
        timestamp: float = 0.0,
        request_id: str = "",
        provider: str = "unknown",
        model: Optional[str] = None,
        attributes: Optional[Mapping[str, Scalar]] = None,
        sample_rate: float = 1.0,
        parent_request_id: Optional[str] = None,
        window_start: float = 0.0,
        window_end: float = 0.0,
        request_count: int = 0,
        error_count: int = 0,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        total_tokens: int = 0,
        cached_tokens: int = 0,
        cost_usd: Optional[float] = None,
    ) -> None:
        self.timestamp = timestamp
        self.request_id = request_id
        self.provider = provider
        self.model = model
        self.attributes = {} if attributes is None else attributes
        self.sample_rate = sample_rate
        self.parent_request_id = parent_request_id
        self._trusted = False
        self.window_start = window_start
        self.window_end = window_end
        self.request_count = request_count
        self.error_count = error_count
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.total_tokens = total_tokens
        self.cached_tokens = cached_tokens
        self.cost_usd = cost_usd


#: Any record the pipeline carries; the type sinks receive.
AgentMetrics = Union[
    RequestMetrics, StreamingMetrics, ReliabilityMetrics, ErrorMetrics, UsageMetrics
]

METRIC_TYPES = {
    cls.metric_type: cls
    for cls in (RequestMetrics, StreamingMetrics, ReliabilityMetrics, ErrorMetrics, UsageMetrics)
}


# --------------------------------------------------------------------------- sanitising

_INF = math.inf


def _clean_number(value: Any, kind: str) -> Tuple[Any, bool]:
    """Return (clean value, changed) for a numeric field."""
    if value is None:
        return None, False
    if type(value) is bool or not isinstance(value, (int, float)):
        return None, True
    if isinstance(value, float) and not math.isfinite(value):
        return None, True
    if kind == _COUNT:
        if type(value) is not int:
            value, changed = int(value), True
        else:
            changed = False
        if value < 0:
            return 0, True
        return value, changed
    if kind == _RATIO:
        if value < 0:
            return 0.0, True
        if value > 1:
            return 1.0, True
        return value, False
    if value < 0:
        return 0.0, True
    return value, False


def _clean_text(value: Any, kind: str, max_length: int) -> Tuple[Any, bool]:
    if value is None:
        return ("unknown", True) if kind == _NAME else (None, False)
    changed = False
    if type(value) is not str:
        try:
            value = str(value)
        except Exception:
            value = f"<unprintable {type(value).__name__}>"
        changed = True
    if len(value) > max_length:
        return value[:max_length], True
    return value, changed


def _clean_attributes(attrs: Any, max_attributes: int, max_length: int) -> Tuple[Dict, bool]:
    if type(attrs) is not dict and not isinstance(attrs, Mapping):  # the ABC check is slow
        return {}, True
    changed = len(attrs) > max_attributes
    out: Dict[str, Scalar] = {}
    for key, value in attrs.items():
        if len(out) >= max_attributes:
            break
        if type(key) is not str:
            key, changed = str(key), True
        if len(key) > max_length:
            key, changed = key[:max_length], True
        kind = type(value)
        if kind is str:
            if len(value) > max_length:
                value, changed = value[:max_length], True
        elif kind is float:
            if not math.isfinite(value):
                value, changed = str(value), True
        elif value is None:  # an attribute set to None is an absent attribute
            changed = True
            continue
        elif kind is not int and kind is not bool:
            value, changed = _clean_text(value, _TEXT, max_length)[0], True
        out[key] = value
    return out, changed


_GETTERS: Dict[type, Tuple[Any, ...]] = {}


def _getters(cls: type) -> Tuple[Any, ...]:
    """Per class: one attrgetter per field kind, so the common all-valid case is a few C
    calls and tight loops instead of a getattr per field."""
    getters = _GETTERS.get(cls)
    if getters is None:
        schema = cls._schema  # type: ignore[attr-defined]

        def names(*kinds: str) -> Tuple[str, ...]:
            return tuple(name for name, kind in schema if kind in kinds)

        def getter(fields: Tuple[str, ...]) -> Any:
            if not fields:
                return lambda record: ()
            if len(fields) == 1:
                single = attrgetter(fields[0])
                return lambda record: (single(record),)
            return attrgetter(*fields)

        getters = (
            getter(names(_COUNT)),
            getter(names(_FLOAT)),
            getter(names(_RATIO)),
            getter(names(_TEXT)),
            getter(names(_NAME)),
            getter(names(_FLAG)),
            getter(names(_OPT_FLAG)),
        )
        _GETTERS[cls] = getters
    return getters


def _looks_valid(record: BaseMetrics, max_length: int) -> bool:
    counts, floats, ratios, texts, names, flags, opt_flags = _getters(type(record))
    for v in counts(record):
        if v is not None and (type(v) is not int or v < 0):
            return False
    for v in floats(record):
        if v is not None and not ((type(v) is float or type(v) is int) and 0 <= v < _INF):
            return False
    for v in ratios(record):
        if v is not None and not ((type(v) is float or type(v) is int) and 0 <= v <= 1):
            return False
    for v in texts(record):
        if v is not None and (type(v) is not str or len(v) > max_length):
            return False
    for v in names(record):
        if type(v) is not str or len(v) > max_length:
            return False
    for v in flags(record):
        if type(v) is not bool:
            return False
    for v in opt_flags(record):
        if v is not None and type(v) is not bool:
            return False
    return record.timestamp is not None


def sanitize(record: BaseMetrics, max_attributes: int, max_attribute_length: int) -> bool:
    """Clamp, truncate or stringify bad values in place; return True if anything changed.

    Negative numbers become 0, non-finite or non-numeric values in numeric fields become None,
    ratios are clamped to [0, 1], non-string names are stringified, strings are truncated to
    ``max_attribute_length``, attributes beyond ``max_attributes`` are dropped (first ones
    kept), attributes set to None are removed and non-scalar attribute values are
    stringified. Never raises for a record of one of
    this module's classes.
    """
    changed = False
    if record._trusted:
        model = record.model
        if model is not None and (type(model) is not str or len(model) > max_attribute_length):
            record.model, changed = _clean_text(model, _TEXT, max_attribute_length)
        if len(record.provider) > max_attribute_length:
            record.provider, changed = record.provider[:max_attribute_length], True
    elif not _looks_valid(record, max_attribute_length):
        changed = _sanitize_fields(record, max_attribute_length)
    attrs = record.attributes
    if attrs or (type(attrs) is not dict and not isinstance(attrs, Mapping)):
        clean, bad = _clean_attributes(attrs, max_attributes, max_attribute_length)
        if bad:
            record.attributes = clean
            changed = True
    return changed


def _sanitize_fields(record: BaseMetrics, max_attribute_length: int) -> bool:
    changed = False
    for name, kind in record._schema:
        value = getattr(record, name, None)
        if kind is _TEXT or kind is _NAME:
            if type(value) is str and len(value) <= max_attribute_length:
                continue
            value, bad = _clean_text(value, kind, max_attribute_length)
        elif kind is _FLAG or kind is _OPT_FLAG:
            if type(value) is bool or (value is None and kind is _OPT_FLAG):
                continue
            value, bad = bool(value), True
        else:
            value, bad = _clean_number(value, kind)
        if bad:
            setattr(record, name, value)
            changed = True
    if record.timestamp is None:
        record.timestamp = 0.0
    return changed
