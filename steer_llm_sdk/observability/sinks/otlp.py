"""OTelMetricsSink: records into OpenTelemetry instruments, exported over OTLP.

Instruments follow the OpenTelemetry GenAI semantic conventions (names, units and bucket
boundaries exactly), plus the SDK's own, prefixed with the namespace (the table is
:data:`~steer_llm_sdk.observability.conventions.FAMILIES`):

=============================================  =========  ==================================
instrument                                     unit       from
=============================================  =========  ==================================
gen_ai.client.operation.duration (histogram)   s          RequestMetrics.duration_ms
gen_ai.client.token.usage (histogram)          {token}    prompt (input) / completion (output)
gen_ai.client.operation.time_to_first_chunk    s          RequestMetrics.time_to_first_chunk_ms
gen_ai.client.operation.time_per_output_chunk  s          one value per chunk after the first
<ns>.time_to_first_token (histogram)           s          RequestMetrics.time_to_first_token_ms
<ns>.requests (counter)                        {request}  RequestMetrics
<ns>.errors (counter, error.category)          {error}    ErrorMetrics
<ns>.tokens.cached (counter)                   {token}    RequestMetrics.cached_tokens
<ns>.cost (counter)                            USD        RequestMetrics.cost_usd
<ns>.stream.chunks (counter)                   {chunk}    StreamingMetrics.total_chunks
<ns>.retry.attempts (counter)                  {attempt}  ReliabilityMetrics.retry_attempts
<ns>.circuit_breaker.state (gauge)             1          0 closed, 1 half-open, 2 open
<ns>.usage.* (counters)                        ...        UsageMetrics roll-ups
=============================================  =========  ==================================

``<ns>.time_to_first_token`` is TTFT, the time to the first content (text, a tool call or
reasoning): the one dashboards should show. ``time_to_first_chunk`` is the time to the first
chunk of any kind (a role-only chunk counts), as the conventions define it. Both are recorded
from a streamed call's ``RequestMetrics``, each when known.

Attributes: ``gen_ai.operation.name`` (what was called), ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.response.model`` when known, ``error.type`` on failures
(the error class, the same value on every instrument a failed request touches),
``server.address``/``server.port`` when the record carries them, and custom attributes whose
key is in ``attribute_allowlist``. The breaker gauge is process state: it carries the
provider and model only. Values are truncated; once an instrument has ``max_attribute_sets``
distinct attribute sets, new ones fold into one set marked ``otel.metric.overflow=true`` and
are counted in :attr:`OTelMetricsSink.overflowed`.

Token counts estimated locally (``RequestMetrics.tokens_estimated``) are not exported as
``gen_ai.client.token.usage`` and are not priced into ``<ns>.cost`` unless
``export_estimated_tokens=True``; then their points carry ``llm.usage.estimated=true``.

The sink owns its ``MeterProvider`` (never the global one) unless one is passed in; the
histograms carry the conventions' boundaries either way (the instrument API's explicit
bucket-boundary advisory). ``record()`` only updates instruments; exports happen on the
OpenTelemetry reader's thread every export interval and on ``flush()``, which raises when an
export failed, so the collector counts it (the SDK's ``force_flush()`` reports success even
then). Settings follow the standard variables (see :mod:`._otel_env`).

After ``os.fork()`` a child gets a fresh provider with its own ``service.instance.id`` and
empty aggregations; the inherited provider's exporter is disabled, so the parent's data is
exported once, by the parent.
"""

import inspect
import math
import os
import sys
import threading
import time
import uuid
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple

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
from .._log import logger
from ..conventions import (
    DEFAULT_ALLOWLIST,
    DURATION_BUCKETS,
    FAMILIES,
    TOKEN_BUCKETS,
)
from ..measurements import Primitives, apply
from ..models import BaseMetrics
from ..runtime import SINKS, on_fork
from ._otel_env import ExportSettings
from ._otel_hist import HistogramPoints

__all__ = ["DURATION_BUCKETS", "TOKEN_BUCKETS", "ExportFailedError", "OTelMetricsSink"]

OVERFLOW = {"otel.metric.overflow": True}
SCOPE = "steer_llm_sdk"
#: How often the sink looks again for another active GenAI instrumentation.
CHECK_OTHERS_SECONDS = 30.0
ESTIMATED = "llm.usage.estimated"

