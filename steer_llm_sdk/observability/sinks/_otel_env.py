"""The standard OpenTelemetry environment variables, resolved the way the specification says.

Precedence, for every setting: the explicit argument, then the signal-specific variable
(``OTEL_EXPORTER_OTLP_METRICS_*``), then the general one (``OTEL_EXPORTER_OTLP_*``), then
the default. Reading from a mapping passed in (not only ``os.environ``) keeps the sink
testable and lets an application hand over its own settings.

Durations in variables are milliseconds, as the specification defines them
(``OTEL_EXPORTER_OTLP_TIMEOUT``, ``OTEL_METRIC_EXPORT_INTERVAL``,
``OTEL_METRIC_EXPORT_TIMEOUT``).

No I/O; imports nothing from the package.
"""

from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import unquote, urlsplit

PROTOCOLS = ("http/protobuf", "grpc")
COMPRESSIONS = ("gzip", "deflate", "none")
TEMPORALITIES = ("cumulative", "delta", "lowmemory")
EXPORTERS = ("otlp", "console", "none")
EXEMPLAR_FILTERS = ("trace_based", "always_on", "always_off")


def pick(env: Mapping[str, str], *names: str) -> Optional[str]:
    """The first of ``names`` set to a non-blank value in ``env``, stripped."""
    for name in names:
        value = env.get(name)
        if value is not None and value.strip():
            return value.strip()
    return None


def truthy(env: Mapping[str, str], name: str) -> bool:
    """A boolean variable: only ``true`` (any case) is true, as the specification says."""
    return (env.get(name) or "").strip().lower() == "true"


def key_values(text: Optional[str]) -> Dict[str, str]:
    """Parse ``k1=v1,k2=v2`` (W3C baggage-like; keys and values percent-decoded).

    Malformed members are skipped, as the SDKs do.
    """
    out: Dict[str, str] = {}
    for member in (text or "").split(","):
        key, sep, value = member.partition("=")
        key = unquote(key.strip())
        if sep and key:
            out[key] = unquote(value.strip())
    return out


def millis(env: Mapping[str, str], *names: str) -> Optional[float]:
    """Seconds from the first of ``names`` holding a non-negative number of milliseconds."""
    value = pick(env, *names)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{names[0]}-style variable must be milliseconds, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{names[0]} must be >= 0, got {value!r}")
    return number / 1000.0


