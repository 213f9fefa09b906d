"""The OTLP sink's instruments on one provider, and how values reach them.

:class:`Recorder` creates an instrument per family of
:data:`~..conventions.FAMILIES` and supplies the primitives of
:func:`~..measurements.apply`: counter increments with the same attributes are summed per
batch and added once (each measurement costs the SDK a validation and a hash of its
attributes), histograms go to the sink's own aggregation when it has one
(:mod:`._otel_hist`), every attribute set is bounded first.

Exemplars: :func:`~..measurements.apply` hands the span of a call to its latency values
(:meth:`Recorder.link`, once per record whose ``span_id`` is set). The sink's own
histograms keep it as the value's exemplar; the SDK's histogram instruments get it as the
measurement's context, a non-recording span carrying the ids (the values are recorded on
the sink's thread, where no span of the call is current), from which the provider's
exemplar filter and reservoir take it (trace-based, its default, keeps it: the span is
sampled). With exemplars off, or an API whose instruments take no context (before 1.27),
no link is made.

The :data:`~..conventions.HEALTH_FAMILIES` are observable counters: at each collection
they read the collectors that deliver to the sink (:class:`~..measurements.HealthCounts`)
and report the cumulative totals.
"""

import inspect
import time
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from opentelemetry import metrics as _metrics_api
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from ..conventions import FAMILIES, HEALTH_FAMILIES, REASON, SINK
from ..measurements import Bound, HealthCounts, apply, collectors_of, span_ids
from ._otel_attrs import OVERFLOW, Attributes
from ._otel_hist import EXEMPLARS, HistogramPoints

#: Whether the API's histograms take a measurement's context (API >= 1.27).
TAKES_CONTEXT = "context" in inspect.signature(_metrics_api.Histogram.record).parameters
_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)


def _no_link(trace_id: str, span_id: str) -> None:
    return None


def own_link(trace_id: str, span_id: str) -> Optional[Tuple[int, int, int]]:
    """The link of :mod:`._otel_hist`: (now in ns, trace id, span id)."""
    ids = span_ids(trace_id, span_id)
    return None if ids is None else (time.time_ns(), ids[0], ids[1])


def context_link(trace_id: str, span_id: str) -> Any:
    """A context whose current span carries the ids (sampled), for an SDK instrument."""
    ids = span_ids(trace_id, span_id)
    if ids is None:
        return None
    span = trace.NonRecordingSpan(
        trace.SpanContext(ids[0], ids[1], is_remote=False, trace_flags=_SAMPLED)
    )
    return trace.set_span_in_context(span)


