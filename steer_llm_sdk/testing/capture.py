"""capture_metrics: collect the records a block of code produces, for assertions."""

from contextlib import contextmanager
from typing import Iterator, Optional

from ..observability import MetricsCollector, MetricsConfig
from ..observability.lifecycle import swap_default
from ..observability.sinks import InMemoryMetricsSink


@contextmanager
def capture_metrics(config: Optional[MetricsConfig] = None) -> Iterator[InMemoryMetricsSink]:
    """Route the default collector into a fresh in-memory sink for the block, then restore
    the previous default (untouched). Records are flushed into the sink when the block
    ends::

        with capture_metrics() as captured:
            my_tracked_function()
        assert captured.get_metrics(metric_type="request")[0].success
    """
    sink = InMemoryMetricsSink()
    collector = MetricsCollector(config or MetricsConfig(flush_on_exit=False), [sink])
    previous = swap_default(collector)
    try:
        yield sink
    finally:
        swap_default(previous)
        collector.shutdown()
