"""MetricsConfig: every knob of the metrics pipeline, validated once at construction.

A bad value raises at once, naming the field and what it accepts, instead of surfacing later
on a background thread. :meth:`MetricsConfig.from_env` parses ``STEER_METRICS_*`` variables
into the same validated object; a bad variable's error names the variable.
"""

import math
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

from ..pricing import PriceTable

ENV_PREFIX = "STEER_METRICS_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int in [{low}, {high}], got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def _check_float(name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    bracket = "(" if low_open else "["
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a number in {bracket}{low}, {high}], got {type(value).__name__}"
        )
    value = float(value)
    if math.isnan(value) or value > high or value < low or (low_open and value == low):
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value}")
    return value


# name -> (kind, bounds) for the scalar fields; drives both validation and from_env().
_SCALARS: Dict[str, Tuple[str, Tuple[float, float]]] = {
    "enabled": ("bool", (0, 0)),
    "batch_size": ("int", (1, 1_000_000)),
    "batch_timeout_seconds": ("float>", (0.0, 3600.0)),
    "enable_streaming_metrics": ("bool", (0, 0)),
    "enable_reliability_metrics": ("bool", (0, 0)),
    "enable_cost_tracking": ("bool", (0, 0)),
    "request_sampling_rate": ("float", (0.0, 1.0)),
    "streaming_sampling_rate": ("float", (0.0, 1.0)),
    "error_sampling_rate": ("float", (0.0, 1.0)),
    "max_queue_size": ("int", (1, 100_000_000)),
    "sink_queue_size": ("int", (1, 100_000_000)),
    "flush_on_exit": ("bool", (0, 0)),
    "shutdown_timeout_seconds": ("float", (0.0, 3600.0)),
    "max_attributes": ("int", (0, 10_000)),
    "max_attribute_length": ("int", (1, 1_000_000)),
    "model_argument": ("str", (0, 0)),
    "usage_rollup_seconds": ("float", (0.0, 86_400.0)),
    "trace_spans": ("bool", (0, 0)),
}