class Recorder:
    """Instruments and their primitives (see the module docstring).

    Args:
        meter: where the instruments are created.
        namespace: the prefix of the SDK's own families.
        genai: False leaves out the ``gen_ai.*`` families.
        histograms: the sink's own histogram aggregation, or None to use the SDK's
            histogram instruments.
        attributes: the attribute sets.
        health: the health totals the observable counters report.
        owner: the sink (held weakly): the collectors delivering to it are read.
        exemplars: False makes no exemplar link (``OTEL_METRICS_EXEMPLAR_FILTER`` is
            ``always_off``).

    Attributes:
        families: family key -> instrument name, for every family created.
        instruments: family key -> instrument (None for a histogram aggregated in
            ``histograms``).

    Thread-safety: records arrive on the sink's delivery thread; the health callbacks run
    on the reader's.
    """

    def __init__(
        self,
        meter: Meter,
        namespace: str,
        genai: bool,
        histograms: Optional[HistogramPoints],
        attributes: Attributes,
        health: HealthCounts,
        owner: Any,
        exemplars: bool = True,
    ) -> None:
        self.histograms = histograms
        #: The link primitive (see the module docstring), chosen once.
        self.link: Callable[[str, str], Any] = _no_link
        if exemplars and histograms is not None and EXEMPLARS:
            self.link = own_link
        elif exemplars and histograms is None and TAKES_CONTEXT:
            self.link = context_link
        self.attributes = attributes
        self.health = health
        self._owner = weakref.ref(owner)
        self._sums: Dict[Tuple[Any, ...], list] = {}
        self.families: Dict[str, str] = {}
        self.instruments: Dict[str, Any] = {}
        for family in FAMILIES:
            if family.genai and not genai:
                continue
            name = self.families[family.key] = family.name.format(ns=namespace)
            if family.kind == "histogram":
                self.instruments[family.key] = (
                    None  # aggregated by self.histograms
                    if histograms is not None
                    else meter.create_histogram(
                        name,
                        unit=family.unit,
                        description=family.description,
                        explicit_bucket_boundaries_advisory=list(family.buckets),
                    )
                )
            elif family.kind == "counter":
                self.instruments[family.key] = meter.create_counter(
                    name, unit=family.unit, description=family.description
                )
            else:
                self.instruments[family.key] = meter.create_gauge(
                    name, unit=family.unit, description=family.description
                )
        for family in HEALTH_FAMILIES:
            name = self.families[family.key] = family.name.format(ns=namespace)
            self.instruments[family.key] = meter.create_observable_counter(
                name,
                callbacks=[self._health_callback(family.key)],
                unit=family.unit,
                description=family.description,
            )

    def bound(self, genai: bool, export_estimated: bool) -> Bound:
        """The primitives for :func:`~..measurements.apply`."""
        attributes = self.attributes
        return Bound(
            genai=genai,
            export_estimated=export_estimated,
            attributes=attributes.attributes,
            typed=attributes.typed,
            categorised=attributes.categorised,
            count=self.count,
            link=self.link,
            observe=self.observe,
            set=self.set,
            gaps=self.gaps,
        )

    def record_batch(self, batch: Iterable[Any], out: Bound) -> None:
        """Feed every record of ``batch`` through ``out``; counters are added at the end."""
        sums: Dict[Tuple[Any, ...], list] = {}
        self._sums = sums
        for metrics in batch:
            apply(metrics, out)
        for (counter, _), (attrs, value) in sums.items():
            counter.add(value, attrs)

    # ------------------------------------------------------------------ the primitives
    def count(self, key: str, attrs: Dict[str, Any], value: float) -> None:
        counter = self.instruments[key]
        attrs = self.attributes.bounded(self.families[key], attrs)
        slot = (counter, id(attrs)) if attrs is OVERFLOW else (counter, frozenset(attrs.items()))
        sums = self._sums
        entry = sums.get(slot)
        if entry is None:
            sums[slot] = [attrs, value]
        else:
            entry[1] += value

    def observe(self, key: str, attrs: Dict[str, Any], value: float, link: Any = None) -> None:
        name = self.families[key]
        attrs = self.attributes.bounded(name, attrs)
        histograms = self.histograms
        if histograms is not None:
            histograms.record(name, attrs, value, link)
        elif link is None:  # an API before 1.27 takes no context (and gets no link)
            self.instruments[key].record(value, attrs)
        else:
            self.instruments[key].record(value, attrs, link)

    def set(self, key: str, attrs: Dict[str, Any], value: float) -> None:
        self.instruments[key].set(value, self.attributes.bounded(self.families[key], attrs))

    def gaps(self, key: str, attrs: Dict[str, Any], gaps: Any) -> None:
        name = self.families[key]
        bounded = self.attributes.bounded(name, attrs)
        histograms = self.histograms
        if histograms is not None:  # the whole stream at once
            histograms.record_bucketed(
                name, bounded, gaps.counts, gaps.gap_sum, gaps.minimum, gaps.maximum
            )
            return
        # The SDK's instrument takes one value per call: each bucket's mean, once per gap in
        # it, gives the exact bucket counts and the exact sum.
        record = self.instruments[key].record
        for count, total in zip(gaps.counts, gaps.sums):
            if count:
                mean = total / count
                for _ in range(count):
                    record(mean, bounded)

    # ------------------------------------------------------------------ health
    def _health_callback(self, key: str) -> Callable[[CallbackOptions], Sequence[Observation]]:
        def observe(options: CallbackOptions) -> List[Observation]:
            sink = self._owner()
            if sink is not None:
                self.health.update(collectors_of(sink))
            return [
                Observation(total, health_attributes(reason, sink_name))
                for (reason, sink_name), total in self.health.snapshot(key).items()
            ]

        return observe


def health_attributes(reason: str, sink: str) -> Dict[str, str]:
    """The attributes of a health series (an empty part is left out)."""
    attrs = {REASON: reason} if reason else {}
    if sink:
        attrs[SINK] = sink
    return attrs
