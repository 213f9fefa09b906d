"""The sink protocol: where records go after the background thread has batched them.

A sink needs ``record(metrics)`` and ``flush()``. It may also provide ``record_batch(batch)``
(called instead of looping over ``record``) and ``close()`` (called once, at shutdown).

Each sink is called from its own delivery thread, never from the thread that made the LLM
call, and never concurrently with itself; it still must be thread-safe for the queries its
users make from other threads. A sink that raises is isolated: the exception is counted and
logged, and the other sinks still receive everything. ``name`` (optional attribute) labels
the sink in ``collector.stats()``; the class name is used otherwise.

A sink whose ``record_batch``/``record`` and ``flush`` never block (no I/O, no waiting on
other threads) may set ``nonblocking = True``: the collector then calls it from its flush
thread directly, saving a thread hand-off per batch. A sink that can hang must not set it,
or it would delay every other sink.
"""

from typing import Protocol, runtime_checkable

from .models import BaseMetrics


@runtime_checkable
class MetricsSink(Protocol):
    """Receives metric records on a background thread."""

    def record(self, metrics: BaseMetrics) -> None:
        """Take one record. May raise; the collector counts the failure."""

    def flush(self) -> None:
        """Push out anything buffered. Called by ``collector.flush()``."""


def close(sink: MetricsSink) -> None:
    """Call ``sink.close()`` if it has one."""
    closer = getattr(sink, "close", None)
    if closer is not None:
        closer()


def sink_name(sink: object) -> str:
    """The label of ``sink`` in stats: its ``name`` attribute, or its class name."""
    name = getattr(sink, "name", None)
    return name if isinstance(name, str) and name else type(sink).__name__
