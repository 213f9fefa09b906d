"""The OTLP sink's OpenTelemetry set-up: exporter, readers, views, resource and provider.

Everything is built from the resolved :class:`~._otel_env.ExportSettings`, never from
``os.environ`` again (a sink given its own ``environ`` must not read the process's). The
provider is the sink's own, never the global one; on it the sink aggregates its histograms
itself (:mod:`._otel_hist`) and the exporter wrapper adds them to each export.
"""

import inspect
import math
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.version import __version__ as sdk_version

from .. import _native
from ..runtime.forks import threads_stall_forks
from ._otel_env import ExportSettings
from ._otel_hist import HistogramPoints

#: The instrumentation scope of every instrument (and of the sink's own histogram points).
SCOPE = "steer_llm_sdk"

# View(aggregation_cardinality_limit=) exists from SDK 1.42 on.
_VIEW_TAKES_LIMIT = "aggregation_cardinality_limit" in inspect.signature(View).parameters
# MeterProvider(exemplar_filter=) from SDK 1.27 on.
_PROVIDER_TAKES_FILTER = "exemplar_filter" in inspect.signature(MeterProvider).parameters


class CountingExporter(MetricExporter):
    """Wraps the exporter to count exports that failed, to add the sink's own histogram
    points (:mod:`._otel_hist`) and to be switched off in a forked child that must not
    export its parent's data.

    Attributes:
        lock: guards :attr:`exports` and :attr:`failures` (exports run on the reader's
            thread, readers are anywhere).
        disabled: set in a forked child: exports succeed without sending anything.
        histograms, resource: the sink's own histogram points and the resource they are
            exported under (None: the SDK's instruments hold every histogram).
    """

    def __init__(self, inner: MetricExporter) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self.lock = threading.Lock()
        self.exports = 0
        self.failures = 0
        self.disabled = False
        self.histograms: Optional[HistogramPoints] = None
        self.resource = Resource.get_empty()

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self.disabled:
            return MetricExportResult.SUCCESS
        try:
            if self.histograms is not None:
                metrics_data = self.histograms.add_to(metrics_data, self.resource)  # type: ignore[assignment]
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            result = MetricExportResult.FAILURE
        with self.lock:
            self.exports += 1
            if result is not MetricExportResult.SUCCESS:
                self.failures += 1
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def preferred_temporality(name: str) -> Dict[type, AggregationTemporality]:
    """The exporter's preferred temporality per instrument class for the specification's
    ``cumulative``, ``delta`` and ``lowmemory`` preferences."""
    delta, cumulative = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE
    sync = delta if name in ("delta", "lowmemory") else cumulative
    return {
        Counter: sync,
        Histogram: sync,
        ObservableCounter: delta if name == "delta" else cumulative,
        UpDownCounter: cumulative,
        ObservableUpDownCounter: cumulative,
        ObservableGauge: cumulative,
    }


def otlp_exporter(
    settings: ExportSettings, preferred: Dict[type, AggregationTemporality]
) -> MetricExporter:
    """The OTLP exporter of ``settings.protocol`` (its package imported only then)."""
    timeout = settings.timeout_seconds
    if settings.protocol == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcExporter,
        )

        endpoint = str(settings.endpoint)
        scheme = endpoint.partition("://")[0] if "://" in endpoint else ""
        return GrpcExporter(
            endpoint=endpoint,
            insecure=scheme in ("http", ""),
            headers=settings.headers or None,
            timeout=timeout,
            compression={
                "gzip": grpc.Compression.Gzip,
                "deflate": grpc.Compression.Deflate,
                "none": grpc.Compression.NoCompression,
            }[settings.compression],
            preferred_temporality=preferred,
        )
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpExporter,
    )

    return HttpExporter(
        endpoint=settings.endpoint,
        headers=settings.headers or None,
        timeout=timeout,
        compression=Compression(settings.compression),
        preferred_temporality=preferred,
    )