class ExportSettings:
    """Everything the OTLP sink reads from arguments and variables, resolved once.

    Args (each None to fall back to the variables, then the default):
        endpoint, protocol, headers, compression, timeout_seconds: the exporter's.
        interval_seconds: between periodic exports (default 10 s).
        temporality: ``cumulative``, ``delta`` or ``lowmemory``.
        service_name: the resource's ``service.name``.
        resource_attributes: added to the resource; win over ``OTEL_RESOURCE_ATTRIBUTES``.
        env: the variables (``os.environ`` when the sink is given none).

    Raises:
        ValueError: a protocol, compression, temporality or exporter not supported (the
            message names the value and where it came from), a bad number.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        endpoint: Optional[str] = None,
        protocol: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        compression: Optional[str] = None,
        timeout_seconds: Optional[float] = None,
        interval_seconds: Optional[float] = None,
        temporality: Optional[str] = None,
        service_name: Optional[str] = None,
        resource_attributes: Optional[Mapping[str, Any]] = None,
    ) -> None:
        self.disabled = truthy(env, "OTEL_SDK_DISABLED")
        self.exporters = self._exporters(env)
        self.protocol = (
            protocol
            or pick(env, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        )
        if self.protocol == "http/json":
            raise ValueError(
                "OTLP protocol 'http/json' is not supported: the OpenTelemetry Python "
                "exporters speak 'http/protobuf' and 'grpc'"
            )
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        self.endpoint = self._endpoint(env, endpoint)
        self.headers: Dict[str, str] = (
            dict(headers)
            if headers is not None
            else key_values(
                pick(env, "OTEL_EXPORTER_OTLP_METRICS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
            )
        )
        self.compression = (
            compression
            or pick(env, "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION")
            or "none"
        ).lower()
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {self.compression!r}")
        self.timeout_seconds = _first(
            timeout_seconds,
            millis(env, "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
            10.0,
        )
        self.interval_seconds = _first(
            interval_seconds, millis(env, "OTEL_METRIC_EXPORT_INTERVAL"), 10.0
        )
        if not self.interval_seconds > 0:
            raise ValueError("the export interval must be > 0")
        # The reader's deadline for one collection and export.
        self.reader_timeout_seconds = _first(
            None, millis(env, "OTEL_METRIC_EXPORT_TIMEOUT"), self.timeout_seconds
        )
        self.temporality = (
            temporality
            or pick(env, "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE")
            or "cumulative"
        ).lower()
        if self.temporality not in TEMPORALITIES:
            raise ValueError(
                f"temporality must be one of {TEMPORALITIES}, got {self.temporality!r}"
            )
        self.resource = self._resource(env, service_name, resource_attributes)
        #: ``OTEL_METRICS_EXEMPLAR_FILTER``: ``trace_based`` (default), ``always_on`` or
        #: ``always_off``.
        self.exemplar_filter = (pick(env, "OTEL_METRICS_EXEMPLAR_FILTER") or "trace_based").lower()
        if self.exemplar_filter not in EXEMPLAR_FILTERS:
            raise ValueError(
                f"OTEL_METRICS_EXEMPLAR_FILTER must be one of {EXEMPLAR_FILTERS}, "
                f"got {self.exemplar_filter!r}"
            )

    @staticmethod
    def _exporters(env: Mapping[str, str]) -> List[str]:
        names = [n.strip().lower() for n in (env.get("OTEL_METRICS_EXPORTER") or "otlp").split(",")]
        names = [n for n in names if n] or ["otlp"]
        for name in names:
            if name not in EXPORTERS:
                raise ValueError(
                    f"OTEL_METRICS_EXPORTER={name!r} is not supported by OTelMetricsSink "
                    f"(supported: {', '.join(EXPORTERS)}; for Prometheus use "
                    "PrometheusMetricsSink)"
                )
        return [] if "none" in names else names

    def _endpoint(self, env: Mapping[str, str], explicit: Optional[str]) -> Optional[str]:
        """The exporter's URL (None: the exporter's own default, localhost:4317/4318)."""
        grpc = self.protocol == "grpc"
        if explicit is not None:
            if not grpc and urlsplit(explicit).path in ("", "/"):
                return explicit.rstrip("/") + "/v1/metrics"
            return explicit
        specific = pick(env, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        if specific is not None:
            return specific  # used as given, path and all
        general = pick(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
        if general is not None and not grpc:
            return general.rstrip("/") + "/v1/metrics"
        if general is None:
            return "http://localhost:4317" if grpc else "http://localhost:4318/v1/metrics"
        return general

    @staticmethod
    def _resource(
        env: Mapping[str, str],
        service_name: Optional[str],
        explicit: Optional[Mapping[str, Any]],
    ) -> Dict[str, Any]:
        attrs: Dict[str, Any] = dict(key_values(env.get("OTEL_RESOURCE_ATTRIBUTES")))
        env_name = pick(env, "OTEL_SERVICE_NAME")
        if env_name is not None:  # wins over service.name in OTEL_RESOURCE_ATTRIBUTES
            attrs["service.name"] = env_name
        attrs.update(explicit or {})
        if service_name:
            attrs["service.name"] = service_name
        attrs.setdefault("service.name", "unknown_service")
        return attrs


def _first(*values: Optional[float]) -> float:
    for value in values:
        if value is not None:
            return float(value)
    raise ValueError("no value")  # pragma: no cover - the last value is a default
