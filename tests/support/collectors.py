"""Collectors made with the tests' defaults, remembered so a fixture can shut them down."""

from typing import Any, Iterable, List

from steer_llm_sdk.observability import MetricsCollector, MetricsConfig


def new_collector(sinks: Iterable[Any] = (), **config: Any) -> MetricsCollector:
    """A collector of ``sinks``, ``config`` being MetricsConfig's fields; unless given, it
    batches fast (50 ms) and does not drain at interpreter exit (the test shuts it down)."""
    config.setdefault("batch_timeout_seconds", 0.05)
    config.setdefault("flush_on_exit", False)
    return MetricsCollector(MetricsConfig(**config), sinks)


class Collectors:
    """A factory of collectors (called as :func:`new_collector`) that keeps every collector
    it made in :attr:`made`, for the fixture that shuts them down."""

    def __init__(self) -> None:
        self.made: List[MetricsCollector] = []

    def __call__(self, sinks: Iterable[Any] = (), **config: Any) -> MetricsCollector:
        collector = new_collector(sinks, **config)
        self.made.append(collector)
        return collector
