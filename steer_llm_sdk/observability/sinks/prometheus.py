"""PrometheusMetricsSink: the OTLP sink's families in Prometheus naming, right across workers.

Families (from :data:`~steer_llm_sdk.observability.conventions.FAMILIES`, named as
OpenTelemetry's Prometheus translation names them: dots become underscores, ``s`` becomes
``_seconds``, counters end in ``_total``, ``{...}`` units are dropped)::

    gen_ai_client_operation_duration_seconds              histogram  the conventions' buckets
    gen_ai_client_token_usage                             histogram  gen_ai_token_type
    gen_ai_client_operation_time_to_first_chunk_seconds   histogram  first chunk of any kind
    gen_ai_client_operation_time_per_output_chunk_seconds histogram  one value per chunk gap
    llm_time_to_first_token_seconds                       histogram  TTFT: first content
    llm_requests_total, llm_errors_total (error_category), llm_tokens_cached_total,
    llm_cost_USD_total, llm_stream_chunks_total, llm_retry_attempts_total,
    llm_usage_*_total                                     counters
    llm_circuit_breaker_state                             gauge (0 closed, 1 half-open, 2 open)
    llm_records_dropped_total (reason, sink)              counter  the pipeline's losses
    llm_sink_export_failures_total (sink)                 counter  each sink's failed exports

``llm_time_to_first_token_seconds`` (time to the first text, tool call or reasoning) is the
TTFT dashboards should show; both first-arrival times come from a streamed call's
``RequestMetrics``, each when known.

The last two are the pipeline's own health, read from the collectors that deliver to the
sink (see :func:`~..measurements.health`): records not delivered by ``reason``
(``sampled_out`` and ``filtered`` by choice; ``queue_full``, ``after_shutdown``, ... and,
with ``sink`` set, ``sink_error`` and ``sink_queue_full``), and each sink's failed exports.
They are brought up to date on the sink's thread at most every :data:`HEALTH_SECONDS` while
records arrive, at every ``flush()`` and ``close()``, and at every scrape this process
serves; each worker adds its own losses to its own files, so in multiprocess mode a scrape
sums every worker's, dead ones included.

Labels are those of the OTLP sink with dots as underscores (``gen_ai_operation_name``,
``gen_ai_provider_name``, ``gen_ai_request_model``, ``gen_ai_response_model``,
``error_type``, ``server_address``, ``server_port`` and the allow-listed custom attributes);
an absent one is ``""``. Past ``max_label_sets`` distinct sets per family, new ones fold into
one set whose values are all ``_OTHER``, counted in :attr:`PrometheusMetricsSink.overflowed`.

**Several worker processes** (gunicorn, uWSGI): set ``PROMETHEUS_MULTIPROC_DIR`` to an empty
directory before the server starts (before ``prometheus_client`` is first imported). Every
worker then writes its values to its own files there, files of exited workers are kept (a
worker recycled by ``--max-requests`` loses no counts), and :func:`exposition` sums them all,
whichever worker a scrape reaches. Add the gunicorn ``child_exit`` hook from
:mod:`..integrations.gunicorn` so the breaker gauge forgets dead workers. A missing or
read-only directory is a ``ValueError`` at construction; without the variable, a sink made
under gunicorn or uWSGI logs one warning (each worker would serve only its own values).

A full directory does not kill the process: the blocks of a multiprocess file are reserved
before it grows, and a record that cannot be written is counted in
:attr:`PrometheusMetricsSink.write_failures` (and logged, rate-limited) instead of faulting
with SIGBUS. A fork from any thread leaves the child fresh locks: prometheus_client's and the
sink's (see :mod:`._prometheus_mp`).

**Exemplars.** In one process, the latency histograms
(``gen_ai_client_operation_duration_seconds``,
``gen_ai_client_operation_time_to_first_chunk_seconds``, ``llm_time_to_first_token_seconds``)
carry the ``trace_id`` and ``span_id`` of a call whose GenAI span was sampled (see
:mod:`..tracing`) as the exemplar of the bucket its value fell in, the newest one per
bucket. Only the OpenMetrics exposition shows them: :func:`exposition`, the integrations'
endpoints and :meth:`PrometheusMetricsSink.start_http_server` serve it to a scrape whose
``Accept`` header asks for it (Prometheus' does; it stores exemplars when started with
``--enable-feature=exemplar-storage``); the classic text format has no place for them.
**Multiprocess mode carries no exemplars**: prometheus_client's worker files hold numbers
only, so the sink makes none there (nothing is paid, nothing fails) and the served families
have no exemplars; counts, sums and buckets are complete as always. The OTLP sink exports
exemplars in every mode.

Expose the families with the Flask or Django integration's ``metrics`` endpoint (off by
default), or with :meth:`PrometheusMetricsSink.start_http_server` in a process without a web
server.
"""

