"""What GenAI spans cost a tracked call: nothing while no TracerProvider is set, and how much
once one is.

Each figure is the mean cost of a tracked blocking call in process CPU time (every thread,
so the flush thread's and the span sink's work count), less a bare call's, measured as
``run.interleaved_means`` measures the headline (batches taking turns). A global
TracerProvider can be set once per process, so every mode runs in processes of its own,
and the processes of all modes take turns in one run (A, B, A, B, ...), so that the
machine's drift hits them alike:

* ``off``: no provider set (the default): the caller reads one flag; nothing else runs.
* ``on``: an SDK ``TracerProvider`` with a ``SimpleSpanProcessor`` and an exporter that
  drops what it gets: the span started on the flush thread, ended on the span sink's thread.
* ``baseline``: with ``--baseline DIR`` (a directory holding a ``steer_llm_sdk`` package
  without spans, e.g. this tree with the feature's files taken from the previous commit),
  the ``off`` measure run against that package: ``off`` minus ``baseline`` is what the
  feature costs when tracing is not configured.

Run: ``python benchmarks/bench_spans.py [--baseline DIR] [--processes N]``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROUNDS = int(os.environ.get("BENCH_SPANS_ROUNDS", "30"))


def measure(mode: str) -> Dict[str, float]:
    """In this process: the added cost of a tracked call (µs, process CPU and wall), and
    the caller's median latency, with the given tracing ``mode`` (``on`` sets a provider)."""
    from run import interleaved_means, latency_us

    if mode == "on":
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            SimpleSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Drop(SpanExporter):
            def export(self, spans):  # type: ignore[no-untyped-def]
                return SpanExportResult.SUCCESS

        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(Drop()))
        trace.set_tracer_provider(provider)

    from steer_llm_sdk.observability import MetricsCollector, MetricsConfig, RequestMetrics
    from steer_llm_sdk.observability.sinks import InMemoryMetricsSink

    def bare(prompt: str, model: str = "gpt-4o-mini") -> None:
        return None

    collector = MetricsCollector(MetricsConfig(), [InMemoryMetricsSink()])
    tracked = collector.track_request("openai")(bare)
    if mode == "on":
        tracked("warm")  # the first call starts the span sink
        collector.flush(10)
    means = interleaved_means({"bare": bare, "steer": tracked}, rounds=ROUNDS)
    out = {
        "cpu_us": means["steer"]["cpu"] - means["bare"]["cpu"],
        "wall_us": means["steer"]["wall"] - means["bare"]["wall"],
        "cpu_se_us": means["steer"]["cpu_se"],
        "caller_median_us": latency_us(tracked, 100_000) - latency_us(bare, 100_000),
    }
    collector.flush(30)
    stats = collector.stats()
    out["spans_sink"] = float("spans" in stats.sinks)
    out["has_spans"] = float(hasattr(RequestMetrics, "trace_id"))  # which package ran
    out["unaccounted"] = float(stats.unaccounted("in_memory"))
    collector.shutdown(10)
    return out


def _child(mode: str, package_dir: Path) -> Dict[str, float]:
    env = dict(os.environ, PYTHONPATH=f"{package_dir}{os.pathsep}{HERE}")
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="a directory holding steer_llm_sdk")
    parser.add_argument("--processes", type=int, default=4, help="processes per mode")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    modes = {"off": ROOT, "on": ROOT}
    if args.baseline is not None:
        modes["baseline"] = args.baseline.resolve()
    results: Dict[str, List[Dict[str, float]]] = {mode: [] for mode in modes}
    for turn in range(args.processes):
        order = list(modes)[turn % len(modes) :] + list(modes)[: turn % len(modes)]
        for mode in order:
            child_mode = "off" if mode == "baseline" else mode
            results[mode].append(_child(child_mode, modes[mode]))
    print(f"{'mode':<10}{'cpu µs/call':>14}{'± se':>8}{'wall µs':>10}{'caller median':>15}")
    for mode, runs in results.items():
        cpu = [r["cpu_us"] for r in runs]
        se = statistics.stdev(cpu) / len(cpu) ** 0.5 if len(cpu) > 1 else 0.0
        wall = statistics.mean(r["wall_us"] for r in runs)
        median = statistics.mean(r["caller_median_us"] for r in runs)
        print(f"{mode:<10}{statistics.mean(cpu):>14.3f}{se:>8.3f}{wall:>10.3f}{median:>15.3f}")
        assert all(r["unaccounted"] == 0 for r in runs), runs
        assert all(r["spans_sink"] == (mode == "on") for r in runs), runs
        assert all(r["has_spans"] == (mode != "baseline") for r in runs), runs
    if "baseline" in results:
        off = statistics.mean(r["cpu_us"] for r in results["off"])
        base = statistics.mean(r["cpu_us"] for r in results["baseline"])
        print(f"off - baseline: {off - base:+.3f} µs per call (process CPU)")


if __name__ == "__main__":
    main()