class MetricsConfig:
    """Configuration of a :class:`~steer_llm_sdk.observability.MetricsCollector`.

    Args:
        enabled: False turns every ``record()`` into a cheap no-op.
        batch_size: records per batch handed to sinks (1..1,000,000).
        batch_timeout_seconds: a batch is dispatched once its oldest record is this old
            (0 < t <= 3600).
        enable_streaming_metrics: emit a StreamingMetrics per tracked stream.
        enable_reliability_metrics: emit ReliabilityMetrics (retries, breaker states).
        enable_cost_tracking: price calls and fill ``cost_usd``.
        request_sampling_rate: share of successful blocking requests kept, [0, 1].
        streaming_sampling_rate: share of successful streamed requests kept, [0, 1].
        error_sampling_rate: share of failed requests kept, [0, 1].
        filters: callables ``(record) -> record | None`` or objects with ``.filter(record)``,
            run in order on the background thread.
        max_queue_size: records waiting for the background thread; beyond it new records are
            dropped and counted as ``queue_full``.
        sink_queue_size: records waiting for one sink; defaults to ``max_queue_size``.
        flush_on_exit: deliver pending records at interpreter exit.
        shutdown_timeout_seconds: deadline for the exit flush, and the default deadline of
            ``flush()`` and ``shutdown()`` called without a timeout, [0, 3600].
        max_attributes: attributes kept per record (the first ones), [0, 10,000].
        max_attribute_length: longest attribute key or string value, and longest name field.
        model_argument: keyword argument of a tracked function that names the model.
        pricing: prices overriding or extending the bundled table (see
            :mod:`steer_llm_sdk.pricing`): a ``PriceTable`` or ``{model: {"input",
            "output", "cached_input"}}`` in USD per million tokens.
        usage_rollup_seconds: when > 0, the pipeline sums the requests it delivers into one
            :class:`~.models.UsageMetrics` per provider/model per period (windows aligned to
            multiples of the period) and sends it to every sink once the window has ended,
            the open windows at shutdown; 0 (default) turns roll-ups off. Roll-ups are
            records: they count in ``stats()`` and pass the filters. [0, 86,400].
        trace_spans: when the application has set a global OpenTelemetry
            ``TracerProvider``, emit one GenAI client span per measured call, a child of
            the span current when the call started (see :mod:`.tracing`); False emits
            none. Nothing is done, and nothing costs, while no provider is set.

    Raises:
        TypeError: a field has the wrong type.
        ValueError: a field is out of range; the message names the field and the range.

    Instances are immutable; use :meth:`replace` to derive a changed copy.
    """

    __slots__ = tuple(_SCALARS) + ("filters", "pricing")
    enabled: bool
    batch_size: int
    batch_timeout_seconds: float
    enable_streaming_metrics: bool
    enable_reliability_metrics: bool
    enable_cost_tracking: bool
    request_sampling_rate: float
    streaming_sampling_rate: float
    error_sampling_rate: float
    filters: Tuple[Any, ...]
    max_queue_size: int
    sink_queue_size: int
    flush_on_exit: bool
    shutdown_timeout_seconds: float
    max_attributes: int
    max_attribute_length: int
    model_argument: str
    usage_rollup_seconds: float
    trace_spans: bool
    pricing: Optional[PriceTable]

    def __init__(
        self,
        enabled: bool = True,
        batch_size: int = 100,
        batch_timeout_seconds: float = 1.0,
        enable_streaming_metrics: bool = True,
        enable_reliability_metrics: bool = True,
        enable_cost_tracking: bool = False,
        request_sampling_rate: float = 1.0,
        streaming_sampling_rate: float = 1.0,
        error_sampling_rate: float = 1.0,
        filters: Sequence[Any] = (),
        max_queue_size: int = 10_000,
        sink_queue_size: Optional[int] = None,
        flush_on_exit: bool = True,
        shutdown_timeout_seconds: float = 5.0,
        max_attributes: int = 32,
        max_attribute_length: int = 256,
        model_argument: str = "model",
        pricing: Union[None, PriceTable, Mapping[str, Any]] = None,
        usage_rollup_seconds: float = 0.0,
        trace_spans: bool = True,
    ) -> None:
        values = dict(locals())
        del values["self"]
        if values["sink_queue_size"] is None:
            values["sink_queue_size"] = max_queue_size
        for name, (kind, (low, high)) in _SCALARS.items():
            value = values[name]
            if kind == "bool":
                value = _check_bool(name, value)
            elif kind == "int":
                value = _check_int(name, value, int(low), int(high))
            elif kind == "str":
                if not isinstance(value, str) or not value.isidentifier():
                    raise TypeError(f"{name} must be a keyword argument name, got {value!r}")
            else:
                value = _check_float(name, value, low, high, low_open=kind == "float>")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "filters", _check_filters(filters))
        object.__setattr__(self, "pricing", _check_pricing(pricing))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("MetricsConfig is immutable; use replace(**changes)")

    def replace(self, **changes: Any) -> "MetricsConfig":
        """A validated copy with ``changes`` applied."""
        values = {name: getattr(self, name) for name in self.__slots__}
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"unknown MetricsConfig field(s): {', '.join(sorted(unknown))}")
        values.update(changes)
        return MetricsConfig(**values)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"MetricsConfig({fields})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MetricsConfig):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_env(
        cls, environ: Optional[Mapping[str, str]] = None, **overrides: Any
    ) -> "MetricsConfig":
        """Build a config from ``STEER_METRICS_<FIELD>`` variables (e.g.
        ``STEER_METRICS_BATCH_SIZE=50``, ``STEER_METRICS_ENABLED=false``).

        Args:
            environ: the variables to read (default ``os.environ``).
            **overrides: fields set in code; they win over the environment.

        Raises:
            ValueError/TypeError: naming the variable, for a value that does not parse or is
                out of range.
        """
        env = os.environ if environ is None else environ
        values: Dict[str, Any] = {}
        for name, (kind, _) in _SCALARS.items():
            var = ENV_PREFIX + name.upper()
            raw = env.get(var)
            if raw is None or raw.strip() == "" or name in overrides:
                continue
            values[name] = _parse_env(var, kind, raw.strip())
        values.update(overrides)
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            names = [n for n in values if n not in overrides and n in str(exc)]
            if names:
                raise type(exc)(f"{ENV_PREFIX}{names[0].upper()}: {exc}") from None
            raise


def _parse_env(var: str, kind: str, raw: str) -> Any:
    if kind == "bool":
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"{var}: expected one of true/false/1/0/yes/no/on/off, got {raw!r}")
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{var}: expected an integer, got {raw!r}") from None
    if kind == "str":
        return raw
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{var}: expected a number, got {raw!r}") from None


def _check_pricing(pricing: Any) -> Optional[PriceTable]:
    if pricing is None or isinstance(pricing, PriceTable):
        return pricing
    if not isinstance(pricing, Mapping):
        raise TypeError("pricing must be a PriceTable or a mapping of model -> prices")
    return PriceTable(pricing)  # raises ValueError naming the bad entry


def _check_filters(filters: Any) -> Tuple[Callable[..., Any], ...]:
    if filters is None:
        return ()
    if isinstance(filters, (str, bytes)) or not isinstance(filters, (list, tuple)):
        raise TypeError("filters must be a list or tuple of callables or objects with .filter()")
    for item in filters:
        if not (callable(item) or callable(getattr(item, "filter", None))):
            raise TypeError(
                f"filters: {item!r} is neither callable nor has a .filter(record) method"
            )
    return tuple(filters)
