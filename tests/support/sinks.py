"""Sinks for tests: one that keeps what it gets, one that fails, one that hangs until
released, and one that writes ``<pid> <request_id>`` lines a forked child's records survive
in."""

import os
import threading
from pathlib import Path
from typing import Any, List, Sequence, Union

from steer_llm_sdk.observability.models import BaseMetrics


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


class LinesSink:
    """Appends ``<pid> <request_id>`` lines to a file, with one ``os.write`` per batch: what
    a process delivered survives it, and the sink has no lock of its own that a fork could
    leave held."""

    name = "lines"

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = str(path)

    def record_batch(self, batch: Sequence[Any]) -> None:
        text = "".join(f"{os.getpid()} {m.request_id}\n" for m in batch).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text)
        finally:
            os.close(fd)

    def record(self, metrics: Any) -> None:
        self.record_batch([metrics])

    def flush(self) -> None:
        pass


def written_lines(path: Union[str, Path]) -> List[List[str]]:
    """The ``[pid, request_id]`` of every line a :class:`LinesSink` wrote (none when it wrote
    nothing)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.split() for line in f.read().splitlines()]
