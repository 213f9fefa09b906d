"""GenAI client spans: one per measured call, once the application has set a global
OpenTelemetry ``TracerProvider``.

A span follows the OpenTelemetry GenAI semantic conventions: named
``"{gen_ai.operation.name} {gen_ai.request.model}"``, kind CLIENT, carrying the operation,
the provider, the requested and the answering model, the token counts the provider
reported (estimated counts are left out, as the exporting sinks leave them out),
``server.address``/``server.port`` when known, the time to the first chunk of a stream,
and on failure ``error.type`` (the exception's class name) and status ERROR. Never prompt
or completion text, no exception message, and none of the record's other attributes.

Its parent is the span current when the call started (a Flask, Django or Celery request's
span, say), whatever thread later ends the call; its start and duration are those of its
RequestMetrics, to the nanosecond. The work is split so that the caller's thread stays
cheap and no exporter can delay anything else:

1. The caller's thread (``measure.call.new_request``): while :data:`STATE` is active, the
   current OpenTelemetry context is kept on the record (``RequestMetrics._trace``); while
   it is not, the call pays one attribute read.
2. The flush thread (:class:`SpanStage`, after the filters): each admitted RequestMetrics
   carrying a context gets its span, started at the record's start time under that
   context (starting a span runs no exporter). Its ids go to the record's ``trace_id`` and
   ``span_id`` when it is sampled, and the span replaces the context on the record.
3. The span sink's own delivery thread (:class:`SpanSink`, ``"spans"`` in
   ``collector.stats().sinks``, attached to a collector when it starts its first span):
   ends each span at its start plus the record's duration. A span processor may export
   in ``on_end`` (``SimpleSpanProcessor`` does), which then blocks this sink's backlog
   only, never the flush thread or another sink.

Our span is never the current span while the call runs: spans started inside the call (an
HTTP client's, a nested tracked call's) are its siblings under the same parent, not its
children.

**When a provider is noticed.** :func:`refresh` looks when a collector is made and each
time a collector's flush thread processes a batch. A provider set later is noticed at the
next batch: calls started before that get no span.

**No span** for records never admitted (sampled out, refused, filtered), records built by
user code rather than measured, calls that joined another measured call (the owner's span
covers them), calls started while no provider was noticed, calls whose span another GenAI
instrumentation makes (:func:`spanned_elsewhere`), and records the span sink's full
backlog refuses (counted as its ``dropped``; their spans are never ended, so never
exported).

**Accounting.** The span sink receives every record its collector delivers (it ends the
spans of those that have one) and counts them as any sink does, from the moment it was
attached: the invariant of ``CollectorStats`` holds for it only from then on.

**Fork.** A forked child starts its span sink with an empty backlog, as every channel: it
ends the spans of its own calls, and the parent ends those it had started before the fork.

**Exit.** The SDK's ``TracerProvider`` shuts itself down in an ``atexit`` handler; one
registered after the provider's runs first. When a provider is first noticed, a handler is
registered that flushes every collector making spans, so that the spans of records
pending at exit end while the provider still exports them (records made later at exit, by
streams the exit drain ends, get spans the stopped provider drops). A collector with a
sink that hangs then waits its ``shutdown_timeout_seconds`` twice at exit.

This module imports no OpenTelemetry package: it uses the API only once the application
has imported it (no provider can be set otherwise), so the package imports and works
without OpenTelemetry installed.
"""

import atexit
import sys
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

from .conventions import (
    ERROR_TYPE,
    OPERATION,
    PROVIDER,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    SERVER_ADDRESS,
    SERVER_PORT,
)
from .runtime import collectors

#: The instrumentation scope of our spans.
SCOPE_NAME = "steer_llm_sdk"
#: The name our span sink has in ``collector.stats().sinks``.
SINK_NAME = "spans"

# Span attributes of the GenAI conventions that only spans carry.
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_CREATION_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"

#: Operations whose client span describes one model call: a current span of one of these
#: is the span of the call we measure inside it (an agent's span is not).
_MODEL_CALLS = frozenset({"chat", "text_completion", "embeddings", "generate_content"})

