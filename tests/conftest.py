"""Shared fixtures: real sinks that record what they get, fail, or hang; collectors that are
shut down after each test."""

import threading
import time
from typing import Callable, Iterator, List

import pytest
from sdk_clients import close_clients, open_clients

from steer_llm_sdk.observability import MetricsCollector, MetricsConfig
from steer_llm_sdk.observability.models import BaseMetrics


@pytest.fixture(scope="module", autouse=True)
def sdk_clients_closed(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the module that leaves an official SDK client open, and closes it.

    A client left open fails, with ``ResourceWarning: unclosed socket``, only the test in
    which a garbage collection happens to free it, and only when that collection
    finalizes the socket before the client (see sdk_clients.py): looking for open clients
    at the end of each module makes the failure certain and puts it in the module that
    leaked."""
    yield
    left = open_clients()
    if left:
        kinds = ", ".join(sorted(type(client).__name__ for client in left))
        close_clients(*left)
        del left
        pytest.fail(
            f"{request.module.__name__} left official SDK clients open ({kinds}): "
            "close each one it makes (tests/sdk_clients.py)",
            pytrace=False,
        )


class RecordingSink:
    """Keeps everything it receives; notes which threads called it."""

    def __init__(self, name: str = "recording") -> None:
        self.name = name
        self.records: List[BaseMetrics] = []
        self.threads = set()
        self.flushes = 0
        self.closes = 0
        self._lock = threading.Lock()
        self.arrived = threading.Condition(self._lock)

    def record(self, metrics: BaseMetrics) -> None:
        with self._lock:
            self.threads.add(threading.get_ident())
            self.records.append(metrics)
            self.arrived.notify_all()

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closes += 1

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        with self._lock:
            return self.arrived.wait_for(lambda: len(self.records) >= count, timeout)

    def of_type(self, metric_type: str) -> List[BaseMetrics]:
        return [r for r in self.records if r.metric_type == metric_type]


class FailingSink:
    """Raises on every record."""

    name = "failing"

    def __init__(self) -> None:
        self.calls = 0

    def record(self, metrics: BaseMetrics) -> None:
        self.calls += 1
        raise RuntimeError("sink is broken")

    def flush(self) -> None:
        raise RuntimeError("flush is broken too")


class HangingSink:
    """Blocks in record() until released (bounded, so a failed test cannot leak a thread
    forever)."""

    name = "hanging"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.received = 0

    def record(self, metrics: BaseMetrics) -> None:
        self.entered.set()
        self.release.wait(30)
        self.received += 1

    def flush(self) -> None:
        self.release.wait(30)


@pytest.fixture
def make_collector(request: pytest.FixtureRequest) -> Iterator[Callable[..., MetricsCollector]]:
    """Factory of collectors (fast batching by default), all shut down after the test, which
    fails if a collector counted an internal error (unless marked allow_internal_errors)."""
    made: List[MetricsCollector] = []

    def make(sinks=(), **config) -> MetricsCollector:  # type: ignore[no-untyped-def]
        config.setdefault("batch_timeout_seconds", 0.05)
        config.setdefault("flush_on_exit", False)
        collector = MetricsCollector(MetricsConfig(**config), sinks)
        made.append(collector)
        return collector

    yield make
    for collector in made:
        for sink in collector.sinks:
            release = getattr(sink, "release", None)
            if release is not None:
                release.set()
        collector.shutdown(2.0)
    if request.node.get_closest_marker("allow_internal_errors") is None:
        for collector in made:
            assert collector.stats().internal_errors == 0, collector.stats()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` with short waits until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        pause.wait(0.005)
    return predicate()
