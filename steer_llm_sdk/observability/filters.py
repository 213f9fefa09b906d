"""Filters: small callables run on the background thread before records reach sinks.

A filter is any callable ``(record) -> record | None`` (None drops the record) or an object
with a ``.filter(record)`` method of that shape. Filters may modify the record they are given.
A filter that raises drops the record (fail closed: filters often redact) and the collector
counts it under ``dropped["filter_error"]``.
"""

import os
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol, Union

from .models import BaseMetrics


class _FilterObject(Protocol):
    def filter(self, metrics: BaseMetrics) -> Optional[BaseMetrics]: ...


#: What ``MetricsConfig(filters=[...])`` accepts.
MetricsFilter = Union[Callable[[BaseMetrics], Optional[BaseMetrics]], _FilterObject]


def as_callable(flt: Any) -> Callable[[BaseMetrics], Optional[BaseMetrics]]:
    """The filter's callable form (its ``.filter`` method, or itself)."""
    method = getattr(flt, "filter", None)
    return method if callable(method) else flt


class OnlyProductionFilter:
    """Keeps records only when the environment says this is production.

    Args:
        variables: environment variables consulted in order; the first one set decides.
        production_values: values (case-insensitive) that mean production.
        environ: mapping to read instead of ``os.environ`` (tests).

    The environment is read once, at construction: filters run per record.
    """

    def __init__(
        self,
        variables: Iterable[str] = ("STEER_ENVIRONMENT", "ENVIRONMENT", "ENV"),
        production_values: Iterable[str] = ("production", "prod"),
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        env = os.environ if environ is None else environ
        values = {v.lower() for v in production_values}
        self.is_production = False
        for name in variables:
            if name in env:
                self.is_production = env[name].strip().lower() in values
                break

    def filter(self, metrics: BaseMetrics) -> Optional[BaseMetrics]:
        return metrics if self.is_production else None

    def __repr__(self) -> str:
        return f"OnlyProductionFilter(is_production={self.is_production})"


class AttributeFilter:
    """Adds, removes or allow-lists attributes.

    Args:
        add: attributes set on every record (they overwrite existing values).
        remove: attribute keys deleted from every record.
        keep: if given, every key not in it is deleted (applied before ``add``).
    """

    def __init__(
        self,
        add: Optional[Mapping[str, Any]] = None,
        remove: Iterable[str] = (),
        keep: Optional[Iterable[str]] = None,
    ) -> None:
        self.add = dict(add or {})
        self.remove = frozenset(remove)
        self.keep = None if keep is None else frozenset(keep)

    def filter(self, metrics: BaseMetrics) -> Optional[BaseMetrics]:
        attrs = metrics.attributes
        if self.keep is not None:
            attrs = {k: v for k, v in attrs.items() if k in self.keep}
        elif self.remove:
            attrs = {k: v for k, v in attrs.items() if k not in self.remove}
        else:
            attrs = dict(attrs)
        attrs.update(self.add)
        metrics.attributes = attrs
        return metrics

    def __repr__(self) -> str:
        return f"AttributeFilter(add={self.add!r}, remove={sorted(self.remove)!r})"