# View(aggregation_cardinality_limit=) exists from SDK 1.42 on.
_VIEW_TAKES_LIMIT = "aggregation_cardinality_limit" in inspect.signature(View).parameters

#: Modules of instrumentations that record GenAI client metrics themselves.
OTHER_GENAI_INSTRUMENTATIONS = {
    "opentelemetry.instrumentation.openai_v2": "OpenTelemetry openai-v2 instrumentor",
    "opentelemetry.instrumentation.openai": "OpenLLMetry openai instrumentor",
    "opentelemetry.instrumentation.anthropic": "OpenLLMetry anthropic instrumentor",
    "opentelemetry.instrumentation.google_genai": "OpenTelemetry google-genai instrumentor",
    "opentelemetry.instrumentation.google_generativeai": "OpenLLMetry google-generativeai",
    "opentelemetry.instrumentation.bedrock": "OpenLLMetry bedrock instrumentor",
    "opentelemetry.instrumentation.botocore": "OpenTelemetry botocore instrumentor",
}


def active_genai_instrumentations() -> List[str]:
    """Names of other GenAI instrumentations that are imported and active in this process.

    Looks only at modules already imported (never imports one) and at instrumentors that
    report themselves instrumented through OpenTelemetry's ``BaseInstrumentor``.
    """
    base_module = sys.modules.get("opentelemetry.instrumentation.instrumentor")
    if base_module is None:
        return []
    found = []
    pending = list(base_module.BaseInstrumentor.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        label = OTHER_GENAI_INSTRUMENTATIONS.get(cls.__module__.rpartition(".")[0]) or (
            OTHER_GENAI_INSTRUMENTATIONS.get(cls.__module__)
        )
        instance = cls.__dict__.get("_instance")
        if label and getattr(instance, "_is_instrumented_by_opentelemetry", False):
            found.append(label)
    return sorted(set(found))


class _CountingExporter(MetricExporter):
    """Wraps the exporter to count exports that failed, to add the sink's own histogram
    points (:mod:`._otel_hist`) and to be switched off in a forked child that must not
    export its parent's data."""

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


class ExportFailedError(RuntimeError):
    """Raised by ``flush()`` when OTLP exports failed since the previous flush."""


def _temporality(name: str) -> Dict[type, AggregationTemporality]:
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


class OTelMetricsSink(Primitives):
    """A sink exporting OpenTelemetry metrics over OTLP; see the module docstring.

    Every setting left None is read from the standard variables (the specific
    ``OTEL_EXPORTER_OTLP_METRICS_*`` one first, then ``OTEL_EXPORTER_OTLP_*``), then falls back
    to its default. ``OTEL_SDK_DISABLED=true`` or ``OTEL_METRICS_EXPORTER=none`` make the
    sink accept and drop records without touching OpenTelemetry.

    Args:
        service_name: ``service.name``; default ``OTEL_SERVICE_NAME``, then ``service.name``
            in ``OTEL_RESOURCE_ATTRIBUTES``, then ``unknown_service``.
        namespace: prefix of the SDK's own instruments (``llm``). Not a resource attribute.
        endpoint: the OTLP endpoint; for ``http/protobuf`` a base URL gets ``/v1/metrics``
            appended (as ``OTEL_EXPORTER_OTLP_ENDPOINT`` does;
            ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` is used as given).
        protocol: ``http/protobuf`` (default) or ``grpc``; ``http/json`` is refused with a
            message saying so.
        headers: sent with each export (variables: ``k=v,k2=v2``, percent-encoded).
        compression: ``gzip``, ``deflate`` or ``none`` (default).
        export_interval_seconds: between periodic exports; ``OTEL_METRIC_EXPORT_INTERVAL``
            (milliseconds), default 10 s.
        temporality: ``cumulative`` (default), ``delta`` or ``lowmemory``;
            ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE``.
        meter_provider: use this provider instead of owning one (then the exporter
            settings are unused and ``close()`` leaves it running).
        resource_attributes: added to the resource, over ``OTEL_RESOURCE_ATTRIBUTES``.
        attribute_allowlist: custom attribute keys that may become metric attributes.
        max_attribute_sets: distinct attribute sets per instrument before overflow.
        max_attribute_length: longest attribute value exported.
        export_timeout_seconds: deadline of one export; ``OTEL_EXPORTER_OTLP_*TIMEOUT``
            (milliseconds, as the specification defines them), default 10 s.
        export_estimated_tokens: also export locally estimated token counts and their cost,
            marked ``llm.usage.estimated=true`` (default False, as the conventions ask).
        genai_instruments: False leaves the ``gen_ai.*`` instruments to another
            instrumentation that records them for the same calls (the SDK's own ``<ns>.*``
            instruments are kept).
        environ: where to read the variables (default ``os.environ``).

    Raises:
        ValueError: an unsupported protocol, compression, temporality or exporter, a bad
            number or limit.
    """

    name = "otlp"

    def __init__(
        self,
        service_name: Optional[str] = None,
        namespace: str = "llm",
        endpoint: Optional[str] = None,
        protocol: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        export_interval_seconds: Optional[float] = None,
        temporality: Optional[str] = None,
        meter_provider: Optional[MeterProvider] = None,
        resource_attributes: Optional[Mapping[str, Any]] = None,
        attribute_allowlist: Iterable[str] = DEFAULT_ALLOWLIST,
        max_attribute_sets: int = 2000,
        max_attribute_length: int = 256,
        export_timeout_seconds: Optional[float] = None,
        environ: Optional[Mapping[str, str]] = None,
        *,
        compression: Optional[str] = None,
        export_estimated_tokens: bool = False,
        genai_instruments: bool = True,
    ) -> None:
        env = os.environ if environ is None else environ
        if not namespace or not isinstance(namespace, str):
            raise ValueError("namespace must be a non-empty string")
        if max_attribute_sets < 1:
            raise ValueError(f"max_attribute_sets must be >= 1, got {max_attribute_sets}")
        if export_interval_seconds is not None and not export_interval_seconds > 0:
            raise ValueError("export_interval_seconds must be > 0")
        settings = ExportSettings(
            env,
            endpoint=endpoint,
            protocol=protocol,
            headers=headers,
            compression=compression,
            timeout_seconds=export_timeout_seconds,
            interval_seconds=export_interval_seconds,
            temporality=temporality,
            service_name=service_name,
            resource_attributes=resource_attributes,
        )
        self.settings = settings
        self.namespace = namespace
        self.service_name = str(settings.resource["service.name"])
        self.protocol = settings.protocol
        self.endpoint = settings.endpoint
        self.headers = settings.headers
        self.export_interval_seconds = settings.interval_seconds
        self.export_timeout_seconds = settings.timeout_seconds
        self.temporality = settings.temporality
        self._preferred = _temporality(settings.temporality)
        self.resource_attributes = dict(resource_attributes or {})
        self.allowlist: FrozenSet[str] = frozenset(attribute_allowlist)
        self.max_attribute_sets = max_attribute_sets
        self.max_attribute_length = max_attribute_length
        self.export_estimated_tokens = export_estimated_tokens
        self.genai_instruments = genai_instruments
        self._external_provider = meter_provider
        #: False when OTEL_SDK_DISABLED or OTEL_METRICS_EXPORTER=none switched the sink off.
        self.active = not settings.disabled and (
            meter_provider is not None or bool(settings.exporters)
        )
        self.overflowed: Dict[str, int] = {}
        self._stale = False
        self._warned_others = False
        self._next_check = 0.0
        self._exporter_wrapper: Optional[_CountingExporter] = None
        if self.active:
            self._build()
            on_fork(self, "_after_fork", SINKS)
        else:
            logger.info(
                "OTelMetricsSink is off: %s",
                "OTEL_SDK_DISABLED=true" if settings.disabled else "OTEL_METRICS_EXPORTER=none",
            )
        self._check_others()

    # ------------------------------------------------------------------ setup
    def _exporter(self) -> MetricExporter:
        settings = self.settings
        timeout = settings.timeout_seconds
        if self.protocol == "grpc":
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
                preferred_temporality=self._preferred,
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
            preferred_temporality=self._preferred,
        )

    def _readers(self) -> List[MetricReader]:
        readers: List[MetricReader] = []
        interval = self.settings.interval_seconds * 1000
        # Where gevent has patched threading, the reader's own thread would be a greenlet on
        # the application's hub, sharing the exporter's pooled sockets with the sink's real
        # thread, and gevent sockets cannot cross threads. The reader then gets no thread
        # and the sink exports on its own thread when the interval is due (record_batch).
        self._exports_itself = _native.green()
        if self._exports_itself:
            interval = math.inf
            self._next_export = time.monotonic() + self.settings.interval_seconds
        timeout = self.settings.reader_timeout_seconds * 1000
        for name in self.settings.exporters:
            if name == "otlp":
                self._exporter_wrapper = _CountingExporter(self._exporter())
                exporter: MetricExporter = self._exporter_wrapper
            else:
                exporter = ConsoleMetricExporter(preferred_temporality=self._preferred)
            readers.append(
                PeriodicExportingMetricReader(
                    exporter, export_interval_millis=interval, export_timeout_millis=timeout
                )
            )
        return readers

    def _build(self) -> None:
        """Create (or re-create, in a forked child) the provider and the instruments."""
        self.instance_id = str(uuid.uuid4())
        self._sets: Dict[str, set] = {}
        self._attr_cache: Dict[Tuple[Any, ...], Dict[str, Any]] = {}
        self._typed_cache: Dict[Tuple[Any, ...], Tuple[Dict[str, Any], Dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._histograms: Optional[HistogramPoints] = None
        self._exports_itself = False  # see _readers
        if self._external_provider is not None:
            self._exporter_wrapper = None
            self.provider = self._external_provider
        else:
            # Built from the resolved settings, not Resource.create(), which would read
            # os.environ again behind an ``environ`` given to the sink.
            resource = Resource(
                {
                    "telemetry.sdk.language": "python",
                    "telemetry.sdk.name": "opentelemetry",
                    "telemetry.sdk.version": sdk_version,
                    "service.instance.id": self.instance_id,
                    **self.settings.resource,
                }
            )
            readers = self._readers()
            wrapper = self._exporter_wrapper
            if wrapper is not None and len(readers) == 1:
                # One exporter: the histograms are aggregated here and added to its exports.
                self._histograms = HistogramPoints(
                    [
                        (f.name.format(ns=self.namespace), f.unit, f.description, f.buckets)
                        for f in FAMILIES
                        if f.kind == "histogram" and (self.genai_instruments or not f.genai)
                    ],
                    self._preferred[Histogram],
                    SCOPE,
                )
                wrapper.histograms, wrapper.resource = self._histograms, resource
            self.provider = MeterProvider(
                metric_readers=readers,
                resource=resource,
                # Our collector flushes into this provider at exit; the SDK's own exit hook
                # would run first and drop what is still pending.
                shutdown_on_exit=False,
                views=self._views(),
            )
        self._failures_seen = 0
        self._out = self._instruments(self.genai_instruments, self.export_estimated_tokens)
        meter = self.provider.get_meter(SCOPE)
        self.families = {}
        for family in FAMILIES:
            if family.genai and not self.genai_instruments:
                setattr(self, family.key, None)
                continue
            name = family.name.format(ns=self.namespace)
            self.families[family.key] = name
            if family.kind == "histogram":
                instrument: Any = (
                    None  # aggregated by self._histograms
                    if self._histograms is not None
                    else meter.create_histogram(
                        name,
                        unit=family.unit,
                        description=family.description,
                        explicit_bucket_boundaries_advisory=list(family.buckets),
                    )
                )
            elif family.kind == "counter":
                instrument = meter.create_counter(
                    name, unit=family.unit, description=family.description
                )
            else:
                instrument = meter.create_gauge(
                    name, unit=family.unit, description=family.description
                )
            setattr(self, family.key, instrument)

    def _observe(self, key: str, attrs: Dict[str, Any], value: float) -> None:
        """Record one histogram value, bounded, into whichever histogram the sink uses."""
        name = self.families[key]
        attrs = self._bounded(name, attrs)
        histograms = self._histograms
        if histograms is not None:
            histograms.record(name, attrs, value)
        else:
            getattr(self, key).record(value, attrs)

    def _views(self) -> Sequence[View]:
        # Room for the overflow set we fold into. Older SDKs (Python 3.9 gets 1.41) lack the
        # setting and keep their own default limit. Boundaries come from the instruments'
        # advisory, which every supported SDK honours.
        if not _VIEW_TAKES_LIMIT:
            return []
        limit = self.max_attribute_sets + 1
        return [
            View(instrument_name=name, aggregation_cardinality_limit=limit)
            for name in ("gen_ai.*", f"{self.namespace}.*")
        ]

    def _check_others(self) -> None:
        """Warn once if another instrumentation records the same ``gen_ai.*`` metrics.
        Looked for at construction and then at most every :data:`CHECK_OTHERS_SECONDS` (it
        walks the instrumentor classes)."""
        self._next_check = time.monotonic() + CHECK_OTHERS_SECONDS
        if self._warned_others or not self.genai_instruments or not self.active:
            return
        others = active_genai_instrumentations()
        if others:
            self._warned_others = True
            logger.warning(
                "%s also records gen_ai.client.* metrics: calls it instruments are counted "
                "twice. Use OTelMetricsSink(genai_instruments=False) to leave gen_ai.* to it, "
                "or do not enable it for the same calls.",
                " and ".join(others),
            )

    # ------------------------------------------------------------------ attributes
    def _clip(self, value: Any) -> Any:
        if isinstance(value, (bool, int, float)):
            return value
        text = value if isinstance(value, str) else str(value)
        return text[: self.max_attribute_length]

    def _attributes(
        self,
        record: Any,
        *,
        response_model: Any = None,
        error_type: Any = None,
        scoped: bool = True,
    ) -> Dict[str, Any]:
        """The attribute set of ``record`` (cached). ``scoped=False``: process state, only
        operation, provider and model."""
        extra = record.attributes
        allowed = (
            tuple(sorted((k, extra[k]) for k in self.allowlist.intersection(extra)))
            if scoped
            else ()
        )
        operation = getattr(record, "operation", "chat")
        key = (
            operation,
            record.provider,
            record.model,
            response_model,
            error_type,
            extra.get("server.address") if scoped else None,
            extra.get("server.port") if scoped else None,
            allowed,
        )
        attrs = self._attr_cache.get(key)
        if attrs is None:
            attrs = {
                "gen_ai.operation.name": self._clip(operation or "chat"),
                "gen_ai.provider.name": self._clip(record.provider or "_OTHER"),
            }
            if record.model:
                attrs["gen_ai.request.model"] = self._clip(record.model)
            if response_model:
                attrs["gen_ai.response.model"] = self._clip(response_model)
            if error_type is not None:
                attrs["error.type"] = self._clip(error_type or "_OTHER")
            address, port = key[5], key[6]
            if address:
                attrs["server.address"] = self._clip(address)
            if isinstance(port, int) and not isinstance(port, bool):
                attrs["server.port"] = port
            for k, v in allowed:
                attrs[k] = self._clip(v)
            if len(self._attr_cache) > 10_000:
                self._attr_cache.clear()
            self._attr_cache[key] = attrs
        return attrs

    def _typed(
        self, attrs: Dict[str, Any], token_type: Optional[str], estimated: bool = False
    ) -> Dict[str, Any]:
        """``attrs`` plus ``gen_ai.token.type`` (unless None) and, when ``estimated``, the
        estimate mark; cached with the set."""
        key = (id(attrs), token_type, estimated)
        entry = self._typed_cache.get(key)
        if entry is None or entry[0] is not attrs:  # an id can be reused after a clear
            extra: Dict[str, Any] = {} if token_type is None else {"gen_ai.token.type": token_type}
            if estimated:
                extra[ESTIMATED] = True
            entry = (attrs, {**attrs, **extra})
            if len(self._typed_cache) > 20_000:
                self._typed_cache.clear()
            self._typed_cache[key] = entry
        return entry[1]

    def _bounded(self, instrument: str, attrs: Dict[str, Any]) -> Dict[str, Any]:
        """``attrs``, or the overflow set once the instrument has too many distinct sets."""
        seen = self._sets.get(instrument)
        if seen is None:
            seen = self._sets[instrument] = set()
        key = frozenset(attrs.items())
        if key in seen:
            return attrs
        if len(seen) < self.max_attribute_sets:
            seen.add(key)
            return attrs
        with self._lock:
            self.overflowed[instrument] = self.overflowed.get(instrument, 0) + 1
        return OVERFLOW

    # ------------------------------------------------------------------ sink protocol
    def record(self, metrics: BaseMetrics) -> None:
        self.record_batch((metrics,))

    def record_batch(self, batch: Sequence[BaseMetrics]) -> None:
        """Update the instruments for a batch. Counter increments with the same attributes
        are summed first and added once: each measurement costs the SDK a validation and a
        hash of its attributes, and histograms already need one per value."""
        if not self.active:
            return
        if self._stale:
            self._ensure_fresh()
        if not self._warned_others and time.monotonic() >= self._next_check:
            self._check_others()  # an instrumentor may have been switched on since
        sums: Dict[Tuple[Any, ...], list] = {}
        self._sums = sums
        out = self._out
        for metrics in batch:
            apply(metrics, out)
        for (counter, _), (attrs, value) in sums.items():
            counter.add(value, attrs)
        if self._exports_itself and time.monotonic() >= self._next_export:
            self._next_export = time.monotonic() + self.export_interval_seconds
            self.provider.force_flush(int(self.export_timeout_seconds * 1000))

    # ------------------------------------------------------------------ the primitives of
    # measurements.apply (see _Out): counters summed per batch, histograms bounded.
    def _count(self, key: str, attrs: Dict[str, Any], value: float) -> None:
        counter = getattr(self, key)
        attrs = self._bounded(self.families[key], attrs)
        slot = (counter, id(attrs)) if attrs is OVERFLOW else (counter, frozenset(attrs.items()))
        sums = self._sums
        entry = sums.get(slot)
        if entry is None:
            sums[slot] = [attrs, value]
        else:
            entry[1] += value

    def _categorised(self, attrs: Dict[str, Any], category: str) -> Dict[str, Any]:
        return {**attrs, "error.category": category}

    def _set(self, key: str, attrs: Dict[str, Any], value: float) -> None:
        getattr(self, key).set(value, self._bounded(self.families[key], attrs))

    def _gaps(self, key: str, attrs: Dict[str, Any], gaps: Any) -> None:
        name = self.families[key]
        bounded = self._bounded(name, attrs)
        histograms = self._histograms
        if histograms is not None:  # the whole stream at once
            histograms.record_bucketed(
                name, bounded, gaps.counts, gaps.gap_sum, gaps.minimum, gaps.maximum
            )
            return
        # The SDK's instrument takes one value per call: each bucket's mean, once per gap in
        # it, gives the exact bucket counts and the exact sum.
        record = getattr(self, key).record
        for count, total in zip(gaps.counts, gaps.sums):
            if count:
                mean = total / count
                for _ in range(count):
                    record(mean, bounded)

    # ------------------------------------------------------------------ flush / close
    @property
    def export_failures(self) -> int:
        """OTLP exports that failed so far (periodic ones included)."""
        wrapper = self._exporter_wrapper
        return wrapper.failures if wrapper is not None else 0

    def flush(self) -> None:
        """Export now; raises :class:`ExportFailedError` if any export failed since the last
        flush (so the collector counts and logs it)."""
        if not self.active:
            return
        self.provider.force_flush(int(self.export_timeout_seconds * 1000))
        wrapper = self._exporter_wrapper
        if wrapper is None:
            return
        with wrapper.lock:
            failures = wrapper.failures
        if failures > self._failures_seen:
            new = failures - self._failures_seen
            self._failures_seen = failures
            raise ExportFailedError(f"{new} OTLP export(s) failed ({self.protocol})")

    def close(self) -> None:
        """Final export and shutdown of an owned provider; a passed-in one is only flushed."""
        if self._stale or not self.active:
            return  # a forked child that never recorded: nothing of its own to export
        if self._external_provider is not None:
            self.provider.force_flush(int(self.export_timeout_seconds * 1000))
            return
        self.provider.shutdown(timeout_millis=self.export_timeout_seconds * 1000)

    def _after_fork(self) -> None:
        # Runs inside os.fork()'s child hooks: no threads or providers made here. The
        # inherited exporter is switched off (the parent exports what it aggregated) and a
        # fresh provider is built on first use, on the sink's own thread.
        if self._exporter_wrapper is not None:
            self._exporter_wrapper.disabled = True
        self._stale = True

    def _ensure_fresh(self) -> None:
        if self._stale:
            self._stale = False
            self._build()

    def __repr__(self) -> str:
        return (
            f"OTelMetricsSink(service_name={self.service_name!r}, "
            f"protocol={self.protocol!r}, endpoint={self.endpoint!r})"
        )
