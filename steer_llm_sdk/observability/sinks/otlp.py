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
<ns>.records.dropped (observable counter)      {record}   collector.stats(), by ``reason``
<ns>.sink.export_failures (observable counter) {failure}  failed exports, by ``sink``
=============================================  =========  ==================================

``<ns>.time_to_first_token`` is TTFT, the time to the first content (text, a tool call or
reasoning): the one dashboards should show. ``time_to_first_chunk`` is the time to the first
chunk of any kind (a role-only chunk counts), as the conventions define it. Both are recorded
from a streamed call's ``RequestMetrics``, each when known.

The two observable counters are the pipeline's own health, read at each export from the
collectors that deliver to the sink (see :func:`~..measurements.health`): records not
delivered by ``reason`` (``sampled_out`` and ``filtered`` by choice; ``queue_full``,
``after_shutdown``, ... and, with a ``sink`` attribute, ``sink_error`` and
``sink_queue_full``), and each sink's failed exports (for this sink,
:attr:`OTelMetricsSink.export_failures`). Cumulative per process.

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

**Exemplars.** The latency histograms (``gen_ai.client.operation.duration``,
``gen_ai.client.operation.time_to_first_chunk``, ``<ns>.time_to_first_token``) carry the
trace and span id of each call whose GenAI span was sampled (see :mod:`..tracing`): on a
provider the sink owns, the newest such value of each bucket since the previous export is
that bucket's exemplar; on a provider passed in, the ids reach the SDK's histograms as the
measurement's context and the provider's exemplar filter and reservoir decide.
``OTEL_METRICS_EXEMPLAR_FILTER=always_off`` turns them off; ``trace_based`` (the default)
and ``always_on`` keep them, and the sink's own histograms never make an exemplar of a value
without a span (it would link to nothing). Without tracing there are no exemplars and
nothing is paid for them.

The sink owns its ``MeterProvider`` (never the global one) unless one is passed in; the
histograms carry the conventions' boundaries either way (the instrument API's explicit
bucket-boundary advisory). ``record()`` only updates instruments; exports happen on the
OpenTelemetry reader's thread every export interval and on ``flush()``, which raises when an
export failed, so the collector counts it (the SDK's ``force_flush()`` reports success even
then). Settings follow the standard variables (see :mod:`._otel_env`).

The sink is a composition: settings from :mod:`._otel_env`, provider, readers and exporter
from :mod:`._otel_setup`, attribute sets from :mod:`._otel_attrs`, instruments fed by
:func:`~..measurements.apply` in :mod:`._otel_instruments`, the sink's own histograms in
:mod:`._otel_hist`, the warning about other GenAI instrumentations in :mod:`._otel_others`.

After ``os.fork()`` a child gets a fresh provider with its own ``service.instance.id`` and
empty aggregations; the inherited provider's exporter is disabled, so the parent's data is
exported once, by the parent.
"""

import os
import time
import uuid
from typing import Any, Dict, FrozenSet, Iterable, Mapping, Optional, Sequence

from opentelemetry.sdk.metrics import MeterProvider

from .._log import logger
from ..conventions import DEFAULT_ALLOWLIST, DURATION_BUCKETS, FAMILIES, TOKEN_BUCKETS
from ..measurements import AttributeSets, HealthCounts
from ..models import BaseMetrics
from ..runtime import SINKS, on_fork
from ._otel_attrs import Attributes
from ._otel_env import ExportSettings
from ._otel_hist import HistogramPoints
from ._otel_instruments import Recorder
from ._otel_others import OthersWarning
from ._otel_setup import SCOPE, CountingExporter, Setup, preferred_temporality, views

__all__ = ["DURATION_BUCKETS", "TOKEN_BUCKETS", "ExportFailedError", "OTelMetricsSink"]


class ExportFailedError(RuntimeError):
    """Raised by ``flush()`` when OTLP exports failed since the previous flush."""


class OTelMetricsSink:
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
        self._preferred = preferred_temporality(settings.temporality)
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
        self._exporter_wrapper: Optional[CountingExporter] = None
        self._health = HealthCounts()
        if self.active:
            self._build()
            on_fork(self, "_after_fork", SINKS)
        else:
            logger.info(
                "OTelMetricsSink is off: %s",
                "OTEL_SDK_DISABLED=true" if settings.disabled else "OTEL_METRICS_EXPORTER=none",
            )
        self._others = OthersWarning(self.genai_instruments and self.active)

    def _build(self) -> None:
        """Create (or re-create, in a forked child) the provider and the instruments."""
        self.instance_id = str(uuid.uuid4())
        histograms: Optional[HistogramPoints] = None
        self._exports_itself = False
        if self._external_provider is not None:
            self._exporter_wrapper = None
            self.provider = self._external_provider
        else:
            setup = Setup(
                self.settings,
                self._preferred,
                self.instance_id,
                [
                    (f.name.format(ns=self.namespace), f.unit, f.description, f.buckets)
                    for f in FAMILIES
                    if f.kind == "histogram" and (self.genai_instruments or not f.genai)
                ],
                views(self.namespace, self.max_attribute_sets),
            )
            self.provider, self._exporter_wrapper = setup.provider, setup.exporter
            histograms = setup.histograms
            self._exports_itself = setup.exports_itself
            self._next_export = time.monotonic() + self.export_interval_seconds
        self._failures_seen = 0
        attributes = Attributes(
            self.allowlist,
            self.max_attribute_length,
            AttributeSets(self.max_attribute_sets, self.overflowed),
        )
        recorder = Recorder(
            self.provider.get_meter(SCOPE),
            self.namespace,
            self.genai_instruments,
            histograms,
            attributes,
            self._health,
            self,
            exemplars=self.settings.exemplar_filter != "always_off",
        )
        self._recorder = recorder
        self._out = recorder.bound(self.genai_instruments, self.export_estimated_tokens)
        self.families = recorder.families
        for family in FAMILIES:
            setattr(self, family.key, recorder.instruments.get(family.key))

    # ------------------------------------------------------------------ sink protocol
    def record(self, metrics: BaseMetrics) -> None:
        self.record_batch((metrics,))

    def record_batch(self, batch: Sequence[BaseMetrics]) -> None:
        """Update the instruments for a batch (counters summed per batch, see
        :mod:`._otel_instruments`)."""
        if not self.active:
            return
        if self._stale:
            self._ensure_fresh()
        self._others.check_due()  # an instrumentor may have been switched on since
        self._recorder.record_batch(batch, self._out)
        if self._exports_itself and time.monotonic() >= self._next_export:
            self._next_export = time.monotonic() + self.export_interval_seconds
            self.provider.force_flush(int(self.export_timeout_seconds * 1000))

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
        # fresh provider is built on first use, on the sink's own thread. The child's
        # collectors count their losses from zero: so do its health counters.
        if self._exporter_wrapper is not None:
            self._exporter_wrapper.disabled = True
        self._health.after_fork()
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
