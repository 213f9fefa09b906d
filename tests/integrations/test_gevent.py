"""Under ``gevent.monkey.patch_all()`` the flush and delivery threads are real OS threads:
a sink blocking in C holds up only its own thread (the application's greenlets keep
running and every record arrives once it returns), deadlines hold, waits on the caller's
side let other greenlets run, and a sink doing cooperative I/O (the OTLP exporter on
patched sockets) still delivers. Each runs in a fresh, monkey-patched interpreter."""

import json
import os
import sys
import textwrap
from typing import Any, Dict

import pytest
from support import spawn

from steer_llm_sdk.testing import OTLPReceiver

pytest.importorskip("gevent")

PRELUDE = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()

    import json, os, sys, time
    import gevent
    from steer_llm_sdk.observability import MetricsCollector, MetricsConfig

    native_ident = monkey.get_original("_thread", "get_ident")
    ticks = []

    def ticker():  # an application greenlet: it runs only if nothing freezes the hub
        while True:
            ticks.append(time.monotonic())
            gevent.sleep(0.005)

    gevent.spawn(ticker)

    def until(predicate, timeout=10.0):  # a cooperative bounded wait
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            gevent.sleep(0.005)

    def calls(collector, greenlets, each):
        def work():
            for _ in range(each):
                with collector.track_request("openai", "gpt-4o"):
                    gevent.sleep(0)
        gevent.joinall([gevent.spawn(work) for _ in range(greenlets)])

    def ticks_during(seconds):
        before = len(ticks)
        end = time.monotonic() + seconds
        until(lambda: time.monotonic() >= end)
        return len(ticks) - before
""")


def run(script: str, **env: str) -> Dict[str, Any]:
    """Run PRELUDE + ``script`` in a new interpreter; return the JSON it prints last."""
    proc = spawn.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(90)
def test_a_sink_blocked_in_c_freezes_nothing_and_everything_is_delivered():
    got = run("""
        release_r, release_w = os.pipe()

        class BlockedSink:
            def __init__(self):
                self.delivered = 0
                self.entered = False
                self.threads = set()
            def record_batch(self, batch):
                self.threads.add(native_ident())
                if not self.entered:
                    self.entered = True
                    os.read(release_r, 1)  # C code gevent does not patch: blocks this thread
                self.delivered += len(batch)
            def record(self, m):
                self.record_batch([m])
            def flush(self):
                pass

        sink = BlockedSink()
        collector = MetricsCollector(
            MetricsConfig(batch_size=50, batch_timeout_seconds=0.01, flush_on_exit=False),
            [sink])
        calls(collector, greenlets=7, each=150)  # 1,050 calls
        until(lambda: sink.entered)
        ticked = ticks_during(0.3)  # the sink is blocked in C meanwhile
        os.write(release_w, b"x")
        flushed = collector.flush(10)
        print(json.dumps({
            "ticked": ticked, "flushed": flushed, "delivered": sink.delivered,
            "sink_on_main_thread": native_ident() in sink.threads,
        }))
    """)
    assert got["ticked"] >= 10, got  # the application kept running while the sink blocked
    assert got["flushed"] is True
    assert got["delivered"] == 1050
    assert got["sink_on_main_thread"] is False


@pytest.mark.timeout(90)
def test_deadlines_hold_and_waiting_for_them_lets_greenlets_run():
    got = run("""
        never_r, _never_w = os.pipe()

        class StuckSink:
            def record(self, m):
                os.read(never_r, 1)  # never returns
            def flush(self):
                pass

        collector = MetricsCollector(
            MetricsConfig(batch_size=10, batch_timeout_seconds=0.01, flush_on_exit=False),
            [StuckSink()])
        calls(collector, greenlets=2, each=20)
        before = len(ticks)
        started = time.monotonic()
        flushed = collector.flush(0.5)
        stopped = collector.shutdown(0.5)
        took = time.monotonic() - started
        print(json.dumps({"flushed": flushed, "stopped": stopped, "took": took,
                          "ticked": len(ticks) - before}))
    """)
    assert got["flushed"] is False and got["stopped"] is False
    assert got["took"] < 3.0, got
    assert got["ticked"] >= 10, got  # the waits yielded to the application's greenlets


@pytest.mark.timeout(90)
def test_a_cooperative_sink_delivers_from_its_real_thread():
    with OTLPReceiver() as receiver:
        got = run(
            """
            from steer_llm_sdk.observability.sinks import OTelMetricsSink

            sink = OTelMetricsSink(endpoint=os.environ["ENDPOINT"], export_interval_seconds=60)
            collector = MetricsCollector(
                MetricsConfig(batch_size=20, batch_timeout_seconds=0.01, flush_on_exit=False),
                [sink])
            calls(collector, greenlets=4, each=25)
            flushed = collector.flush(10)
            stopped = collector.shutdown(10)
            print(json.dumps({"flushed": flushed, "stopped": stopped}))
            """,
            ENDPOINT=receiver.endpoint,
        )
        assert got["flushed"] is True and got["stopped"] is True, got
        assert receiver.wait_for(lambda r: r.total("llm.requests") == 100, 10)