import os
import sys
import tempfile
import threading
import time
import weakref
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

try:
    import prometheus_client
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client import values as _values
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.multiprocess import MultiProcessCollector
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "PrometheusMetricsSink needs prometheus_client: pip install 'steer-llm-sdk[prometheus]'"
    ) from exc

from .. import runtime
from .._log import describe, logger, rate_limited
from ..conventions import (
    DEFAULT_ALLOWLIST,
    ERROR_CATEGORY,
    ERROR_TYPE,
    ESTIMATED,
    FAMILIES,
    HEALTH_FAMILIES,
    OPERATION,
    PROVIDER,
    REASON,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    SERVER_ADDRESS,
    SERVER_PORT,
    SINK,
    TOKEN_TYPE,
    Family,
)
from ..measurements import (
    OTHER,
    AttributeSets,
    HealthCounts,
    Primitives,
    apply,
    collectors_of,
    operation_of,
    provider_of,
    span_ids,
)
from ..models import BaseMetrics
from . import _prometheus_mp

__all__ = ["PrometheusMetricsSink", "exposition", "multiprocess_dir"]

#: Seconds between two readings of the collectors' health on the sink's thread.
HEALTH_SECONDS = 1.0


def _label(key: str) -> str:
    """The Prometheus label name of an attribute key."""
    return "".join(c if c.isalnum() else "_" for c in key)


_OPERATION, _PROVIDER, _REQUEST_MODEL = _label(OPERATION), _label(PROVIDER), _label(REQUEST_MODEL)
_RESPONSE_MODEL, _ERROR_TYPE = _label(RESPONSE_MODEL), _label(ERROR_TYPE)
_SERVER_ADDRESS, _SERVER_PORT = _label(SERVER_ADDRESS), _label(SERVER_PORT)
_TOKEN_TYPE, _ESTIMATED, _CATEGORY = _label(TOKEN_TYPE), _label(ESTIMATED), _label(ERROR_CATEGORY)
#: Label names shared by every request-scoped family, in order.
_BASE_LABELS = (
    _OPERATION,
    _PROVIDER,
    _REQUEST_MODEL,
    _RESPONSE_MODEL,
    _ERROR_TYPE,
    _SERVER_ADDRESS,
    _SERVER_PORT,
)
_PROCESS_LABELS = (_OPERATION, _PROVIDER, _REQUEST_MODEL)
#: The labels of each health family, in order.
_HEALTH_LABELS = {
    "records_dropped": (_label(REASON), _label(SINK)),
    "export_failures": (_label(SINK),),
}

# One set of families per (registry, namespace): prometheus_client refuses a second family
# of the same name in a registry, and two sinks of one process should share them. Keyed by
# the registry object, held weakly (an id could be reused by a later registry). Sinks that
# share the families share their health readings too, so that two of them in one collector
# do not count its losses twice.
_FAMILIES_LOCK = threading.Lock()
_FAMILY_CACHE: "weakref.WeakKeyDictionary[CollectorRegistry, Dict[Any, _Families]]" = (
    weakref.WeakKeyDictionary()
)
_DEFAULT_REGISTRY = CollectorRegistry(auto_describe=True)
#: The sinks of this process, whose health a scrape brings up to date.
_SINKS: "weakref.WeakSet[PrometheusMetricsSink]" = weakref.WeakSet()


class _Families:
    """The families of one (registry, namespace, labels), and their health readings."""

    __slots__ = ("metrics", "health")

    def __init__(self, metrics: Dict[str, Any]) -> None:
        self.metrics = metrics  # family key -> (prometheus_client family, label names)
        self.health = HealthCounts()


