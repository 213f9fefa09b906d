"""OTelMetricsSink: records into OpenTelemetry instruments, exported over OTLP.

Instruments follow the OpenTelemetry GenAI semantic conventions (names, units and bucket
boundaries exactly), plus the SDK's own, prefixed with the namespace:

=============================================  =========  ==================================
instrument                                     unit       from
=============================================  =========  ==================================
gen_ai.client.operation.duration (histogram)   s          RequestMetrics.duration_ms
gen_ai.client.token.usage (histogram)          {token}    prompt (input) / completion (output)
gen_ai.client.operation.time_to_first_chunk    s          StreamingMetrics.first_chunk_latency
gen_ai.client.operation.time_per_output_chunk  s          StreamingMetrics, mean chunk gap
<ns>.requests (counter)                        {request}  RequestMetrics
<ns>.errors (counter, error.category)          {error}    ErrorMetrics
<ns>.tokens.cached (counter)                   {token}    RequestMetrics.cached_tokens
<ns>.cost (counter)                            USD        RequestMetrics.cost_usd
<ns>.stream.chunks (counter)                   {chunk}    StreamingMetrics.total_chunks
<ns>.retry.attempts (counter)                  {attempt}  ReliabilityMetrics.retry_attempts
<ns>.circuit_breaker.state (gauge)             1          0 closed, 1 half-open, 2 open
<ns>.usage.* (counters)                        ...        UsageMetrics windows
=============================================  =========  ==================================

Attributes: ``gen_ai.operation.name`` (``chat``), ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.response.model`` when known, ``error.type`` on failures
(the error class, ``_OTHER`` when unknown), ``server.address``/``server.port`` when the
record carries them, and custom attributes whose key is in ``attribute_allowlist``. Values
are truncated; once an instrument has ``max_attribute_sets`` distinct attribute sets, new ones
fold into one set marked ``otel.metric.overflow=true`` and are counted in
:attr:`OTelMetricsSink.overflowed`.

The sink owns its ``MeterProvider`` (never the global one) unless one is passed in.
``record()`` only updates instruments; exports happen on the OpenTelemetry reader's thread
every ``export_interval_seconds`` and on ``flush()``, which raises when an export failed, so
the collector counts it (the SDK's ``force_flush()`` reports success even then).

After ``os.fork()`` a child gets a fresh provider with its own ``service.instance.id`` and
empty aggregations; the inherited provider's exporter is disabled, so the parent's data is
exported once, by the parent.
"""

import inspect
import os
import threading
import uuid
from typing import Any, Dict, FrozenSet, Iterable, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

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
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from ..lifecycle import SINKS, on_fork
from ..models import BaseMetrics

DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
TOKEN_BUCKETS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
DEFAULT_ALLOWLIST = ("http.route", "deployment.environment", "service.version")
OVERFLOW = {"otel.metric.overflow": True}
_BREAKER_VALUES = {"CLOSED": 0, "HALF_OPEN": 1, "OPEN": 2}
_PROTOCOLS = ("http/protobuf", "grpc")

# View(aggregation_cardinality_limit=) exists from SDK 1.42 on.
_VIEW_TAKES_LIMIT = "aggregation_cardinality_limit" in inspect.signature(View).parameters


class _CountingExporter(MetricExporter):
    """Wraps the OTLP exporter to count exports that failed (and to be switched off in a
    forked child that must not export its parent's data)."""

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

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self.disabled:
            return MetricExportResult.SUCCESS
        try:
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
    if name not in ("cumulative", "delta"):
        raise ValueError(f"temporality must be 'cumulative' or 'delta', got {name!r}")
    chosen = AggregationTemporality.DELTA if name == "delta" else AggregationTemporality.CUMULATIVE
    return {
        Counter: chosen,
        Histogram: chosen,
        ObservableCounter: chosen,
        UpDownCounter: AggregationTemporality.CUMULATIVE,
        ObservableUpDownCounter: AggregationTemporality.CUMULATIVE,
        ObservableGauge: AggregationTemporality.CUMULATIVE,
    }


