"""What every sink that exports metrics exports, decided once for all of them.

* :func:`apply` maps a record to the families of :mod:`.conventions` it feeds, with which
  value and which attributes beyond the record's own: the ``error.type`` of a failed call
  (``_OTHER`` when its class is unknown), the operation and provider names
  (:func:`operation_of`, :func:`provider_of`), token types, the estimate mark and when
  estimated counts are left out, error categories, breaker states as numbers, and which
  records describe the process rather than a request (breaker state, roll-ups). A sink
  supplies the primitives (:class:`Instruments`): how an attribute set is built and
  extended in its own naming, and how a value reaches a counter, a histogram or a gauge.
* Exemplars: :func:`apply` decides which values carry the span of their call (the latency
  histograms: duration, time to first chunk, time to first token; only a request record
  whose ``span_id`` is set pays anything); the sink decides the exemplar's form, or that it
  keeps none (:meth:`Instruments.link`). :func:`span_ids` reads the ids of a record.
* :class:`AttributeSets` bounds the distinct attribute sets of each family.
* :func:`health` maps a collector's accounting to the :data:`~.conventions.HEALTH_FAMILIES`;
  :class:`HealthCounts` keeps those series monotonic for a sink, over every collector that
  delivers to it (:func:`collectors_of`).

The sinks therefore differ only in their naming and storage, never in their rules.
"""

import re
import weakref
from typing import Any, Callable, Dict, Hashable, Iterable, List, Optional, Protocol, Tuple

from . import _native, runtime
from ._log import describe, rate_limited
from .conventions import BREAKER_VALUES, SINK_ERROR, SINK_QUEUE_FULL
from .sink import sink_name

#: ``error.type`` of a failure whose class is unknown, and the provider of a record that
#: names none (the conventions' fallback).
OTHER = "_OTHER"


def operation_of(record: Any) -> str:
    """``gen_ai.operation.name`` of ``record`` (``chat`` unless it says otherwise)."""
    return getattr(record, "operation", None) or "chat"


def provider_of(record: Any) -> str:
    """``gen_ai.provider.name`` of ``record`` (:data:`OTHER` when it names none)."""
    return record.provider or OTHER


_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")


def span_ids(trace_id: Any, span_id: Any) -> Optional[Tuple[int, int]]:
    """The ids of a record's span as numbers: ``trace_id`` and ``span_id`` as
    :class:`~.models.RequestMetrics` carries them (32 and 16 lowercase hex digits, not all
    zeros). None for anything else: a record built by user code may carry any value, and
    an exemplar must name a real span. Never raises."""
    if not (
        type(trace_id) is str
        and type(span_id) is str
        and _TRACE_ID.fullmatch(trace_id)
        and _SPAN_ID.fullmatch(span_id)
    ):
        return None
    trace, span = int(trace_id, 16), int(span_id, 16)
    return (trace, span) if trace and span else None


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

    def link(self, trace_id: str, span_id: str) -> Any:
        """The exemplar of a call's span in the sink's own form, handed back to
        :meth:`observe`; None when the sink keeps no exemplars or the ids name no span
        (see :func:`span_ids`). Called once per request record whose ``span_id`` is set."""

    def observe(self, key: str, attrs: Any, value: float, link: Any = None) -> None:
        """Record ``value`` in the histogram of family ``key``; with a ``link`` (from
        :meth:`link`), as the exemplar of the bucket it falls in."""

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
        "link",
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
        link: Callable[[str, str], Any],
        observe: Callable[..., None],
        set: Callable[[str, Any, float], None],
        gaps: Callable[[str, Any, Any], None],
    ) -> None:
        self.genai = genai
        self.export_estimated = export_estimated
        self.attributes = attributes
        self.typed = typed
        self.categorised = categorised
        self.count = count
        self.link = link
        self.observe = observe
        self.set = set
        self.gaps = gaps


