"""Issue 20, item 5: ``os.fork()`` from a worker thread while other threads hold the locks the
library takes on its threads (the pricer's, prometheus_client's family, value and registry
locks): every child is left fresh locks and delivers exactly its own records.

Each child works on a thread of its own and exits with ``os._exit()`` after a bounded wait
(0 done, 3 hung), and the parent kills a child that outlives its bound: a hang fails the test
in seconds instead of stalling it. prometheus_client's multiprocess mode must be chosen
before it is imported, so those scenarios run in a fresh interpreter (this file run as a
script, through ``tests/support/spawn.py``) and report in JSON.
"""

import json
import os
import subprocess
import sys
import threading
import time
from functools import partial

import pytest
from support.paths import TESTS
from support.records import request_record
from support.sinks import LinesSink, written_lines
from support.waiting import reap

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns that forking a threaded process may deadlock: that is the point.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

HUNG = 3
PER_CHILD = 5
FORKS = 40


# --------------------------------------------------------------------------- helpers
#: A priced call: the pricer and the Prometheus sink have work on every record.
req = partial(request_record, model="gpt-4o", duration_ms=250.0, usage=(100, 20))


def child_exit(body, wait):
    """In a forked child: run ``body()`` on a new thread, ``os._exit`` 0 if it returned True
    within ``wait`` seconds, 1 if it returned False or raised, :data:`HUNG` if it did not
    return."""
    outcome = []
    done = threading.Event()

    def work():
        try:
            outcome.append(bool(body()))
        finally:
            done.set()

    threading.Thread(target=work, daemon=True).start()
    code = HUNG if not done.wait(wait) else (0 if outcome == [True] else 1)
    os._exit(code)


def exit_code(pid, bound):
    """The exit code of child ``pid``; killed (and reported :data:`HUNG`) past ``bound``
    seconds."""
    code = reap(pid, bound)
    return HUNG if code is None else code


def fork_while_held(lock, body, wait=2.0):
    """Fork while another thread holds ``lock``; the child runs ``body``. Returns the
    child's exit code."""
    held, release = threading.Event(), threading.Event()

    def hold():
        with lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            child_exit(body, wait)
        return exit_code(pid, wait + 5)
    finally:
        release.set()
        holder.join(5)


