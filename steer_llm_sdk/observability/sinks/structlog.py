"""StructlogMetricsSink: one structured log event per record, for log pipelines (ELK, Loki).

Each event carries every field of the record plus ``metric_type``; records hold no prompt or
completion text, so neither do the events. ``ReliabilityMetrics.event`` is logged as
``reliability_event`` (``event`` is the log event's own name).
"""

from typing import Any, Dict, Optional, Sequence

import structlog

from ..models import BaseMetrics

_LEVELS = ("debug", "info", "warning", "error", "critical")
# Record fields that are arguments of a structlog call itself: logged under another name
# (ReliabilityMetrics.event would otherwise collide with the event name).
_RENAMED = {"event": "reliability_event"}


def _fields(metrics: BaseMetrics) -> Dict[str, Any]:
    fields = metrics.to_dict()
    for name, renamed in _RENAMED.items():
        if name in fields:
            fields[renamed] = fields.pop(name)
    return fields


class StructlogMetricsSink:
    """Logs each record as one structlog event.

    Args:
        logger: a structlog (bound) logger; default ``structlog.get_logger("steer_llm_sdk")``.
            Configure structlog (processors, JSON renderer) as your application does; this
            sink never configures logging.
        event: the event name.
        level: ``debug``, ``info``, ``warning``, ``error`` or ``critical``.

    Raises:
        ValueError: an unknown level.
    """

    name = "structlog"

    def __init__(
        self, logger: Optional[Any] = None, event: str = "llm.metrics", level: str = "info"
    ) -> None:
        if level not in _LEVELS:
            raise ValueError(f"level must be one of {_LEVELS}, got {level!r}")
        self.logger = logger if logger is not None else structlog.get_logger("steer_llm_sdk")
        self.event = event
        self.level = level

    def record(self, metrics: BaseMetrics) -> None:
        self.record_batch((metrics,))

    def record_batch(self, batch: Sequence[BaseMetrics]) -> None:
        log = getattr(self.logger, self.level)
        for metrics in batch:
            log(self.event, **_fields(metrics))

    def flush(self) -> None:
        """structlog writes as it goes: nothing to flush."""

    def __repr__(self) -> str:
        return f"StructlogMetricsSink(event={self.event!r}, level={self.level!r})"
