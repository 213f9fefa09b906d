"""What the metrics API costs at start-up: ``import steer_llm_sdk.observability``, then
``instrument()`` with no SDK imported yet, each timed in a fresh interpreter.

Run with ``python benchmarks/bench_startup.py``; ``BENCH_STARTUP_RUNS`` sets how many fresh
processes are timed (default 21), after one untimed run that compiles the bytecode. Prints
the median, fastest and slowest wall time of both steps, their median CPU time (which a busy
machine disturbs less), and which of the modules that a process which only instruments
should not pay for were loaded. Targets from the project's issue 22: the import within
60 ms, ``instrument()`` within 20 ms (wall, median), neither loading ``requests``, the
client or an SDK.
"""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_STARTUP_RUNS", "21"))

#: Modules that a process which only imports the metrics API and calls instrument() should
#: not have loaded.
UNWANTED = ("requests", "steer_llm_sdk.client", "openai", "anthropic", "google.genai", "botocore")

# One fresh process: both steps timed (wall and CPU), and which unwanted modules were loaded.
_PROBE = f"""
import json, sys
from time import perf_counter, process_time
wall, cpu = perf_counter(), process_time()
import steer_llm_sdk.observability as observability
imported_wall, imported_cpu = perf_counter(), process_time()
observability.instrument()
done_wall, done_cpu = perf_counter(), process_time()
print(json.dumps({{
    "import_ms": (imported_wall - wall) * 1e3,
    "import_cpu_ms": (imported_cpu - cpu) * 1e3,
    "instrument_ms": (done_wall - imported_wall) * 1e3,
    "instrument_cpu_ms": (done_cpu - imported_cpu) * 1e3,
    "loaded": [name for name in {UNWANTED!r} if name in sys.modules],
}}))
"""


def probe(root: Path = ROOT) -> Dict[str, Any]:
    """Time one fresh interpreter importing the package from the source tree at ``root``."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: Dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def bench_startup(runs: int = RUNS) -> Dict[str, float]:
    """The figures of :data:`TARGETS`, in milliseconds, over ``runs`` fresh processes;
    ``startup_unwanted_modules`` counts the unwanted modules the runs loaded (0 expected)."""
    probe()
    samples = [probe() for _ in range(runs)]
    results: Dict[str, float] = {}
    for step in ("import", "instrument"):
        wall: List[float] = [sample[f"{step}_ms"] for sample in samples]
        results[f"startup_{step}_ms"] = statistics.median(wall)
        results[f"startup_{step}_ms_min"] = min(wall)
        results[f"startup_{step}_ms_max"] = max(wall)
        results[f"startup_{step}_cpu_ms"] = statistics.median(
            sample[f"{step}_cpu_ms"] for sample in samples
        )
    loaded = sorted({name for sample in samples for name in sample["loaded"]})
    results["startup_unwanted_modules"] = float(len(loaded))
    if loaded:
        print(f"loaded by the import and instrument(): {', '.join(loaded)}")
    return results


TARGETS = [
    ("startup_import_ms", "<=", 60.0, "import steer_llm_sdk.observability: median wall (ms)"),
    ("startup_import_ms_min", "info", None, "  fastest (ms)"),
    ("startup_import_ms_max", "info", None, "  slowest (ms)"),
    ("startup_import_cpu_ms", "info", None, "  median CPU time (ms)"),
    ("startup_instrument_ms", "<=", 20.0, "instrument(), no SDK imported: median wall (ms)"),
    ("startup_instrument_ms_min", "info", None, "  fastest (ms)"),
    ("startup_instrument_ms_max", "info", None, "  slowest (ms)"),
    ("startup_instrument_cpu_ms", "info", None, "  median CPU time (ms)"),
    ("startup_unwanted_modules", "<=", 0, "requests, the client or SDKs loaded by the two"),
]


def main() -> int:
    """Print the table; exit 1 if a target was missed."""
    results = bench_startup()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {RUNS} fresh processes")
    failed = 0
    for key, op, target, label in TARGETS:
        value = results[key]
        verdict = ""
        if op == "<=":
            ok = value <= target
            failed += not ok
            verdict = f"target {op} {target:g}: {'ok' if ok else 'MISSED'}"
        print(f"{label:<58} {value:>12.3f}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