def views(namespace: str, max_attribute_sets: int) -> Sequence[View]:
    """Room for the overflow set the sink folds into, on every instrument of ours. Older
    SDKs (Python 3.9 gets 1.41) lack the setting and keep their own default limit.
    Boundaries come from the instruments' advisory, which every supported SDK honours."""
    if not _VIEW_TAKES_LIMIT:
        return []
    limit = max_attribute_sets + 1
    return [
        View(instrument_name=name, aggregation_cardinality_limit=limit)
        for name in ("gen_ai.*", f"{namespace}.*")
    ]


def exemplar_filter(name: str) -> Dict[str, Any]:
    """``MeterProvider``'s argument for the filter named by ``OTEL_METRICS_EXEMPLAR_FILTER``
    as the sink resolved it (the provider would read ``os.environ`` again), or nothing on
    an SDK without exemplars."""
    if not _PROVIDER_TAKES_FILTER:
        return {}
    from opentelemetry.sdk import metrics

    kinds: Dict[str, Any] = {
        "trace_based": metrics.TraceBasedExemplarFilter,
        "always_on": metrics.AlwaysOnExemplarFilter,
        "always_off": metrics.AlwaysOffExemplarFilter,
    }
    return {"exemplar_filter": kinds[name]()}


def resource(settings: ExportSettings, instance_id: str) -> Resource:
    """The resource of the settings with this provider's ``service.instance.id``. Built
    here, not with ``Resource.create()``, which would read ``os.environ`` again."""
    return Resource(
        {
            "telemetry.sdk.language": "python",
            "telemetry.sdk.name": "opentelemetry",
            "telemetry.sdk.version": sdk_version,
            "service.instance.id": instance_id,
            **settings.resource,
        }
    )


class Setup:
    """A provider the sink owns, with what it needs to know about it.

    Attributes:
        provider: the ``MeterProvider``.
        exporter: the OTLP exporter's wrapper, None without an OTLP exporter.
        histograms: the sink's own histograms (one OTLP exporter), else None: the SDK's
            histogram instruments are used.
        exports_itself: True where gevent patched threading: the reader then has no thread
            of its own (it would be a greenlet sharing the exporter's sockets with the
            sink's real thread, and gevent sockets cannot cross threads), and the sink
            exports on its own thread when an export is due; and in a uWSGI master forking
            without Python's fork hooks, where a thread of ours would stall the workers
            forked while it runs (``threads_stall_forks``).
    """

    def __init__(
        self,
        settings: ExportSettings,
        preferred: Dict[type, AggregationTemporality],
        instance_id: str,
        histogram_families: Sequence[Tuple[str, str, str, Sequence[float]]],
        views: Sequence[View],
    ) -> None:
        self.exports_itself = _native.green() or threads_stall_forks()
        self.exporter: Optional[CountingExporter] = None
        readers = self._readers(settings, preferred)
        own = resource(settings, instance_id)
        self.histograms: Optional[HistogramPoints] = None
        if self.exporter is not None and len(readers) == 1:
            self.histograms = HistogramPoints(histogram_families, preferred[Histogram], SCOPE)
            self.exporter.histograms, self.exporter.resource = self.histograms, own
        self.provider = MeterProvider(
            metric_readers=readers,
            resource=own,
            # Our collector flushes into this provider at exit; the SDK's own exit hook
            # would run first and drop what is still pending.
            shutdown_on_exit=False,
            views=views,
            **exemplar_filter(settings.exemplar_filter),
        )

    def _readers(
        self, settings: ExportSettings, preferred: Dict[type, AggregationTemporality]
    ) -> List[MetricReader]:
        interval = math.inf if self.exports_itself else settings.interval_seconds * 1000
        timeout = settings.reader_timeout_seconds * 1000
        readers: List[MetricReader] = []
        for name in settings.exporters:
            if name == "otlp":
                self.exporter = CountingExporter(otlp_exporter(settings, preferred))
                exporter: MetricExporter = self.exporter
            else:
                exporter = ConsoleMetricExporter(preferred_temporality=preferred)
            readers.append(
                PeriodicExportingMetricReader(
                    exporter, export_interval_millis=interval, export_timeout_millis=timeout
                )
            )
        return readers