#: Other instrumentations that make a GenAI span per SDK call, by module, with the modules
#: of the objects their spanned calls return (a prefix each; objects of the instrumentation's
#: own package, such as a wrapper around a stream, count too). A measured call that returned
#: (or was handed, by a call that joined it) such an object was spanned by them.
OTHER_GENAI_SPANS: Dict[str, Tuple[str, ...]] = {
    # OpenTelemetry's openai-v2: chat.completions.create and embeddings.create only.
    "opentelemetry.instrumentation.openai_v2": (
        "openai.types.chat.chat_completion",
        "openai.types.create_embedding_response",
    ),
    "opentelemetry.instrumentation.openai": ("openai.",),  # OpenLLMetry
    "opentelemetry.instrumentation.anthropic": ("anthropic.",),  # OpenLLMetry
    "opentelemetry.instrumentation.google_genai": ("google.genai.",),
    "opentelemetry.instrumentation.google_generativeai": ("google.generativeai.",),
}


def _no_context() -> Any:
    return None


class _State:
    """What the measuring layers read on every call (:attr:`active`) and what the flush
    threads start spans with. Written by :func:`refresh` only; every write is one
    attribute store, so a reader on any thread sees either value, both valid."""

    __slots__ = ("active", "captured", "capture", "api", "provider", "tracer", "covered")

    def __init__(self) -> None:
        #: Whether calls starting now keep their context for a span.
        self.active = False
        #: Whether :attr:`active` was ever True in this process, so that a record may carry
        #: a context; set before it. While False, the flush thread skips the span stage.
        self.captured = False
        #: Returns the current OpenTelemetry context (set before ``active`` turns True).
        self.capture: Callable[[], Any] = _no_context
        self.api: Any = None  # the opentelemetry.trace module
        self.provider: Any = None
        self.tracer: Any = None
        #: Module prefixes of the objects another active instrumentation's spans cover.
        self.covered: Tuple[str, ...] = ()


#: The process's tracing state (read by ``measure.call.new_request``).
STATE = _State()

#: The stages of live collectors that make spans (``trace_spans=True``).
_stages: "weakref.WeakSet[SpanStage]" = weakref.WeakSet()
_exit_hook_registered = False


def refresh() -> bool:
    """Look again whether spans are to be made: a global TracerProvider is set (not a
    no-op one) and a live collector makes spans; also which SDK calls another active
    GenAI instrumentation spans. Updates :data:`STATE`; returns whether it is active.

    Costs a dictionary lookup while OpenTelemetry's trace API is not imported, a few
    microseconds when it is. Thread-safe (concurrent calls store equal values); never
    raises.
    """
    state = STATE
    api = sys.modules.get("opentelemetry.trace")
    provider = _provider(api) if api is not None and len(_stages) else None
    if provider is None:
        state.active = False
        return False
    if provider is not state.provider and not _use(state, api, provider):
        state.active = False
        return False
    state.covered = covered_modules()
    state.captured = True
    state.active = True
    return True


def _provider(api: Any) -> Any:
    """The global TracerProvider the application set, or None."""
    try:
        provider = api.get_tracer_provider()
        if isinstance(provider, (api.ProxyTracerProvider, api.NoOpTracerProvider)):
            return None
        return provider
    except Exception:
        return None


def _use(state: _State, api: Any, provider: Any) -> bool:
    """Start spans with ``provider`` from now on; False when it makes no spans (an SDK
    switched off by ``OTEL_SDK_DISABLED`` hands out no-op tracers)."""
    try:
        tracer = provider.get_tracer(SCOPE_NAME, _version())
        capture = sys.modules["opentelemetry.context"].get_current
        if isinstance(tracer, api.NoOpTracer):
            return False
    except Exception:
        return False
    state.api, state.tracer, state.capture = api, tracer, capture
    state.provider = provider
    _register_exit_hook()
    return True


def _version() -> Optional[str]:
    try:
        from importlib.metadata import version

        return version("steer-llm-sdk")
    except Exception:
        return None


def _register_exit_hook() -> None:
    """Flush the collectors that make spans at exit before the provider shuts down (see
    the module docstring); once per process."""
    global _exit_hook_registered
    if not _exit_hook_registered:
        _exit_hook_registered = True
        atexit.register(_flush_spans_at_exit)


def _flush_spans_at_exit() -> None:
    """Flush each live collector that makes spans (and drains at exit), within its
    ``shutdown_timeout_seconds``; the exit drain shuts them down later, as always."""
    for collector in collectors():
        try:
            config = collector.config
            if config.trace_spans and config.flush_on_exit and not collector.is_shutdown:
                collector.flush()
        except Exception:
            pass


