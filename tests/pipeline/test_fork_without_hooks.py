"""Forks made from C, without Python's at-fork hooks (what uWSGI does without
``py-call-uwsgi-fork-hooks``): libc's ``fork()`` called through ``ctypes.PyDLL`` (which keeps
the GIL across the call, as a server's C code forking from the Python thread does).

The child notices the fork at its first record and resets everything Python's hook would
have (the pipeline, every sink, the id prefix): its own records all arrive, exactly once,
the in-memory sink starts empty, and a one-time warning names the setting. What the parent
had queued at the fork is delivered by the parent and counted as ``fork`` in the child."""

import json
import os
import sys
import textwrap

import pytest
from support import spawn

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="libc fork through ctypes")

SCRIPT = textwrap.dedent("""
    import ctypes, json, logging, os, sys, time
    from steer_llm_sdk.observability import MetricsCollector, MetricsConfig, lifecycle
    from steer_llm_sdk.observability.sinks import InMemoryMetricsSink

    out_path, case = sys.argv[1], sys.argv[2]
    warnings = []

    class Keep(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())

    logging.getLogger("steer_llm_sdk").addHandler(Keep())

    class FileSink:  # one line per record: the delivering pid and the record id
        def __init__(self):
            self.out = open(out_path, "a", buffering=1)
        def record(self, m):
            self.out.write("%d %s\\n" % (os.getpid(), m.request_id))
        def flush(self):
            pass

    memory = InMemoryMetricsSink()
    collector = MetricsCollector(
        MetricsConfig(batch_size=100, batch_timeout_seconds=3600, shutdown_timeout_seconds=5,
                      enable_cost_tracking=False),
        [FileSink(), memory])

    def call():
        with collector.track_request("openai", "gpt-4o") as m:
            pass
        return m.request_id

    parent_ids = [call() for _ in range(5)]
    assert collector.flush(5)
    if case == "pending":  # a call the parent made just before forking, still queued
        parent_ids += [call() for _ in range(3)]

    pid = ctypes.PyDLL(None).fork()
    if pid == 0:
        try:
            own = [call() for _ in range(20)]
            flushed = collector.flush(5)
            stats = collector.stats()
            report = {
                "own": own, "flushed": flushed, "dropped": stats.dropped,
                "memory": [m.request_id for m in memory.get_metrics()],
                "warnings": warnings,
                "reset_by": lifecycle.fork_state()["reset_by"],
            }
            with open(out_path + ".child", "w") as f:
                json.dump(report, f)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert collector.flush(5)
    print(json.dumps({"parent": parent_ids, "child_pid": pid}))
""")


def _run(case: str, tmp_path) -> tuple:
    out = tmp_path / "delivered.txt"
    proc = spawn.run(
        [sys.executable, "-c", SCRIPT, str(out), case],
        capture_output=True,
        text=True,
        timeout=45,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    parent = json.loads(proc.stdout.strip().splitlines()[-1])
    child = json.loads((tmp_path / "delivered.txt.child").read_text())
    lines = [line.split() for line in out.read_text().splitlines()]
    by_child = [rid for pid, rid in lines if int(pid) == parent["child_pid"]]
    by_parent = [rid for pid, rid in lines if int(pid) != parent["child_pid"]]
    return parent, child, by_child, by_parent


@pytest.mark.timeout(60)
def test_a_child_forked_without_hooks_delivers_its_own_records_exactly(tmp_path):
    parent, child, by_child, by_parent = _run("idle", tmp_path)
    assert child["flushed"] is True
    assert sorted(by_child) == sorted(child["own"])  # all its own, its first one included
    assert sorted(by_parent) == sorted(parent["parent"])  # the parent's, once
    assert sorted(child["memory"]) == sorted(child["own"])  # the sink was reset
    assert not set(child["own"]) & set(parent["parent"])  # a fresh id prefix
    assert child["dropped"]["fork"] == 0
    assert child["reset_by"] == "pid-check"
    assert any("py-call-uwsgi-fork-hooks" in w for w in child["warnings"])


@pytest.mark.timeout(60)
def test_records_pending_at_a_fork_without_hooks_are_accounted_for(tmp_path):
    # The known limit of noticing a fork without any hook: with records queued at the fork,
    # the child's first record is not the first of a batch, so the pid is checked only when
    # the batch fills or at a flush, and the child's own records up to then cannot be told
    # from the parent's: all are counted as dropped["fork"], none delivered twice. uWSGI
    # workers do not get here (its post-fork hook resets them; see test_uwsgi).
    parent, child, by_child, by_parent = _run("pending", tmp_path)
    assert sorted(by_parent) == sorted(parent["parent"])  # the parent's, once
    assert by_child == []
    assert child["dropped"]["fork"] == 3 + len(child["own"])
    assert any("py-call-uwsgi-fork-hooks" in w for w in child["warnings"])
