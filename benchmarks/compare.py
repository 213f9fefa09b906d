"""The headline tracked-call benchmark for this tree and earlier revisions, in one process.

Usage: ``python benchmarks/compare.py REV [REV ...]`` (``make bench-compare BASE="REV ..."``);
``BENCH_ROUNDS``, ``BENCH_BATCH`` and ``BENCH_WARMUP`` change the run's length.

Figures taken in separate processes differ by more than the changes worth knowing (±15% on
a shared VM). Here each revision's ``steer_llm_sdk`` package is exported with ``git archive``
under a name of its own (``steer_llm_sdk_<rev>``: the package imports itself only by
relative imports, so it loads beside this tree's) and every version takes its turn batch by
batch with prometheus_client and a bare call, as in ``run.py``'s headline.

Each batch of calls ends with the collector's ``flush()`` inside the timed region, so the
flush thread's work for a batch is charged to that batch, never to the contender after it.
Per contender, in µs per call over the bare function, mean ± standard error over the
batches:

* ``cpu``: process CPU (every thread), garbage collection included;
* ``gc``: the wall time spent in garbage collection during its batches (the collector runs
  on the thread that triggered it, holding the GIL, so that is CPU time too; a full
  collection falls in whichever batch crosses the threshold, so this figure is noisy and
  shared);
* ``cpu - gc``: the code's own cost, the figure to compare revisions by;
* ``flush``: the part of ``cpu`` not on the calling thread (the flush thread's share);
* ``collections``: garbage collections of generations 0/1/2 during its batches.
"""

import gc
import importlib
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
BATCH = int(os.environ.get("BENCH_BATCH", "2000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "60"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "30000"))  # past the in-memory sink's ring


def export(rev: str, into: Path) -> str:
    """Export ``rev``'s package into ``into`` as ``steer_llm_sdk_<short rev>``; returns that
    name. Raises ``subprocess.CalledProcessError`` for an unknown revision."""
    short = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    name = f"steer_llm_sdk_{short}"
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "steer_llm_sdk"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        # Our own repository's archive; the "data" filter where Python has it (3.12+ warns
        # without one).
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(into / "tmp", **safe)  # type: ignore[arg-type]
    (into / "tmp" / "steer_llm_sdk").rename(into / name)
    return name


def tracked_call(package: str, bare: Callable[..., Any]) -> Tuple[Callable[[str], Any], Any]:
    """``bare`` decorated with ``package``'s ``track_request("openai")`` on a collector of its
    own with an in-memory sink (the defaults), and that collector."""
    observability = importlib.import_module(package + ".observability")
    sinks = importlib.import_module(package + ".observability.sinks")
    collector = observability.MetricsCollector(
        observability.MetricsConfig(), [sinks.InMemoryMetricsSink()]
    )
    return collector.track_request("openai")(bare), collector


class _GcClock:
    """Seconds spent in garbage collection since it was made, and collections by
    generation (a ``gc.callbacks`` entry)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.collections = [0, 0, 0]  # per generation
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: Dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1


def measure(
    contenders: Dict[str, Tuple[Callable[[str], Any], Optional[Any]]],
    rounds: int = ROUNDS,
    batch: int = BATCH,
) -> Dict[str, Dict[str, float]]:
    """Per contender ``{"cpu", "cpu_se", "gc", "own", "own_se", "flush"}`` in µs per call
    and ``"collections"`` (per generation, over its batches),
    taking turns batch by batch (the order rotating); ``contenders`` maps a name to the call
    and the collector to flush at the end of each of its batches (None for none)."""
    clock = _GcClock()
    names = list(contenders)
    for call, collector in contenders.values():
        for _ in range(WARMUP):
            call("hi")
        if collector is not None:
            collector.flush(10)
    rows: Dict[str, List[Tuple[float, float, float]]] = {name: [] for name in names}
    collections = {name: [0, 0, 0] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            call, collector = contenders[name]
            gc_start, counts = clock.total, list(clock.collections)
            cpu_start, thread_start = time.process_time(), time.thread_time()
            for _ in range(batch):
                call("hi")
            if collector is not None:
                collector.flush(10)
            cpu = (time.process_time() - cpu_start) / batch * 1e6
            caller = (time.thread_time() - thread_start) / batch * 1e6
            rows[name].append((cpu, (clock.total - gc_start) / batch * 1e6, cpu - caller))
            for generation, count in enumerate(clock.collections):
                collections[name][generation] += count - counts[generation]
    gc.callbacks.remove(clock._callback)
    out = {}
    for name, found in rows.items():
        cpu = [row[0] for row in found]
        own = [row[0] - row[1] for row in found]
        out[name] = {
            "cpu": statistics.mean(cpu),
            "cpu_se": statistics.stdev(cpu) / len(cpu) ** 0.5,
            "gc": statistics.mean(row[1] for row in found),
            "own": statistics.mean(own),
            "own_se": statistics.stdev(own) / len(own) ** 0.5,
            "flush": statistics.mean(row[2] for row in found),
            "collections": collections[name],
        }
    return out


def main(revs: List[str]) -> int:
    def bare(prompt: str, model: str = "gpt-4o-mini") -> None:
        return None

    from prometheus_client import CollectorRegistry, Histogram

    histogram = Histogram(
        "llm_request_seconds", "latency", ["provider", "model"], registry=CollectorRegistry()
    )

    def prometheus_call(prompt: str) -> None:
        with histogram.labels("openai", "gpt-4o-mini").time():
            bare(prompt)

    contenders: Dict[str, Tuple[Callable[[str], Any], Optional[Any]]] = {"bare": (bare, None)}
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, tmp)
        for rev in revs:
            name = export(rev, Path(tmp))
            contenders[name.rsplit("_", 1)[1]] = tracked_call(name, bare)  # by short hash
        sys.path.insert(0, str(ROOT))
        contenders["this tree"] = tracked_call("steer_llm_sdk", bare)
        contenders["prometheus_client"] = (prometheus_call, None)
        results = measure(contenders)
    base = results.pop("bare")
    print(f"Python {sys.version.split()[0]}, {ROUNDS} rounds of {BATCH} calls, µs per call")
    print(f"{'':<20} {'cpu':>14} {'gc':>7} {'cpu - gc':>14} {'flush':>7}  collections")
    for name, row in results.items():
        cpu = row["cpu"] - base["cpu"]
        own = row["own"] - base["own"]
        print(
            f"{name:<20} {cpu:7.3f} ±{row['cpu_se']:.3f} {row['gc']:7.3f} "
            f"{own:7.3f} ±{row['own_se']:.3f} {row['flush']:7.3f}  "
            + "/".join(str(n) for n in row["collections"])  # type: ignore[union-attr]
        )
    for _, collector in contenders.values():
        if collector is not None:
            collector.shutdown(5)
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