class Primitives:
    """Base of a sink that feeds :func:`apply`: it defines ``_attributes``, ``_typed``,
    ``_categorised``, ``_count``, ``_link``, ``_observe``, ``_set`` and ``_gaps`` (see
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
            link=me._link,
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
    # The latency values of a call with a sampled span carry it as their exemplar.
    span_id = m.span_id
    link = None if span_id is None else out.link(m.trace_id, span_id)
    if m.time_to_first_token_ms is not None:
        out.observe("time_to_first_token", attrs, m.time_to_first_token_ms / 1000.0, link)
    genai = out.genai
    if genai:
        if m.duration_ms is not None:
            out.observe("duration", attrs, m.duration_ms / 1000.0, link)
        if m.time_to_first_chunk_ms is not None:
            out.observe("time_to_first_chunk", attrs, m.time_to_first_chunk_ms / 1000.0, link)
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


# ---------------------------------------------------------------------- bounded sets
class AttributeSets:
    """The distinct attribute sets of each family, at most ``limit`` per family.

    Args:
        limit: distinct sets a family may have (>= 1).
        overflowed: where refusals are counted (family -> count); the sink's public
            ``overflowed``, kept across a rebuild of the sets.

    Thread-safety: :meth:`admits` is called by one thread at a time (the sink's delivery
    thread); the count in ``overflowed`` may be read from any thread.
    """

    __slots__ = ("limit", "seen", "overflowed")

    def __init__(self, limit: int, overflowed: Dict[str, int]) -> None:
        self.limit = limit
        self.seen: Dict[str, set] = {}
        self.overflowed = overflowed

    def admits(self, family: str, key: Hashable) -> bool:
        """Whether ``key`` (a hashable form of an attribute set) has room in ``family``;
        a refusal is counted, and the sink then records into its overflow set."""
        seen = self.seen.get(family)
        if seen is None:
            seen = self.seen[family] = set()
        if key in seen:
            return True
        if len(seen) < self.limit:
            seen.add(key)
            return True
        self.overflowed[family] = self.overflowed.get(family, 0) + 1
        return False


# ---------------------------------------------------------------------- health
#: One health series: (family key, reason or ``""``, sink name or ``""``).
Series = Tuple[str, str, str]


def health(stats: Any, sinks: Iterable[Any] = ()) -> Dict[Series, int]:
    """The health families' values for one collector: cumulative since it was made (or
    since the fork that made this process).

    Args:
        stats: its ``CollectorStats`` (``collector.stats()``).
        sinks: its sinks (``collector.sinks``), read before ``stats``. A sink that counts
            its own failed exports (an ``int`` attribute ``export_failures``, as the OTLP
            sink's) is reported by that count, which includes the exports whose failure
            its ``flush()`` raised; every other sink by its calls that raised
            (``SinkStats.errors``).

    Returns:
        ``records_dropped`` by reason (``sampled_out``, ``filtered``, each reason of
        ``stats.dropped``; per sink, :data:`~.conventions.SINK_ERROR` and
        :data:`~.conventions.SINK_QUEUE_FULL`), and ``export_failures`` per sink. Nothing
        while the collector has had nothing to count (no record offered, no failure): an
        unused collector adds no series (a probe such as ``doctor()`` leaves no trace).
    """
    out: Dict[Series, int] = {
        ("records_dropped", "sampled_out", ""): stats.sampled_out,
        ("records_dropped", "filtered", ""): stats.filtered,
    }
    for reason, count in stats.dropped.items():
        out[("records_dropped", reason, "")] = count
    own = _own_failures(list(stats.sinks), list(sinks))
    for name, counts in stats.sinks.items():
        out[("records_dropped", SINK_ERROR, name)] = counts.failed
        out[("records_dropped", SINK_QUEUE_FULL, name)] = counts.dropped
        out[("export_failures", "", name)] = own.get(name, counts.errors)
    if not stats.recorded and not any(out.values()):
        return {}
    return out


def _own_failures(names: List[str], sinks: List[Any]) -> Dict[str, int]:
    """{stats name: export_failures} of the sinks counting their own. The stats name a sink
    by its ``name`` (``name#2`` for a second one), in the order of ``collector.sinks``; if
    the two disagree (a sink added or removed between the reads), none this time."""
    if len(names) != len(sinks):
        return {}
    out = {}
    for name, sink in zip(names, sinks):
        base = sink_name(sink)
        count = getattr(sink, "export_failures", None)
        if (name == base or name.startswith(base + "#")) and type(count) is int:
            out[name] = count
    return out


def collectors_of(sink: Any) -> List[Any]:
    """The live collectors of this process that deliver to ``sink``. Never raises (a
    failure is logged, rate-limited, and none are found)."""
    try:
        return [c for c in runtime.collectors() if any(s is sink for s in c.sinks)]
    except Exception as exc:
        rate_limited.warning(
            "health", "steer_llm_sdk could not find a sink's collectors", error=describe(exc)
        )
        return []


class HealthCounts:
    """The health series of the collectors delivering to a sink (or to sinks sharing one
    set of families), summed over them and kept monotonic.

    Each :meth:`update` reads the collectors given and returns how much every series grew
    since the previous one; :attr:`totals` holds the sums so far (what an observable
    counter reports). A series never goes down: a collector that is dropped keeps its share
    in the totals, and a value lower than the last one read adds nothing.

    Thread-safety: any thread may update (a delivery thread, a scrape, an exporter's
    reader); each growth is handed out once. :meth:`after_fork` starts over in a forked
    child, whose collectors count from zero again.
    """

    def __init__(self) -> None:
        self.after_fork()

    def after_fork(self) -> None:
        """Forget every reading (in a forked child: no lock is taken)."""
        self._lock = _native.allocate_lock()
        self._last: weakref.WeakKeyDictionary[Any, Dict[Series, int]] = weakref.WeakKeyDictionary()
        self.totals: Dict[Series, int] = {}

    def update(self, collectors: Iterable[Any]) -> Dict[Series, int]:
        """Read ``collectors``; returns {series: growth} of every series they have, 0
        included (so a sink can create each series before it first grows). Never raises:
        a collector that cannot be read is logged (rate-limited) and skipped."""
        readings = []
        for collector in collectors:
            try:
                sinks = collector.sinks
                readings.append((collector, health(collector.stats(), sinks)))
            except Exception as exc:
                rate_limited.warning(
                    "health",
                    "steer_llm_sdk could not read a collector's stats",
                    error=describe(exc),
                )
        grown: Dict[Series, int] = {}
        with self._lock:
            totals = self.totals
            for collector, values in readings:
                last = self._last.get(collector)
                if last is None:
                    last = self._last[collector] = {}
                for series, value in values.items():
                    step = value - last.get(series, 0)
                    if step > 0:
                        last[series] = value
                        totals[series] = totals.get(series, 0) + step
                    else:
                        step = 0
                        totals.setdefault(series, 0)
                    grown[series] = grown.get(series, 0) + step
        return grown

    def snapshot(self, family: str) -> Dict[Tuple[str, str], int]:
        """{(reason, sink): total} of one family."""
        with self._lock:
            return {(r, s): n for (key, r, s), n in self.totals.items() if key == family}


__all__ = [
    "OTHER",
    "AttributeSets",
    "Bound",
    "HealthCounts",
    "Instruments",
    "Primitives",
    "Series",
    "apply",
    "collectors_of",
    "health",
    "operation_of",
    "provider_of",
    "span_ids",
]