def _after_fork() -> None:
    """In a forked child: fresh copies of every lock the sinks' threads take (another
    thread of the parent may have held one at the fork)."""
    global _FAMILIES_LOCK
    _FAMILIES_LOCK = threading.Lock()
    _prometheus_mp.renew_value_lock()
    _prometheus_mp.renew_registry_lock(_DEFAULT_REGISTRY)
    for per_registry in list(_FAMILY_CACHE.values()):
        for families in per_registry.values():
            _prometheus_mp.renew_metric_locks(metric for metric, _ in families.metrics.values())
            # The child's collectors count from zero, and so do its values (its own files
            # in multiprocess mode; single-process values go on from the parent's).
            families.health.after_fork()
    for sink in list(_SINKS):
        sink._owed, sink._owed_lock = {}, threading.Lock()  # the parent's to write


runtime.on_fork_call(_after_fork, runtime.SINKS)


def multiprocess_dir() -> Optional[str]:
    """``PROMETHEUS_MULTIPROC_DIR`` when prometheus_client runs in multiprocess mode, else
    None.

    Raises:
        RuntimeError: the variable is set but prometheus_client was imported before it was,
            so values would silently stay per process.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return None
    if _values.ValueClass is _values.MutexValue:
        raise RuntimeError(
            "PROMETHEUS_MULTIPROC_DIR is set but prometheus_client was imported before it: "
            "set the variable before the server starts (e.g. in the environment of gunicorn)"
        )
    return path


def _check_directory(path: str) -> None:
    """Raise ValueError naming ``path`` unless it is a directory this process can write."""
    if not os.path.isdir(path):
        raise ValueError(
            f"PROMETHEUS_MULTIPROC_DIR={path!r} is not a directory: create it (empty) before "
            "the server starts"
        )
    try:  # access() cannot tell: root passes it, and it ignores some read-only mounts
        fd, probe = tempfile.mkstemp(prefix=".steer-probe-", dir=path)
    except OSError as exc:
        raise ValueError(
            f"PROMETHEUS_MULTIPROC_DIR={path!r} is not writable: {exc.strerror or exc}"
        ) from exc
    os.close(fd)
    os.unlink(probe)


#: Set once the "pre-fork server without PROMETHEUS_MULTIPROC_DIR" warning was logged.
_warned_single_process = False


def _pre_fork_server(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The pre-fork server this process runs under (``"gunicorn"`` or ``"uWSGI"``), told
    from the environment it sets, or None."""
    env = os.environ if environ is None else environ
    software = env.get("SERVER_SOFTWARE", "").lower()
    if software.startswith("gunicorn"):
        return "gunicorn"
    if "uwsgi" in software or "UWSGI_ORIGINAL_PROC_NAME" in env or "UWSGI_RELOADS" in env:
        return "uWSGI"
    if environ is None and "uwsgi" in sys.modules:  # the module only uWSGI embeds
        return "uWSGI"
    return None


def _warn_if_per_worker() -> None:
    global _warned_single_process
    server = _pre_fork_server()
    if server is None or _warned_single_process:
        return
    _warned_single_process = True
    logger.warning(
        "steer_llm_sdk: PrometheusMetricsSink under %s without PROMETHEUS_MULTIPROC_DIR: "
        "each worker keeps its own values and a scrape shows only the worker it reaches; "
        "set PROMETHEUS_MULTIPROC_DIR to an empty directory before the server starts",
        server,
    )


def _install_reservation(path: str) -> None:
    try:
        _prometheus_mp.install()
    except OSError as exc:  # files already open could not be reserved: the disk is full
        rate_limited.warning(
            "prometheus_write",
            "steer_llm_sdk could not reserve space for Prometheus values",
            directory=path,
            error=describe(exc),
        )


def exposition(accept: Optional[str] = None) -> Tuple[bytes, str]:
    """The text a scrape should receive: every worker's values summed in multiprocess mode,
    else this process's families. Returns ``(body, content type)``; ``accept`` is the
    scrape's ``Accept`` header (OpenMetrics when it asks for it)."""
    encoder, content_type = choose_encoder(accept or "")
    path = multiprocess_dir()
    if path is not None:
        _refresh(list(_SINKS))
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)
    else:
        _refresh([sink for sink in list(_SINKS) if sink.registry is _DEFAULT_REGISTRY])
        registry = _DEFAULT_REGISTRY
    return encoder(registry), content_type


def _refresh(sinks: Iterable["PrometheusMetricsSink"]) -> None:
    for sink in sinks:
        sink._update_health()


