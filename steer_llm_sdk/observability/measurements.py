"""One mapping from records to metric families, for every sink that exports metrics.

:func:`apply` decides, once for all such sinks, which families of :mod:`.conventions` a
record feeds, with which value and which attributes beyond the record's own: the
``error.type`` of a failed call (``_OTHER`` when its class is unknown), token types, the
estimate mark and when estimated counts are left out, error categories, breaker states as
numbers, and which records describe the process rather than a request (breaker state,
roll-ups). A sink supplies the primitives (:class:`Instruments`): how an attribute set is
built and extended in its own naming, and how a value reaches a counter, a histogram or a
gauge. The sinks therefore differ only in their naming and storage, never in their rules.
"""

from typing import Any, Callable, Optional, Protocol

from .conventions import BREAKER_VALUES

#: ``error.type`` of a failure whose class is unknown (the conventions' fallback).
OTHER = "_OTHER"


class Instruments(Protocol):
    """What a metrics sink provides to :func:`apply`. ``A`` below is the sink's own
    attribute-set type (a dict of OpenTelemetry attributes, a dict of Prometheus labels);
    :func:`apply` only passes them back."""

    #: Whether the ``gen_ai.client.*`` histograms (duration, time to first chunk, token
    #: usage, time per output chunk) are recorded by this sink.
    genai: bool
    #: Whether token counts the library estimated are exported (marked as estimates).
    export_estimated: bool

    def attributes(
        self,
        record: Any,
        *,
        response_model: Optional[str] = None,
        error_type: Optional[str] = None,
        scoped: bool = True,
    ) -> Any:
        """The attribute set of ``record``; ``scoped=False``: the process's state (no
        route or other request attributes)."""

    def typed(self, attrs: Any, token_type: Optional[str], estimated: bool = False) -> Any:
        """``attrs`` plus the token type (unless None) and, when ``estimated``, the
        estimate mark."""

    def categorised(self, attrs: Any, category: str) -> Any:
        """``attrs`` plus the error category."""

    def count(self, key: str, attrs: Any, value: float) -> None:
        """Add ``value`` to the counter of family ``key``."""

    def observe(self, key: str, attrs: Any, value: float) -> None:
        """Record ``value`` in the histogram of family ``key``."""

    def set(self, key: str, attrs: Any, value: float) -> None:
        """Set the gauge of family ``key``."""

    def gaps(self, key: str, attrs: Any, gaps: Any) -> None:
        """Record a stream's ``ChunkGaps`` (already bucketed) in the histogram ``key``."""


class Bound:
    """An :class:`Instruments` made of a sink's own callables, so that the sink's methods
    stay private to it; attribute reads and calls cost what calling the sink's methods
    directly would."""

    __slots__ = (
        "genai",
        "export_estimated",
        "attributes",
        "typed",
        "categorised",
        "count",
        "observe",
        "set",
        "gaps",
    )

    def __init__(
        self,
        *,
        genai: bool,
        export_estimated: bool,
        attributes: Callable[..., Any],
        typed: Callable[..., Any],
        categorised: Callable[[Any, str], Any],
        count: Callable[[str, Any, float], None],
        observe: Callable[[str, Any, float], None],
        set: Callable[[str, Any, float], None],
        gaps: Callable[[str, Any, Any], None],
    ) -> None:
        self.genai = genai
        self.export_estimated = export_estimated
        self.attributes = attributes
        self.typed = typed
        self.categorised = categorised
        self.count = count
        self.observe = observe
        self.set = set
        self.gaps = gaps


class Primitives:
    """Base of a sink that feeds :func:`apply`: it defines ``_attributes``, ``_typed``,
    ``_categorised``, ``_count``, ``_observe``, ``_set`` and ``_gaps`` (see
    :class:`Instruments`), and :meth:`_instruments` binds them once."""

    def _instruments(self, genai: bool, export_estimated: bool) -> Bound:
        me: Any = self
        return Bound(
            genai=genai,
            export_estimated=export_estimated,
            attributes=me._attributes,
            typed=me._typed,
            categorised=me._categorised,
            count=me._count,
            observe=me._observe,
            set=me._set,
            gaps=me._gaps,
        )


def apply(record: Any, out: Instruments) -> None:
    """Feed ``record`` to ``out``'s instruments; records of other kinds are ignored."""
    kind = record.metric_type
    if kind == "request":
        _request(record, out)
    elif kind == "streaming":
        _streaming(record, out)
    elif kind == "error":
        attrs = out.attributes(record, error_type=record.error_class or OTHER)
        out.count("errors", out.categorised(attrs, record.error_category or "unknown"), 1)
    elif kind == "reliability":
        _reliability(record, out)
    elif kind == "usage":
        _usage(record, out)


def _request(m: Any, out: Instruments) -> None:
    error_type = None if m.success else (m.error_class or OTHER)
    attrs = out.attributes(m, response_model=m.response_model, error_type=error_type)
    out.count("requests", attrs, 1)
    if m.cached_tokens:
        out.count("cached_tokens", attrs, m.cached_tokens)
    if m.time_to_first_token_ms is not None:
        out.observe("time_to_first_token", attrs, m.time_to_first_token_ms / 1000.0)
    genai = out.genai
    if genai:
        if m.duration_ms is not None:
            out.observe("duration", attrs, m.duration_ms / 1000.0)
        if m.time_to_first_chunk_ms is not None:
            out.observe("time_to_first_chunk", attrs, m.time_to_first_chunk_ms / 1000.0)
    estimated = m.tokens_estimated
    if estimated and not out.export_estimated:
        return  # the conventions: estimates are not usage unless asked for
    if m.cost_usd:
        out.count("cost", out.typed(attrs, None, True) if estimated else attrs, m.cost_usd)
    if not genai:
        return
    for token_type, value in (("input", m.prompt_tokens), ("output", m.completion_tokens)):
        if value is not None:
            out.observe("token_usage", out.typed(attrs, token_type, estimated), value)


def _streaming(m: Any, out: Instruments) -> None:
    error_type = (m.error_class or OTHER) if m.status == "error" else None
    attrs = out.attributes(m, response_model=m.response_model, error_type=error_type)
    if m.total_chunks:
        out.count("chunks", attrs, m.total_chunks)
    # time_to_first_chunk comes from the RequestMetrics (first_chunk_latency_ms is the same
    # value), so that it is exported with streaming metrics off too, and once.
    gaps = m.chunk_gaps
    if out.genai and gaps is not None and gaps.gap_count:
        out.gaps("time_per_output_chunk", attrs, gaps)


def _reliability(m: Any, out: Instruments) -> None:
    if m.retry_attempts:
        out.count("retries", out.attributes(m), m.retry_attempts)
    state = BREAKER_VALUES.get(m.circuit_breaker_state)
    if state is not None:
        out.set("breaker", out.attributes(m, scoped=False), state)


def _usage(m: Any, out: Instruments) -> None:
    attrs = out.attributes(m, scoped=False)
    out.count("usage_requests", attrs, m.request_count)
    if m.error_count:
        out.count("usage_errors", attrs, m.error_count)
    for token_type, value in (("input", m.prompt_tokens), ("output", m.completion_tokens)):
        if value:
            out.count("usage_tokens", out.typed(attrs, token_type), value)
    if m.cost_usd:
        out.count("usage_cost", attrs, m.cost_usd)


__all__ = ["OTHER", "Bound", "Instruments", "Primitives", "apply"]