def active_instrumentations(known: Dict[str, Any]) -> List[Any]:
    """The values of ``known`` (keyed by an instrumentation's package, e.g.
    ``opentelemetry.instrumentation.openai_v2``) whose instrumentor is active now.

    Looks only at instrumentations already imported (never imports one) that report
    themselves instrumented through OpenTelemetry's ``BaseInstrumentor``: its singleton
    sits in the class attribute ``_instance``, the one private name read here
    (tests/sinks/test_spans.py fails if a release renames it). Never raises.
    """
    base = sys.modules.get("opentelemetry.instrumentation.instrumentor")
    if base is None:
        return []
    found: List[Any] = []
    try:
        pending = list(base.BaseInstrumentor.__subclasses__())
        while pending:
            cls = pending.pop()
            pending.extend(cls.__subclasses__())
            module = cls.__module__
            if module not in known:
                module = module.rpartition(".")[0]
            value = known.get(module)
            instance = cls.__dict__.get("_instance")
            if value is not None and getattr(instance, "is_instrumented_by_opentelemetry", False):
                found.append(value)
    except Exception:
        return found
    return found


#: :data:`OTHER_GENAI_SPANS` with each instrumentation's own package added to its prefixes
#: (the wrapper it returns around a stream is its own object).
_SPANNED = {module: (*prefixes, module + ".") for module, prefixes in OTHER_GENAI_SPANS.items()}


def covered_modules() -> Tuple[str, ...]:
    """Module prefixes of the objects returned by the SDK calls that another active GenAI
    instrumentation spans (see :data:`OTHER_GENAI_SPANS`); empty when none is active."""
    return tuple(prefix for found in active_instrumentations(_SPANNED) for prefix in found)


def spanned_elsewhere(record: Any) -> bool:
    """Whether another instrumentation already makes the span of the call of ``record``
    (a RequestMetrics carrying a context): the span current when the call started is a
    GenAI client span of a model call (an instrumentation wrapping ours, or the user's own
    span of this call), or the call returned, or was handed by a call that joined it, an
    object of an SDK call another active instrumentation spans. Read on the flush thread,
    before the stored response is dropped (or from the type kept of a response read on the
    caller's thread). Never raises.

    A stream counts by the type of what the call returned (kept as ``_response_type``):
    another instrumentation's wrapper when it wrapped the SDK inside ours.
    """
    state = STATE
    try:
        api = state.api
        if api is not None and _model_call_span(api, api.get_current_span(record._trace)):
            return True
        covered = state.covered
        if not covered:
            return False
        answered = record._response_type or type(record._response)
        if answered.__module__.startswith(covered):
            return True
        return any(type(item).__module__.startswith(covered) for item in record._joined or ())
    except Exception:
        return False


def _model_call_span(api: Any, span: Any) -> bool:
    if getattr(span, "kind", None) is not api.SpanKind.CLIENT:
        return False
    attributes = getattr(span, "attributes", None) or {}
    return attributes.get(OPERATION) in _MODEL_CALLS


class SpanStage:
    """The flush thread's side of one collector's spans: starts them (see the module
    docstring).

    Args:
        enabled: the collector's ``trace_spans``; when False, contexts kept by calls
            (another collector may want spans) are only dropped.
        attach: adds a sink to the collector's pipeline; called with the
            :class:`SpanSink` the first time a span is started.
        on_error: ``(where, exception)`` when a span could not be started; the record is
            delivered without it.

    Thread-safety: :meth:`refresh` and :meth:`start` run on the collector's flush thread
    (or the thread draining it inline), one at a time.
    """

    __slots__ = ("enabled", "attach", "on_error", "sink", "__weakref__")

    def __init__(
        self,
        enabled: bool,
        attach: Callable[[Any], None],
        on_error: Callable[[str, BaseException], None],
    ) -> None:
        self.enabled = enabled
        self.attach = attach
        self.on_error = on_error
        self.sink: Optional[SpanSink] = None
        if enabled:
            _stages.add(self)
        refresh()

    def refresh(self) -> None:
        """Once per batch: notice a provider set, or another instrumentation switched on,
        since the last batch."""
        refresh()

    def start(self, records: Any) -> None:
        """Start the span of each RequestMetrics in ``records`` carrying a context (and
        drop the context). Never raises."""
        state = STATE
        if not state.captured:  # no call kept a context: nothing to look at per record
            return
        make = self.enabled and state.tracer is not None
        started = False
        for record in records:
            if record.metric_type != "request":
                continue
            context = record._trace
            if context is None:
                continue
            record._trace = None
            if not make:
                continue
            try:
                span = start_span(state, record, context)
            except Exception as exc:
                self.on_error("spans", exc)
                continue
            if span is not None:
                record._trace = span
                started = True
        if started and self.sink is None:
            try:
                sink = SpanSink()
                self.attach(sink)
                self.sink = sink
            except Exception as exc:
                self.on_error("spans", exc)