def run_scenario(name, tmp_path, *args, timeout=60):
    """Run ``name`` in a fresh interpreter with ``PROMETHEUS_MULTIPROC_DIR`` set; its JSON."""
    from support import spawn

    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(prom_dir),
        # This file runs as a script: its imports of ``support`` need the tests folder.
        "PYTHONPATH": os.pathsep.join([str(spawn.ROOT), str(TESTS)]),
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
    }
    env.pop("STEER_PRICE_SOURCE", None)
    done = spawn.run(
        [sys.executable, __file__, name, str(tmp_path), *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the pricer
def test_pricer_lock_held_by_another_thread_at_fork():
    # The pricer belongs to the collector's pipeline, which renews its lock in the child.
    pytest.importorskip("genai_prices")
    from steer_llm_sdk.observability import MetricsCollector, MetricsConfig
    from steer_llm_sdk.observability.sinks import InMemoryMetricsSink

    sink = InMemoryMetricsSink()
    config = MetricsConfig(flush_on_exit=False, enable_cost_tracking=True)
    collector = MetricsCollector(config, [sink])
    pricer = collector._pipeline.enricher.prices  # the lock to hold is the pipeline's own
    assert pricer.cost("openai", "gpt-4o", 100, 20) is not None  # cached: the lock path

    def child():
        with collector.track_request("openai", "gpt-4o") as m:
            m.prompt_tokens, m.completion_tokens = 100, 20
        assert collector.flush(2)
        return [r.cost_usd for r in sink.get_metrics()] != [None]

    try:
        assert fork_while_held(pricer._lock, child) == 0, "the child hung on the pricer's lock"
        assert pricer.cost("openai", "gpt-4o", 100, 20) is not None  # the parent's still works
    finally:
        collector.shutdown(5)


# --------------------------------------------------------------------------- prometheus_client
def test_the_adapter_still_finds_what_it_repairs():
    """Fails loudly when a prometheus_client release moves the value lock, the families'
    locks or the file growth that ``_prometheus_mp`` repairs."""
    from prometheus_client import values

    from steer_llm_sdk.observability.sinks import _prometheus_mp

    assert _prometheus_mp.problems() == []
    value_class = values.MultiProcessValue()
    cell = _prometheus_mp._cell(value_class, "lock")
    before = cell.cell_contents
    before.acquire()  # as if a thread of the parent held it at the fork
    try:
        original, values.ValueClass = values.ValueClass, value_class
        try:
            _prometheus_mp.renew_value_lock()
        finally:
            values.ValueClass = original
        assert cell.cell_contents is not before
        assert cell.cell_contents.acquire(timeout=1)  # the one every method now takes
        cell.cell_contents.release()
    finally:
        before.release()


def _sink():
    from prometheus_client import CollectorRegistry

    from steer_llm_sdk.observability.sinks import PrometheusMetricsSink

    sink = PrometheusMetricsSink(registry=CollectorRegistry())
    sink.record(req("warm"))
    return sink


def _recorded(sink, count):
    def body():
        sink.record(req("in-child"))
        requests = sink._families["requests"][0]
        return sum(c._value.get() for c in requests._metrics.values()) == count

    return body


def test_family_lock_held_at_fork():
    sink = _sink()
    family = sink._families["requests"][0]
    assert fork_while_held(family._lock, _recorded(sink, 2)) == 0, "hung in labels()"


def test_value_lock_held_at_fork_single_process():
    sink = _sink()
    child = next(iter(sink._families["requests"][0]._metrics.values()))
    assert fork_while_held(child._value._lock, _recorded(sink, 2)) == 0, "hung in inc()"


def test_registry_lock_held_at_fork():
    from steer_llm_sdk.observability.sinks import PrometheusMetricsSink, prometheus

    sink = PrometheusMetricsSink()
    sink.record(req("warm"))

    def child():
        return b"llm_requests_total" in prometheus.exposition()[0]

    assert fork_while_held(prometheus._DEFAULT_REGISTRY._lock, child) == 0, "hung in a scrape"


def test_multiprocess_value_lock_held_at_fork(tmp_path):
    out = run_scenario("held_value_lock", tmp_path)
    assert out["code"] == 0, "the child hung on prometheus_client's multiprocess value lock"
    assert out["child_requests"] == 1


def test_nothing_is_imported_on_the_background_threads(tmp_path):
    """A module being imported on a background thread when another thread forks stays
    locked in the child, which then waits for it forever: everything the pricer and the
    sink import happens at construction (genai-prices' price data was imported lazily, at
    the first priced call)."""
    pytest.importorskip("genai_prices")
    out = run_scenario("imports", tmp_path)
    assert out["flushed"]
    assert out["imported_after_construction"] == []


# --------------------------------------------------------------------------- under load
def test_forks_from_a_worker_thread_under_load(tmp_path):
    pytest.importorskip("genai_prices")
    started = time.monotonic()
    out = run_scenario("load", tmp_path, FORKS)
    children = out["children"]
    assert len(children) == FORKS
    hung = [c for c in children if c["code"] != 0]
    assert not hung, f"{len(hung)} of {FORKS} children hung or failed: {hung[:5]}"
    for c in children:
        expected = [f"c{c['n']}-{j}" for j in range(PER_CHILD)]
        assert sorted(c["delivered"]) == expected, c
        assert c["prometheus_requests"] == PER_CHILD, c
    assert out["parent_has_child_records"] == []
    assert out["parent_delivered"] > 0
    assert time.monotonic() - started < 30


# --------------------------------------------------------------------------- scenarios
def _prometheus_requests(pid):
    """``llm_requests_total`` summed over the multiprocess file of process ``pid``."""
    from prometheus_client.mmap_dict import MmapedDict

    path = os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], f"counter_{pid}.db")
    if not os.path.exists(path):
        return 0
    return sum(
        value
        for key, value, _, _ in MmapedDict.read_all_values_from_file(path)
        if json.loads(key)[1] == "llm_requests_total"
    )


