"""Explicit-bucket histograms aggregated by the OTLP sink itself and added to each export.

The OpenTelemetry SDK's ``Histogram.record()`` costs several microseconds a value (context
lookup, exemplar filter, attribute handling per call), which the per-chunk instrument
(``time_per_output_chunk``, one value per chunk) multiplies by every chunk of every stream.
On a provider the sink owns, it aggregates its histograms here instead (a bisect and a few
additions a value; a whole bucketed stream at once) and its exporter wrapper adds the points
to what the SDK exports, in the same resource and instrumentation scope, with the same
temporality. On a provider passed in by the application the SDK's instruments are used.

**Exemplars.** The SDK's instruments take exemplars from the context of each measurement,
which these histograms bypass: they keep their own, as the SDK's reservoir for explicit
buckets does. A value recorded with a link (the span of its call: ``(time in ns, trace id,
span id)``) becomes its bucket's exemplar, the newest one in a bucket wins, and each
export carries the exemplars recorded since the previous one (with either temporality).
An SDK without exemplars (before 1.27) exports none.

No I/O. Thread-safe: values arrive on the sink's delivery thread, exports run on the
reader's thread.
"""

import threading
import time
from bisect import bisect_left
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

_Exemplar: Any
try:  # SDK >= 1.27
    from opentelemetry.sdk.metrics import Exemplar as _Exemplar
except ImportError:  # pragma: no cover - older SDKs export no exemplars
    _Exemplar = None

Key = FrozenSet[Tuple[str, Any]]
#: How a value names the span of its call: (time in ns, trace id, span id).
Link = Tuple[int, int, int]
#: Whether the installed SDK exports exemplars.
EXEMPLARS = _Exemplar is not None


class _Point:
    __slots__ = ("attributes", "counts", "count", "sum", "min", "max", "exemplars")

    def __init__(self, attributes: Mapping[str, Any], buckets: int) -> None:
        self.attributes = dict(attributes)
        self.counts = [0] * buckets
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        #: bucket index -> (value, link) of its newest exemplar since the last export.
        self.exemplars: Optional[Dict[int, Tuple[float, Link]]] = None

    def take_exemplars(self) -> List[Any]:
        """The SDK exemplars since the last export, by bucket; forgets them."""
        kept = self.exemplars
        if not kept or _Exemplar is None:
            return []
        self.exemplars = None
        return [
            _Exemplar(None, value, time_ns, span_id, trace_id)
            for _, (value, (time_ns, trace_id, span_id)) in sorted(kept.items())
        ]


class _Family:
    __slots__ = ("name", "unit", "description", "bounds", "points")

    def __init__(self, name: str, unit: str, description: str, bounds: Sequence[float]) -> None:
        self.name = name
        self.unit = unit
        self.description = description
        self.bounds = tuple(float(b) for b in bounds)
        self.points: Dict[Key, _Point] = {}


def _data_point(point: _Point, family: _Family, start: int, now: int) -> HistogramDataPoint:
    exemplars = {"exemplars": point.take_exemplars()} if EXEMPLARS else {}
    return HistogramDataPoint(
        attributes=dict(point.attributes),
        start_time_unix_nano=start,
        time_unix_nano=now,
        count=point.count,
        sum=point.sum,
        bucket_counts=list(point.counts),
        explicit_bounds=list(family.bounds),
        min=point.min,
        max=point.max,
        **exemplars,
    )


class HistogramPoints:
    """The sink's own histograms.

    Args:
        families: ``(name, unit, description, boundaries)`` of each histogram.
        temporality: of the exported points (delta resets them at each export).
        scope: the instrumentation scope name the points are exported under.
    """

    def __init__(
        self,
        families: Sequence[Tuple[str, str, str, Sequence[float]]],
        temporality: AggregationTemporality,
        scope: str,
    ) -> None:
        self.lock = threading.Lock()
        self.families = {
            name: _Family(name, unit, description, bounds)
            for name, unit, description, bounds in families
        }
        self.temporality = temporality
        self.scope = scope
        self.start_ns = time.time_ns()

    def _point(self, family: _Family, key: Key, attributes: Mapping[str, Any]) -> _Point:
        point = family.points.get(key)
        if point is None:
            point = family.points[key] = _Point(attributes, len(family.bounds) + 1)
        return point

    def record(
        self,
        name: str,
        attributes: Mapping[str, Any],
        value: float,
        link: Optional[Link] = None,
    ) -> None:
        """Add one value (upper-inclusive buckets, as the SDK's); with a ``link``, as the
        exemplar of its bucket."""
        family = self.families[name]
        key = frozenset(attributes.items())
        with self.lock:
            point = self._point(family, key, attributes)
            bucket = bisect_left(family.bounds, value)
            point.counts[bucket] += 1
            if link is not None:
                exemplars = point.exemplars
                if exemplars is None:
                    exemplars = point.exemplars = {}
                exemplars[bucket] = (value, link)
            point.count += 1
            point.sum += value
            if value < point.min:
                point.min = value
            if value > point.max:
                point.max = value

    def record_bucketed(
        self,
        name: str,
        attributes: Mapping[str, Any],
        counts: Sequence[int],
        total: float,
        minimum: float,
        maximum: float,
    ) -> None:
        """Add values already bucketed on the family's boundaries (a stream's chunk gaps)."""
        family = self.families[name]
        key = frozenset(attributes.items())
        with self.lock:
            point = self._point(family, key, attributes)
            point_counts = point.counts
            for i, n in enumerate(counts):
                if n:
                    point_counts[i] += n
                    point.count += n
            point.sum += total
            point.min = min(point.min, minimum)
            point.max = max(point.max, maximum)

    def metrics(self) -> List[Metric]:
        """The points as SDK ``Metric`` objects, for one export (reset when delta)."""
        now = time.time_ns()
        out = []
        with self.lock:
            start = self.start_ns
            for family in self.families.values():
                if not family.points:
                    continue
                points = [_data_point(p, family, start, now) for p in family.points.values()]
                out.append(
                    Metric(
                        name=family.name,
                        description=family.description,
                        unit=family.unit,
                        data=Histogram(
                            data_points=points, aggregation_temporality=self.temporality
                        ),
                    )
                )
                if self.temporality is AggregationTemporality.DELTA:
                    family.points = {}
            if self.temporality is AggregationTemporality.DELTA:
                self.start_ns = now
        return out

    def add_to(self, data: Optional[MetricsData], resource: Resource) -> Optional[MetricsData]:
        """``data`` with this sink's histogram points added to its scope."""
        extra = self.metrics()
        if not extra:
            return data
        resources = list(data.resource_metrics) if data is not None else []
        if not resources:
            resources = [ResourceMetrics(resource=resource, scope_metrics=[], schema_url="")]
        first = resources[0]
        scopes = list(first.scope_metrics)
        for i, scope in enumerate(scopes):
            if scope.scope.name == self.scope:
                scopes[i] = ScopeMetrics(
                    scope=scope.scope,
                    metrics=[*scope.metrics, *extra],
                    schema_url=scope.schema_url,
                )
                break
        else:
            scopes.append(
                ScopeMetrics(scope=InstrumentationScope(self.scope), metrics=extra, schema_url="")
            )
        resources[0] = ResourceMetrics(
            resource=first.resource, scope_metrics=scopes, schema_url=first.schema_url
        )
        return MetricsData(resource_metrics=resources)