class _Refresh:
    """A collector of no families whose collection brings the sink's health up to date: put
    first in the registry a standalone server serves."""

    def __init__(self, sink: "PrometheusMetricsSink") -> None:
        self._sink = weakref.ref(sink)

    def collect(self) -> Iterable[Any]:
        sink = self._sink()
        if sink is not None:
            sink._update_health()
        return ()


def _observe_bucketed(child: Any, gaps: Any) -> None:
    """Add a stream's bucketed chunk gaps to a histogram child: the bucket counts and the sum
    at once, through the child's own values (the same writes ``observe()`` makes, a few per
    stream instead of a few per chunk). A prometheus_client whose histogram is laid out
    otherwise gets one ``observe()`` per gap: each bucket's mean, once per gap in it, gives
    the exact bucket counts and the exact sum."""
    buckets = getattr(child, "_buckets", None)
    bounds = getattr(child, "_upper_bounds", None)
    total = getattr(child, "_sum", None)
    if (
        buckets is not None
        and total is not None
        and bounds is not None
        and list(bounds[:-1]) == list(gaps.boundaries)
        and len(buckets) == len(gaps.counts)
    ):
        total.inc(gaps.gap_sum)
        for bucket, count in zip(buckets, gaps.counts):
            if count:
                bucket.inc(count)
        return
    for count, bucket_sum in zip(gaps.counts, gaps.sums):
        if count:
            mean = bucket_sum / count
            for _ in range(count):
                child.observe(mean)


def _prom_name(family: Family, namespace: str) -> str:
    name = family.name.format(ns=namespace).replace(".", "_")
    if family.unit == "s":
        name += "_seconds"
    elif family.unit == "USD":
        name += "_USD"  # as the Collector's translation names it: one dashboard for both
    return name  # prometheus_client appends _total to counters