def scenario_held_value_lock(work_dir):
    from prometheus_client import values

    from steer_llm_sdk.observability.sinks import PrometheusMetricsSink, _prometheus_mp

    sink = PrometheusMetricsSink()
    sink.record(req("parent"))
    lock = _prometheus_mp._cell(values.ValueClass, "lock").cell_contents
    code = fork_while_held(lock, lambda: sink.record(req("child")) or True)
    children = [
        int(name.split("_")[1].split(".")[0])
        for name in os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        if name.startswith("counter_") and name != f"counter_{os.getpid()}.db"
    ]
    counts = [_prometheus_requests(pid) for pid in children]
    return {"code": code, "child_requests": counts[0] if counts else 0}


def scenario_imports(work_dir):
    from steer_llm_sdk.observability import MetricsCollector, MetricsConfig
    from steer_llm_sdk.observability.sinks import PrometheusMetricsSink

    config = MetricsConfig(enable_cost_tracking=True, flush_on_exit=False)
    collector = MetricsCollector(config, [PrometheusMetricsSink()])
    before = set(sys.modules)
    failed = req("failed", model="claude-sonnet-4-5")
    failed.success, failed.error_class = False, "RateLimitError"
    for m in (req("a"), req("b", model="gemini-2.5-pro"), req("c", model="no-such"), failed):
        collector.record(m)
    flushed = collector.flush(5)
    collector.shutdown(5)
    return {"flushed": flushed, "imported_after_construction": sorted(set(sys.modules) - before)}


def scenario_load(work_dir, forks):
    """Three threads record without pause; a fourth forks ``forks`` children, each of which
    records :data:`PER_CHILD` records and flushes within a bound."""
    from steer_llm_sdk.observability import MetricsCollector, MetricsConfig
    from steer_llm_sdk.observability.sinks import PrometheusMetricsSink

    path = os.path.join(work_dir, "records.txt")
    config = MetricsConfig(
        batch_size=8, batch_timeout_seconds=0.002, enable_cost_tracking=True, flush_on_exit=False
    )
    collector = MetricsCollector(config, [LinesSink(path), PrometheusMetricsSink()])
    assert collector._pipeline is not None
    stop = threading.Event()

    def load(n):
        i = 0
        while not stop.is_set():
            collector.record(req(f"p{n}-{i}", model=("gpt-4o", "gpt-4o-mini", "o3")[i % 3]))
            i += 1
            if i % 200 == 0:
                stop.wait(0.001)  # let the queue drain now and then: records, not drops

    def child(n):
        def body():
            for j in range(PER_CHILD):
                collector.record(req(f"c{n}-{j}"))
            return collector.flush(2.0)

        child_exit(body, 3.0)

    pids = []

    def forker():
        for n in range(int(forks)):
            stop.wait(0.01)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                child(n)
            pids.append((n, pid))

    loaders = [threading.Thread(target=load, args=(n,)) for n in range(3)]
    for thread in loaders:
        thread.start()
    forking = threading.Thread(target=forker)
    forking.start()
    forking.join()
    codes = {pid: exit_code(pid, 10) for _, pid in pids}
    stop.set()
    for thread in loaders:
        thread.join()
    collector.flush(10)
    collector.shutdown(5)

    by_pid = {}
    for pid, request_id in written_lines(path):
        by_pid.setdefault(int(pid), []).append(request_id)
    mine = by_pid.get(os.getpid(), [])
    return {
        "children": [
            {
                "n": n,
                "pid": pid,
                "code": codes[pid],
                "delivered": by_pid.get(pid, []),
                "prometheus_requests": _prometheus_requests(pid),
            }
            for n, pid in pids
        ],
        "parent_delivered": len(mine),
        "parent_has_child_records": [r for r in mine if r.startswith("c")][:5],
    }


if __name__ == "__main__":
    name, work_dir, *rest = sys.argv[1:]
    result = globals()[f"scenario_{name}"](work_dir, *rest)
    print(json.dumps(result))