class OTelMetricsSink:
    """A sink exporting OpenTelemetry metrics over OTLP; see the module docstring.

    Args:
        service_name: default ``OTEL_SERVICE_NAME``, else ``unknown_service``.
        namespace: ``service.namespace`` of the resource and prefix of the SDK's own
            instruments.
        endpoint: the OTLP endpoint; for ``http/protobuf`` a base URL gets ``/v1/metrics``
            appended. Default: the standard ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` /
            ``OTEL_EXPORTER_OTLP_ENDPOINT`` variables.
        protocol: ``http/protobuf`` (default) or ``grpc``; default from
            ``OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``.
        headers: sent with each export; default from the standard variables.
        export_interval_seconds: how often the reader exports.
        temporality: ``cumulative`` (default) or ``delta`` for counters and histograms.
        meter_provider: use this provider instead of owning one (then the exporter
            arguments are unused and ``close()`` leaves it running).
        resource_attributes: added to the resource.
        attribute_allowlist: custom attribute keys that may become metric attributes.
        max_attribute_sets: distinct attribute sets per instrument before overflow.
        max_attribute_length: longest attribute value exported.
        export_timeout_seconds: deadline of one export.
        environ: where to read the variables (default ``os.environ``).

    Raises:
        ValueError: an unknown protocol or temporality, a bad limit.
    """

    name = "otlp"

    def __init__(
        self,
        service_name: Optional[str] = None,
        namespace: str = "llm",
        endpoint: Optional[str] = None,
        protocol: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        export_interval_seconds: float = 10.0,
        temporality: str = "cumulative",
        meter_provider: Optional[MeterProvider] = None,
        resource_attributes: Optional[Mapping[str, Any]] = None,
        attribute_allowlist: Iterable[str] = DEFAULT_ALLOWLIST,
        max_attribute_sets: int = 2000,
        max_attribute_length: int = 256,
        export_timeout_seconds: float = 10.0,
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        env = os.environ if environ is None else environ
        if not namespace or not isinstance(namespace, str):
            raise ValueError("namespace must be a non-empty string")
        if max_attribute_sets < 1:
            raise ValueError(f"max_attribute_sets must be >= 1, got {max_attribute_sets}")
        if not export_interval_seconds > 0:
            raise ValueError("export_interval_seconds must be > 0")
        self.namespace = namespace
        self.service_name = service_name or env.get("OTEL_SERVICE_NAME") or "unknown_service"
        self.protocol = (
            protocol
            or env.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        ).strip()
        if self.protocol not in _PROTOCOLS:
            raise ValueError(f"protocol must be one of {_PROTOCOLS}, got {self.protocol!r}")
        self.endpoint = endpoint
        self.headers = dict(headers) if headers is not None else None
        self.export_interval_seconds = export_interval_seconds
        self.temporality = temporality
        self._preferred = _temporality(temporality)
        self.resource_attributes = dict(resource_attributes or {})
        self.allowlist: FrozenSet[str] = frozenset(attribute_allowlist)
        self.max_attribute_sets = max_attribute_sets
        self.max_attribute_length = max_attribute_length
        self.export_timeout_seconds = export_timeout_seconds
        self._external_provider = meter_provider
        self.overflowed: Dict[str, int] = {}
        self._stale = False
        self._build()
        on_fork(self, "_after_fork", SINKS)

    # ------------------------------------------------------------------ setup
    def _exporter(self) -> MetricExporter:
        timeout = self.export_timeout_seconds
        if self.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcExporter,
            )

            insecure = None
            if self.endpoint is not None:
                insecure = urlsplit(self.endpoint).scheme in ("http", "")
            return GrpcExporter(
                endpoint=self.endpoint,
                insecure=insecure,
                headers=self.headers,
                timeout=timeout,
                preferred_temporality=self._preferred,
            )
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpExporter,
        )

        endpoint = self.endpoint
        if endpoint is not None and urlsplit(endpoint).path in ("", "/"):
            endpoint = endpoint.rstrip("/") + "/v1/metrics"
        return HttpExporter(
            endpoint=endpoint,
            headers=self.headers,
            timeout=timeout,
            preferred_temporality=self._preferred,
        )

    def _build(self) -> None:
        """Create (or re-create, in a forked child) the provider and the instruments."""
        self.instance_id = str(uuid.uuid4())
        self._sets: Dict[str, set] = {}
        self._attr_cache: Dict[Tuple[Any, ...], Dict[str, Any]] = {}
        self._typed_cache: Dict[Tuple[int, str], Tuple[Dict[str, Any], Dict[str, Any]]] = {}
        self._lock = threading.Lock()
        if self._external_provider is not None:
            self._exporter_wrapper: Optional[_CountingExporter] = None
            self.provider = self._external_provider
        else:
            self._exporter_wrapper = _CountingExporter(self._exporter())
            reader = PeriodicExportingMetricReader(
                self._exporter_wrapper,
                export_interval_millis=self.export_interval_seconds * 1000,
                export_timeout_millis=self.export_timeout_seconds * 1000,
            )
            resource = Resource.create(
                {
                    "service.name": self.service_name,
                    "service.namespace": self.namespace,
                    "service.instance.id": self.instance_id,
                    **self.resource_attributes,
                }
            )
            self.provider = MeterProvider(
                metric_readers=[reader],
                resource=resource,
                # Our collector flushes into this provider at exit; the SDK's own exit hook
                # would run first and drop what is still pending.
                shutdown_on_exit=False,
                views=self._views(),
            )
        self._failures_seen = 0
        meter = self.provider.get_meter("steer_llm_sdk")
        ns = self.namespace
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration"
        )
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Measures number of input and output tokens used",
        )
        self.time_to_first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk in a streaming operation",
        )
        self.time_per_output_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_per_output_chunk",
            unit="s",
            description="Time between consecutive chunks in a streaming operation",
        )
        self.requests = meter.create_counter(
            f"{ns}.requests", unit="{request}", description="LLM requests"
        )
        self.errors = meter.create_counter(
            f"{ns}.errors", unit="{error}", description="Failed LLM calls by category"
        )
        self.cached_tokens = meter.create_counter(
            f"{ns}.tokens.cached", unit="{token}", description="Prompt tokens read from cache"
        )
        self.cost = meter.create_counter(f"{ns}.cost", unit="USD", description="Cost of calls")
        self.chunks = meter.create_counter(
            f"{ns}.stream.chunks", unit="{chunk}", description="Chunks received in streams"
        )
        self.retries = meter.create_counter(
            f"{ns}.retry.attempts", unit="{attempt}", description="Retries made"
        )
        self.breaker = meter.create_gauge(
            f"{ns}.circuit_breaker.state",
            unit="1",
            description="Circuit breaker state: 0 closed, 1 half-open, 2 open",
        )
        self.usage_requests = meter.create_counter(f"{ns}.usage.requests", unit="{request}")
        self.usage_errors = meter.create_counter(f"{ns}.usage.errors", unit="{error}")
        self.usage_tokens = meter.create_counter(f"{ns}.usage.tokens", unit="{token}")
        self.usage_cost = meter.create_counter(f"{ns}.usage.cost", unit="USD")

    def _views(self) -> Sequence[View]:
        # Room for the overflow set we fold into. Older SDKs (Python 3.9 gets 1.41) lack the
        # setting and keep their own default limit.
        limit: Dict[str, Any] = (
            {"aggregation_cardinality_limit": self.max_attribute_sets + 1}
            if _VIEW_TAKES_LIMIT
            else {}
        )
        durations = ExplicitBucketHistogramAggregation(boundaries=DURATION_BUCKETS)
        views = [
            View(instrument_name=name, aggregation=durations, **limit)
            for name in (
                "gen_ai.client.operation.duration",
                "gen_ai.client.operation.time_to_first_chunk",
                "gen_ai.client.operation.time_per_output_chunk",
            )
        ]
        views.append(
            View(
                instrument_name="gen_ai.client.token.usage",
                aggregation=ExplicitBucketHistogramAggregation(boundaries=TOKEN_BUCKETS),
                **limit,
            )
        )
        views.append(View(instrument_name=f"{self.namespace}.*", **limit))
        return views

    # ------------------------------------------------------------------ attributes
    def _clip(self, value: Any) -> Any:
        if isinstance(value, (bool, int, float)):
            return value
        text = value if isinstance(value, str) else str(value)
        return text[: self.max_attribute_length]

    def _attributes(
        self, record: BaseMetrics, *, response_model: Any = None, error_type: Any = None
    ) -> Dict[str, Any]:
        extra = record.attributes
        allowed = tuple(sorted((k, extra[k]) for k in self.allowlist.intersection(extra)))
        key = (
            record.provider,
            record.model,
            response_model,
            error_type,
            extra.get("server.address"),
            extra.get("server.port"),
            allowed,
        )
        attrs = self._attr_cache.get(key)
        if attrs is None:
            attrs = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": self._clip(record.provider or "_OTHER"),
            }
            if record.model:
                attrs["gen_ai.request.model"] = self._clip(record.model)
            if response_model:
                attrs["gen_ai.response.model"] = self._clip(response_model)
            if error_type is not None:
                attrs["error.type"] = self._clip(error_type or "_OTHER")
            address, port = key[4], key[5]
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

    def _typed(self, attrs: Dict[str, Any], token_type: str) -> Dict[str, Any]:
        """``attrs`` plus ``gen_ai.token.type``, cached with the attribute set."""
        key = (id(attrs), token_type)
        entry = self._typed_cache.get(key)
        if entry is None or entry[0] is not attrs:  # an id can be reused after a clear
            entry = (attrs, {**attrs, "gen_ai.token.type": token_type})
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
        if self._stale:
            self._ensure_fresh()
        sums: Dict[Tuple[Any, ...], list] = {}
        for metrics in batch:
            kind = metrics.metric_type
            if kind == "request":
                self._request(metrics, sums)
            elif kind == "streaming":
                self._streaming(metrics, sums)
            elif kind == "error":
                self._error(metrics, sums)
            elif kind == "reliability":
                self._reliability(metrics, sums)
            elif kind == "usage":
                self._usage(metrics, sums)
        for (counter, _), (attrs, value) in sums.items():
            counter.add(value, attrs)

    def _count(
        self,
        sums: Dict[Tuple[Any, ...], list],
        counter: Any,
        name: str,
        attrs: Dict[str, Any],
        value: float,
    ) -> None:
        attrs = self._bounded(name, attrs)
        key = (counter, id(attrs)) if attrs is OVERFLOW else (counter, frozenset(attrs.items()))
        entry = sums.get(key)
        if entry is None:
            sums[key] = [attrs, value]
        else:
            entry[1] += value

    def _request(self, m: Any, sums: Dict[Tuple[Any, ...], list]) -> None:
        ns = self.namespace
        error_type = None if m.success else (m.error_class or "_OTHER")
        attrs = self._attributes(m, response_model=m.response_model, error_type=error_type)
        if m.duration_ms is not None:
            self.duration.record(
                m.duration_ms / 1000.0, self._bounded("gen_ai.client.operation.duration", attrs)
            )
        self._count(sums, self.requests, f"{ns}.requests", attrs, 1)
        if m.prompt_tokens is not None:
            typed = self._bounded("gen_ai.client.token.usage", self._typed(attrs, "input"))
            self.token_usage.record(m.prompt_tokens, typed)
        if m.completion_tokens is not None:
            typed = self._bounded("gen_ai.client.token.usage", self._typed(attrs, "output"))
            self.token_usage.record(m.completion_tokens, typed)
        if m.cached_tokens:
            self._count(sums, self.cached_tokens, f"{ns}.tokens.cached", attrs, m.cached_tokens)
        if m.cost_usd:
            self._count(sums, self.cost, f"{ns}.cost", attrs, m.cost_usd)

    def _streaming(self, m: Any, sums: Dict[Tuple[Any, ...], list]) -> None:
        attrs = self._attributes(m, error_type="_OTHER" if m.status == "error" else None)
        if m.first_chunk_latency_ms is not None:
            first = m.first_chunk_latency_ms / 1000.0
            self.time_to_first_chunk.record(
                first, self._bounded("gen_ai.client.operation.time_to_first_chunk", attrs)
            )
            if m.total_chunks > 1 and m.chunks_per_second:
                total = m.total_chunks / m.chunks_per_second
                self.time_per_output_chunk.record(
                    max(0.0, total - first) / (m.total_chunks - 1),
                    self._bounded("gen_ai.client.operation.time_per_output_chunk", attrs),
                )
        if m.total_chunks:
            self._count(sums, self.chunks, f"{self.namespace}.stream.chunks", attrs, m.total_chunks)

    def _error(self, m: Any, sums: Dict[Tuple[Any, ...], list]) -> None:
        attrs = {
            **self._attributes(m, error_type=m.error_class or "_OTHER"),
            "error.category": m.error_category or "unknown",
        }
        self._count(sums, self.errors, f"{self.namespace}.errors", attrs, 1)

    def _reliability(self, m: Any, sums: Dict[Tuple[Any, ...], list]) -> None:
        attrs = self._attributes(m)
        if m.retry_attempts:
            self._count(
                sums, self.retries, f"{self.namespace}.retry.attempts", attrs, m.retry_attempts
            )
        state = _BREAKER_VALUES.get(m.circuit_breaker_state)
        if state is not None:
            self.breaker.set(state, self._bounded(f"{self.namespace}.circuit_breaker.state", attrs))

    def _usage(self, m: Any, sums: Dict[Tuple[Any, ...], list]) -> None:
        attrs = self._attributes(m)
        ns = self.namespace
        self._count(sums, self.usage_requests, f"{ns}.usage.requests", attrs, m.request_count)
        if m.error_count:
            self._count(sums, self.usage_errors, f"{ns}.usage.errors", attrs, m.error_count)
        for kind, value in (("input", m.prompt_tokens), ("output", m.completion_tokens)):
            if value:
                self._count(
                    sums,
                    self.usage_tokens,
                    f"{ns}.usage.tokens",
                    {**attrs, "gen_ai.token.type": kind},
                    value,
                )
        if m.cost_usd:
            self._count(sums, self.usage_cost, f"{ns}.usage.cost", attrs, m.cost_usd)

    # ------------------------------------------------------------------ flush / close
    @property
    def export_failures(self) -> int:
        """OTLP exports that failed so far (periodic ones included)."""
        wrapper = self._exporter_wrapper
        return wrapper.failures if wrapper is not None else 0

    def flush(self) -> None:
        """Export now; raises :class:`ExportFailedError` if any export failed since the last
        flush (so the collector counts and logs it)."""
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
        if self._stale:
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