def start_span(state: _State, record: Any, context: Any) -> Any:
    """Start the span of ``record`` under ``context`` and put its ids on the record when it
    is sampled. Returns the span when it records (it must be ended), else None."""
    api = state.api
    span = state.tracer.start_span(
        span_name(record),
        context,
        api.SpanKind.CLIENT,
        span_attributes(record),
        start_time=start_ns(record),
    )
    if not record.success:
        span.set_status(api.Status(api.StatusCode.ERROR))
    ids = span.get_span_context()
    if ids.trace_flags.sampled:
        record.trace_id = f"{ids.trace_id:032x}"
        record.span_id = f"{ids.span_id:016x}"
    return span if span.is_recording() else None


def span_name(record: Any) -> str:
    """``"{operation} {model}"``, or the operation alone when no model was asked for."""
    model = record.model
    return f"{record.operation} {model}" if model else record.operation


def span_attributes(record: Any) -> Dict[str, Any]:
    """The GenAI attributes of the span of ``record`` (see the module docstring)."""
    attributes: Dict[str, Any] = {OPERATION: record.operation, PROVIDER: record.provider}
    if record.model:
        attributes[REQUEST_MODEL] = record.model
    if record.response_model:
        attributes[RESPONSE_MODEL] = record.response_model
    if not record.tokens_estimated:
        for key, value in (
            (INPUT_TOKENS, record.prompt_tokens),
            (OUTPUT_TOKENS, record.completion_tokens),
            (CACHE_READ_TOKENS, record.cached_tokens),
            (CACHE_CREATION_TOKENS, record.cache_creation_tokens),
            (REASONING_TOKENS, record.reasoning_tokens),
        ):
            if value is not None:
                attributes[key] = value
    if record.time_to_first_chunk_ms is not None:
        attributes[TIME_TO_FIRST_CHUNK] = record.time_to_first_chunk_ms / 1000.0
    extra = record.attributes
    for key in (SERVER_ADDRESS, SERVER_PORT):
        value = extra.get(key)
        if value is not None:
            attributes[key] = value
    if not record.success:
        attributes[ERROR_TYPE] = record.error_class or "_OTHER"
    return attributes


def start_ns(record: Any) -> int:
    """The span's start: the record's ``timestamp``, in nanoseconds since the epoch."""
    return int(record.timestamp * 1e9)


class SpanSink:
    """Ends the spans its collector's flush thread started, each at its start plus its
    record's duration (``"spans"`` in ``collector.stats().sinks``). Attached by
    :class:`SpanStage`; never made by users. It ends spans and exports nothing itself:
    the application's TracerProvider exports them on its own schedule (its processors;
    ``provider.force_flush()``), and neither ``flush()`` nor ``close()`` touches it.

    Thread-safety: called by its channel's delivery thread only.
    """

    name = SINK_NAME

    def record(self, metrics: Any) -> None:
        if metrics.metric_type != "request":
            return
        span = metrics._trace
        if span is None:
            return
        metrics._trace = None
        duration = metrics.duration_ms
        end = start_ns(metrics) + (round(duration * 1e6) if duration is not None else 0)
        span.end(end)

    def flush(self) -> None:
        """Nothing buffered: every span is ended as its record arrives."""

    def __repr__(self) -> str:
        return "SpanSink()"


__all__ = [
    "OTHER_GENAI_SPANS",
    "SINK_NAME",
    "STATE",
    "SpanSink",
    "SpanStage",
    "covered_modules",
    "refresh",
    "span_attributes",
    "span_name",
    "spanned_elsewhere",
    "start_span",
]