class PrometheusMetricsSink(Primitives):
    """A sink updating prometheus_client families; see the module docstring.

    Args:
        namespace: prefix of the SDK's own families (``llm``).
        registry: where single-process families live (default: a registry of the SDK's own,
            served by :func:`exposition`; never prometheus_client's global one unless given).
        attribute_allowlist: custom attribute keys that become labels (fixed at construction).
        max_label_sets: distinct label sets per family before folding into ``_OTHER``.
        max_label_length: longest label value.
        export_estimated_tokens: also count locally estimated tokens and their cost, with
            the label ``llm_usage_estimated="true"`` (default: left out, as in the OTLP sink).

    Thread-safety: records arrive on the sink's delivery thread; prometheus_client's values
    are thread-safe for the scrape.

    Attributes:
        write_failures: records that could not be written (all or in part) because the
            multiprocess directory refused the space (full, over quota) or another
            ``OSError``; each is logged, rate-limited.

    Raises:
        RuntimeError: see :func:`multiprocess_dir`.
        ValueError: a bad limit; ``PROMETHEUS_MULTIPROC_DIR`` is missing or not writable
            (the message names it).

    Logs one warning per process when made under gunicorn or uWSGI (told from
    ``SERVER_SOFTWARE`` and ``UWSGI_*`` variables) without ``PROMETHEUS_MULTIPROC_DIR``.
    """

    name = "prometheus"

    def __init__(
        self,
        namespace: str = "llm",
        registry: Optional[CollectorRegistry] = None,
        attribute_allowlist: Iterable[str] = DEFAULT_ALLOWLIST,
        max_label_sets: int = 2000,
        max_label_length: int = 256,
        export_estimated_tokens: bool = False,
    ) -> None:
        if max_label_sets < 1:
            raise ValueError(f"max_label_sets must be >= 1, got {max_label_sets}")
        self.namespace = namespace
        self.multiprocess_dir = multiprocess_dir()
        if self.multiprocess_dir is not None:
            _check_directory(self.multiprocess_dir)
            _install_reservation(self.multiprocess_dir)
        else:
            _warn_if_per_worker()
        self.registry = registry if registry is not None else _DEFAULT_REGISTRY
        self.allowlist: Tuple[str, ...] = tuple(sorted(set(attribute_allowlist)))
        self.max_label_sets = max_label_sets
        self.max_label_length = max_label_length
        self.export_estimated_tokens = export_estimated_tokens
        self.overflowed: Dict[str, int] = {}
        self.write_failures = 0
        self._sets = AttributeSets(max_label_sets, self.overflowed)
        shared = self._build()
        self._families = shared.metrics
        self._health = shared.health
        self._next_health = 0.0
        self._owed: Dict[Any, int] = {}  # health growth not written yet
        self._owed_lock = threading.Lock()
        self._out = self._instruments(genai=True, export_estimated=export_estimated_tokens)
        _SINKS.add(self)

    def _build(self) -> _Families:
        scoped = _BASE_LABELS + tuple(_label(k) for k in self.allowlist)
        estimated = (_ESTIMATED,) if self.export_estimated_tokens else ()
        key = (self.namespace, scoped, self.export_estimated_tokens)
        with _FAMILIES_LOCK:
            per_registry = _FAMILY_CACHE.setdefault(self.registry, {})
            cached = per_registry.get(key)
            if cached is not None:
                return cached
            families: Dict[str, Any] = {}
            for family in FAMILIES + HEALTH_FAMILIES:
                name = _prom_name(family, self.namespace)
                labels: Tuple[str, ...] = _PROCESS_LABELS if family.process else scoped
                if family.key in ("usage_requests", "usage_errors", "usage_tokens", "usage_cost"):
                    labels = _PROCESS_LABELS
                if family.key in ("token_usage", "usage_tokens"):
                    labels += (_TOKEN_TYPE,)
                if family.key in ("token_usage", "cost"):
                    labels += estimated
                if family.key == "errors":
                    labels += (_CATEGORY,)
                labels = _HEALTH_LABELS.get(family.key, labels)
                options: Dict[str, Any] = {"registry": self.registry}
                if family.kind == "histogram":
                    metric: Any = Histogram(
                        name, family.description, labels, buckets=family.buckets, **options
                    )
                elif family.kind == "counter":
                    metric = Counter(name, family.description, labels, **options)
                else:
                    metric = Gauge(
                        name,
                        family.description,
                        labels,
                        multiprocess_mode="livemostrecent",
                        **options,
                    )
                families[family.key] = (metric, labels)
            shared = per_registry[key] = _Families(families)
            return shared

    # ------------------------------------------------------------------ labels
    def _clip(self, value: Any) -> str:
        if value is None:
            return ""
        return (value if isinstance(value, str) else str(value))[: self.max_label_length]

    def _child(self, key: str, values: Dict[str, Any]) -> Any:
        """The family's child for ``values`` (label name -> value), bounded."""
        metric, labels = self._families[key]
        row = tuple(self._clip(values.get(label)) for label in labels)
        if not self._sets.admits(key, row):
            row = tuple(OTHER for _ in labels)
        return metric.labels(*row)

    # ------------------------------------------------------------------ the primitives of
    # measurements.apply: labels as dicts, each family keeping the labels it declares.
    def _attributes(
        self,
        m: Any,
        *,
        response_model: Optional[str] = None,
        error_type: Optional[str] = None,
        scoped: bool = True,
    ) -> Dict[str, Any]:
        # Process families declare only operation, provider and model: request labels
        # given to them are not used, so ``scoped`` needs no work here.
        extra = m.attributes
        out = {
            _OPERATION: operation_of(m),
            _PROVIDER: provider_of(m),
            _REQUEST_MODEL: m.model,
            _RESPONSE_MODEL: response_model,
            _ERROR_TYPE: error_type,
            _SERVER_ADDRESS: extra.get(SERVER_ADDRESS),
            _SERVER_PORT: extra.get(SERVER_PORT),
        }
        for key in self.allowlist:
            if key in extra:
                out[_label(key)] = extra[key]
        return out

    @staticmethod
    def _typed(
        labels: Dict[str, Any], token_type: Optional[str], estimated: bool = False
    ) -> Dict[str, Any]:
        typed = dict(labels)
        if token_type is not None:
            typed[_TOKEN_TYPE] = token_type
        if estimated:
            typed[_ESTIMATED] = "true"
        return typed

    @staticmethod
    def _categorised(labels: Dict[str, Any], category: str) -> Dict[str, Any]:
        return {**labels, _CATEGORY: category}

    def _count(self, key: str, labels: Dict[str, Any], value: float) -> None:
        self._child(key, labels).inc(value)

    def _link(self, trace_id: str, span_id: str) -> Optional[Dict[str, str]]:
        # prometheus_client's multiprocess values drop exemplars: none is made there.
        if self.multiprocess_dir is not None or span_ids(trace_id, span_id) is None:
            return None
        return {"trace_id": trace_id, "span_id": span_id}

    def _observe(
        self, key: str, labels: Dict[str, Any], value: float, link: Optional[Dict[str, str]] = None
    ) -> None:
        self._child(key, labels).observe(value, link)

    def _set(self, key: str, labels: Dict[str, Any], value: float) -> None:
        self._child(key, labels).set(value)

    def _gaps(self, key: str, labels: Dict[str, Any], gaps: Any) -> None:
        _observe_bucketed(self._child(key, labels), gaps)

    # ------------------------------------------------------------------ sink protocol
    def record(self, metrics: BaseMetrics) -> None:
        self.record_batch((metrics,))

    def record_batch(self, batch: Sequence[BaseMetrics]) -> None:
        for m in batch:
            try:
                apply(m, self._out)
            except OSError as exc:  # no space in the multiprocess directory: count, go on
                self._write_failed(exc)
        if time.monotonic() >= self._next_health:
            self._update_health()

    # ------------------------------------------------------------------ health
    def _update_health(self) -> None:
        """Add what the collectors delivering to this sink lost since the last reading
        (see :class:`~..measurements.HealthCounts`); a series is created at its first
        reading, 0 included, so that ``rate()`` sees its first loss. A growth that cannot
        be written (a full multiprocess directory) is kept and written next time. Never
        raises; any thread may call it."""
        self._next_health = time.monotonic() + HEALTH_SECONDS
        grown = self._health.update(collectors_of(self))
        with self._owed_lock:
            owed, self._owed = self._owed, {}
        for series, step in owed.items():
            grown[series] = grown.get(series, 0) + step
        failure: Optional[Exception] = None
        unwritten: Dict[Any, int] = {}
        for series, step in grown.items():
            key, reason, sink = series
            metric, _ = self._families[key]
            try:
                child = metric.labels(reason, sink) if reason else metric.labels(sink)
                if step:
                    child.inc(step)
            except Exception as exc:
                failure = exc
                unwritten[series] = step
        if failure is not None:
            with self._owed_lock:
                for series, step in unwritten.items():
                    self._owed[series] = self._owed.get(series, 0) + step
            rate_limited.warning(
                "prometheus_health",
                "steer_llm_sdk could not write the pipeline's health families",
                directory=self.multiprocess_dir,
                error=describe(failure),
            )

    def _write_failed(self, exc: OSError) -> None:
        self.write_failures += 1
        rate_limited.warning(
            "prometheus_write",
            "steer_llm_sdk could not write Prometheus values",
            directory=self.multiprocess_dir,
            error=describe(exc),
            write_failures=self.write_failures,
        )

    def flush(self) -> None:
        """Bring the health families up to date; the other values are visible to the next
        scrape as soon as recorded."""
        self._update_health()

    def close(self) -> None:
        """Bring the health families up to date; nothing to release (multiprocess files
        stay for the other workers' scrapes)."""
        self._update_health()

    # ------------------------------------------------------------------ serving
    def exposition(self, accept: Optional[str] = None) -> Tuple[bytes, str]:
        """See :func:`exposition` (a sink given its own registry serves that registry)."""
        if self.multiprocess_dir is None and self.registry is not _DEFAULT_REGISTRY:
            self._update_health()
            encoder, content_type = choose_encoder(accept or "")
            return encoder(self.registry), content_type
        return exposition(accept)

    def start_http_server(self, port: int, addr: str = "127.0.0.1") -> Tuple[Any, Any]:
        """Serve the families at ``http://addr:port/metrics`` from a daemon thread, for a
        process without a web server of its own. Returns prometheus_client's
        ``(server, thread)``; ``server.shutdown()`` stops it. Binds to loopback unless told
        otherwise."""
        # Described (so ``name[]`` filters work) unless it reads the multiprocess files.
        served = CollectorRegistry(auto_describe=self.multiprocess_dir is None)
        served.register(_Refresh(self))  # first: the health is read before the families
        if self.multiprocess_dir is not None:
            MultiProcessCollector(served, path=self.multiprocess_dir)
        else:
            served.register(self.registry)
        return prometheus_client.start_http_server(port, addr=addr, registry=served)

    def __repr__(self) -> str:
        mode = f"multiprocess {self.multiprocess_dir!r}" if self.multiprocess_dir else "single"
        return f"PrometheusMetricsSink(namespace={self.namespace!r}, {mode})"
