"""Real interpreter exits: pending records are delivered by the exit handler, including after a
burst from 8 threads and when no thread may be started (Python 3.12+)."""

import os
import textwrap

import pytest
from support import spawn

#: This interpreter, and the installed ones on which no thread may be started at exit.
INTERPRETERS = spawn.interpreters(oldest=12)


PRELUDE = textwrap.dedent("""
    import os, sys, threading, time
    from steer_llm_sdk.observability import MetricsCollector, MetricsConfig, RequestMetrics

    class FileSink:
        def __init__(self, path):
            self.out = open(path, "a")
        def record(self, m):
            self.out.write(m.request_id + "\\n")
        def flush(self):
            self.out.flush()
        def close(self):
            self.out.close()

    collector = MetricsCollector(
        MetricsConfig(batch_size=10_000, batch_timeout_seconds=3600, max_queue_size=50_000,
                      shutdown_timeout_seconds=10),
        [FileSink(sys.argv[1])])
    def req(i):
        return RequestMetrics(time.time(), "r%d" % i, "openai", "gpt")
""")


def run(script, python, tmp_path):
    out = tmp_path / "records.txt"
    env = dict(os.environ, PYTHONPATH=spawn.core_pythonpath())
    proc = spawn.run(
        [python, "-c", PRELUDE + textwrap.dedent(script), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return out.read_text().split() if out.exists() else [], proc


@pytest.mark.parametrize("python", INTERPRETERS)
def test_normal_exit_without_flush_delivers(python, tmp_path):
    got, _ = run(
        """
        for i in range(250):
            collector.record(req(i))
        # no flush, no shutdown: the exit handler must deliver
    """,
        python,
        tmp_path,
    )
    assert got == [f"r{i}" for i in range(250)]


@pytest.mark.parametrize("cycle", [False, True], ids=["freed", "in-a-cycle"])
@pytest.mark.parametrize("python", INTERPRETERS)
def test_collector_dropped_without_shutdown_delivers_everything_at_exit(python, cycle, tmp_path):
    # Freed: the collector is gone when make() returns, and its pipeline is still delivering
    # at exit, with no collector left to say how long to wait for it. In a cycle: it lives
    # until a garbage collection that never comes. A slow sink keeps delivery running past
    # the end of the script, so the exit drain has to wait for it.
    got, _ = run(
        f"""
        class SlowSink(FileSink):
            def record(self, m):
                time.sleep(0.004)
                super().record(m)

        def make():
            mine = MetricsCollector(MetricsConfig(shutdown_timeout_seconds=10),
                                    [SlowSink(sys.argv[1])])
            if {cycle}:
                mine.me = mine
            for i in range(50):
                with mine.track_request("openai", "gpt-4o"):
                    pass

        collector.shutdown()
        del collector  # the only collector of the process is the dropped one
        make()
    """,
        python,
        tmp_path,
    )
    assert len(got) == len(set(got)) == 50


@pytest.mark.parametrize("python", INTERPRETERS)
def test_exit_right_after_burst_from_eight_threads(python, tmp_path):
    got, _ = run(
        """
        def burst(base):
            for i in range(500):
                collector.record(req(base + i))
        threads = [threading.Thread(target=burst, args=(n * 1000,)) for n in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
    """,
        python,
        tmp_path,
    )
    assert sorted(got) == sorted(f"r{n * 1000 + i}" for n in range(8) for i in range(500))


@pytest.mark.parametrize("python", INTERPRETERS)
def test_records_made_inside_atexit_are_delivered(python, tmp_path):
    # atexit runs handlers last-registered first, so this one runs before the SDK's own.
    got, _ = run(
        """
        import atexit
        def late():
            for i in range(10):
                collector.record(req(i))
        atexit.register(late)
    """,
        python,
        tmp_path,
    )
    assert got == [f"r{i}" for i in range(10)]


@pytest.mark.parametrize("python", INTERPRETERS)
def test_exit_when_no_thread_can_start_drains_on_the_exiting_thread(python, tmp_path):
    # Late in interpreter shutdown Python 3.12+ refuses new threads with this RuntimeError.
    # The script makes thread starts fail that way from the first record on, so the
    # background threads never run and the exit handler must deliver on its own thread.
    got, proc = run(
        """
        def refuse(self):
            raise RuntimeError("can't create new thread at interpreter shutdown")
        threading.Thread.start = refuse
        for i in range(300):
            collector.record(req(i))
        stats = collector.stats()
        print("running=%s queued=%d" % (collector._pipeline.running, stats.queued))
    """,
        python,
        tmp_path,
    )
    assert "running=False queued=300" in proc.stdout
    assert got == [f"r{i}" for i in range(300)]


@pytest.mark.parametrize("python", INTERPRETERS[:1])
def test_flush_on_exit_can_be_disabled(python, tmp_path):
    got, _ = run(
        """
        collector2 = MetricsCollector(MetricsConfig(flush_on_exit=False,
                                      batch_timeout_seconds=3600), [FileSink(sys.argv[1])])
        collector2.record(req(7))
    """,
        python,
        tmp_path,
    )
    assert got == []


@pytest.mark.parametrize("python", INTERPRETERS[:1])
def test_os_exit_skips_the_handler_as_documented(python, tmp_path):
    got, _ = run(
        """
        collector.record(req(1))
        os._exit(0)
    """,
        python,
        tmp_path,
    )
    assert got == []


#: A collector ``streams`` writing "model:status:chunks" per stream, and a tracked generator
#: ``half`` of five items.
STREAMS = """
        class StreamSink(FileSink):
            def record(self, m):
                if m.metric_type == "streaming":
                    self.out.write("%s:%s:%d\\n" % (m.model, m.status, m.total_chunks))

        streams = MetricsCollector(MetricsConfig(), [StreamSink(sys.argv[1])])

        @streams.track_request("openai", model="half")
        def half():
            yield from "abcde"
"""


@pytest.mark.parametrize("python", INTERPRETERS)
def test_streams_still_open_at_exit_are_recorded_as_cancelled(python, tmp_path):
    # One stream half read, one never started, both still referenced when the process ends:
    # the exit drain ends them (the half-read one with what it measured) before delivering.
    got, _ = run(
        STREAMS
        + """

        @streams.track_request("openai", model="unstarted")
        def unstarted():
            yield from "abc"

        kept = half()
        next(kept), next(kept)
        never = unstarted()
    """,
        python,
        tmp_path,
    )
    assert sorted(got) == ["half:cancelled:2", "unstarted:cancelled:0"]


@pytest.mark.parametrize("python", INTERPRETERS[:1])
def test_streams_still_open_at_a_workers_exit_hook_are_recorded(python, tmp_path):
    # gunicorn's worker_exit calls shutdown_all() before the interpreter's exit: streams
    # still open then are ended and delivered by it, not refused as after_shutdown later.
    got, _ = run(
        STREAMS
        + """
        from steer_llm_sdk.observability import shutdown_all

        kept = half()
        next(kept)
        assert shutdown_all()
        assert streams.stats().dropped.get("after_shutdown", 0) == 0, streams.stats()
    """,
        python,
        tmp_path,
    )
    assert got == ["half:cancelled:1"]
