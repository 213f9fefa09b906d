"""Issue 20, item 6: ``PROMETHEUS_MULTIPROC_DIR`` on a real, tiny filesystem.

prometheus_client grows its multiprocess files sparsely and writes through ``mmap``: on a
full filesystem the write faults with SIGBUS and kills the process. The sink reserves the
blocks before a file grows (``_prometheus_mp``), counts what it could not write, and keeps
serving; the pipeline's health counters it could not write are written once space is back.
A missing or read-only directory is a ``ValueError`` at construction; a sink made
under a pre-fork server without the directory logs one warning.

The tiny filesystem is a tmpfs mounted for the test, which needs root with CAP_SYS_ADMIN
(CI runs ``.ci/run`` as root on a VM, where it is allowed); a loop-mounted image needs the
same privilege, so without it these tests are skipped, saying why. The process that fills
the filesystem is a fresh interpreter (this file run as a script, through
``tests/support/spawn.py``): multiprocess mode is chosen when prometheus_client is
imported.
"""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from functools import partial
from typing import Any

import pytest
from support import spawn
from support.paths import ROOT, TESTS
from support.records import request_record

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="mounts a Linux tmpfs")

MOUNT_SKIP = (
    "mounting a tiny tmpfs needs root with CAP_SYS_ADMIN (CI runs .ci/run as root on a VM, "
    "where it is allowed; a loop-mounted image needs the same privilege)"
)


@pytest.fixture
def tiny_fs(tmp_path):
    """``mount(size, read_only=False)``: a fresh tmpfs of ``size`` under ``tmp_path``,
    unmounted after the test."""
    mounted = []

    def mount(size="256k", read_only=False):
        target = tmp_path / f"fs{len(mounted)}"
        target.mkdir()
        options = f"size={size},mode=0777" + (",ro" if read_only else "")
        done = spawn.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"{MOUNT_SKIP}: {done.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        spawn.run(["umount", "-l", str(target)], capture_output=True)


@pytest.fixture
def multiprocess_mode(monkeypatch):
    """prometheus_client's multiprocess value class in this process, as if
    ``PROMETHEUS_MULTIPROC_DIR`` had been set before it was imported; ``set(path)`` sets
    the variable."""
    from prometheus_client import values

    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    return lambda path: monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))


def _run_script(part: str, directory: Any) -> "subprocess.CompletedProcess[str]":
    """This file run as a script doing ``part`` with ``directory`` as the multiprocess
    directory (it imports ``support``, in the tests folder)."""
    path = os.pathsep.join([str(ROOT), str(TESTS)])
    return spawn.run(
        [sys.executable, __file__, part, str(directory)],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": path},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )


# --------------------------------------------------------------------------- a full disk
def test_a_full_directory_is_counted_and_the_process_keeps_serving(tiny_fs):
    directory = tiny_fs("256k")
    done = _run_script("fill", directory)
    if done.returncode == -signal.SIGBUS:
        pytest.fail("the process died of SIGBUS writing to a full PROMETHEUS_MULTIPROC_DIR")
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["write_failures"] > 0, out  # the filesystem did fill up, and it was counted
    # Served while full: every record before the disk filled, none more than were made.
    assert out["written_before_full"] <= out["scraped_while_full"] <= out["recorded"], out
    # Once space is back, new values are written again (and served).
    assert out["scraped_after_space_freed"] == 1, out
    assert out["failures_after_space_freed"] == out["write_failures"], out


def test_pipeline_losses_not_written_while_full_are_written_once_space_is_back(tiny_fs):
    directory = tiny_fs("256k")
    done = _run_script("health", directory)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["full"], out  # the files could not grow: the new series were not written
    assert out["while_full"] == {}, out
    # Written late, not lost: the exposition holds what the collector counted.
    assert out["after"] == out["expected"] == {"dropped": 1.0, "failures": 1.0}, out


def test_every_block_is_reserved_before_a_file_grows(tmp_path, monkeypatch, multiprocess_mode):
    """Through prometheus_client's own value class: every multiprocess file it wrote, grown
    past its first 64 KiB twice, has a block behind every byte (a sparse one would fault
    on a full filesystem). Fails if a prometheus_client release grows the file elsewhere."""
    from prometheus_client import values

    from steer_llm_sdk.observability.sinks import _prometheus_mp

    multiprocess_mode(tmp_path)
    monkeypatch.setattr(values, "MmapedDict", values.MmapedDict)  # restored after the test
    _prometheus_mp.install()
    value_class = values.ValueClass
    for i in range(3000):  # ~72 bytes a value: ~216 KB, the file grows 64K -> 256K
        value_class("counter", "m", "m_total", ("k",), (f"value-{i:05d}",), "help").inc(1)
    files = list(tmp_path.glob("*.db"))
    assert files
    for path in files:
        stat = path.stat()
        assert stat.st_size >= 4 * 65536
        assert stat.st_blocks * 512 >= stat.st_size, f"{path.name} is sparse"
    for mmaped in _prometheus_mp._cell(value_class, "files").cell_contents.values():
        mmaped.close()


# --------------------------------------------------------------------------- construction
def test_a_missing_directory_is_a_value_error(tmp_path, multiprocess_mode):
    from steer_llm_sdk.observability.sinks import PrometheusMetricsSink

    missing = tmp_path / "not-there"
    multiprocess_mode(missing)
    with pytest.raises(ValueError, match=re.escape(repr(str(missing)))):
        PrometheusMetricsSink()


def test_a_read_only_directory_is_a_value_error(tiny_fs, multiprocess_mode):
    from steer_llm_sdk.observability.sinks import PrometheusMetricsSink

    directory = tiny_fs("64k", read_only=True)
    multiprocess_mode(directory)
    with pytest.raises(ValueError, match=re.escape(repr(str(directory))) + ".*not writable"):
        PrometheusMetricsSink()


@pytest.mark.parametrize(
    "environ, server",
    [
        ({"SERVER_SOFTWARE": "gunicorn/23.0.0"}, "gunicorn"),
        ({"UWSGI_ORIGINAL_PROC_NAME": "uwsgi", "UWSGI_RELOADS": "0"}, "uWSGI"),
        ({}, None),
    ],
)
def test_one_warning_under_a_pre_fork_server_without_the_directory(
    monkeypatch, caplog, environ, server
):
    from prometheus_client import CollectorRegistry

    from steer_llm_sdk.observability.sinks import PrometheusMetricsSink, prometheus

    for name in ("PROMETHEUS_MULTIPROC_DIR", "SERVER_SOFTWARE", "UWSGI_ORIGINAL_PROC_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("UWSGI_RELOADS", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(prometheus, "_warned_single_process", False)
    monkeypatch.delitem(sys.modules, "uwsgi", raising=False)
    with caplog.at_level(logging.WARNING, logger="steer_llm_sdk"):
        PrometheusMetricsSink(registry=CollectorRegistry())
        PrometheusMetricsSink(registry=CollectorRegistry())
    warned = [r for r in caplog.records if "PROMETHEUS_MULTIPROC_DIR" in r.getMessage()]
    if server is None:
        assert warned == []
    else:
        assert len(warned) == 1
        assert server in warned[0].getMessage()


# --------------------------------------------------------------------------- the filler
def _scrape(port, model):
    """``llm_requests_total`` for ``model`` (all models: None) as served over HTTP."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "llm_requests_total"
        and (model is None or sample.labels.get("gen_ai_request_model") == model)
    )


#: ``_request(model)``: a call of 300 ms, 100 tokens in, 20 out.
_request = partial(request_record, "r", duration_ms=300.0, usage=(100, 20))


def _fill(directory):
    """Fill the filesystem of ``directory`` with one file; returns its path (removing it
    frees the space)."""
    filler = os.path.join(directory, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass  # full
    finally:
        os.close(fd)
    return filler


def scenario_fill(directory):
    """Record, fill the filesystem, record new label sets until the files cannot grow,
    scrape, free the space, record again, scrape."""
    from steer_llm_sdk.observability.sinks import PrometheusMetricsSink

    sink = PrometheusMetricsSink()
    server, _ = sink.start_http_server(0)
    port = server.server_port
    written = 0
    for i in range(3):
        sink.record(_request(f"model-{i}"))
        written += 1
    filler = _fill(directory)
    recorded = written
    while sink.write_failures == 0 and recorded < 500:
        sink.record(_request(f"model-{recorded}"))
        recorded += 1
    scraped_while_full = _scrape(port, None)
    failures = sink.write_failures
    os.unlink(filler)
    sink.record(_request("after"))
    result = {
        "recorded": recorded,
        "written_before_full": written,
        "write_failures": failures,
        "scraped_while_full": scraped_while_full,
        "scraped_after_space_freed": _scrape(port, "after"),
        "failures_after_space_freed": sink.write_failures,
    }
    server.shutdown()
    return result


def scenario_health(directory):
    """Fill the filesystem until the files cannot grow, then lose a record at a sink added
    since (new health series), free the space and flush again."""
    from prometheus_client.parser import text_string_to_metric_families

    from steer_llm_sdk.observability import MetricsCollector, MetricsConfig, ReliabilityMetrics
    from steer_llm_sdk.observability.sinks import PrometheusMetricsSink
    from steer_llm_sdk.observability.sinks.prometheus import exposition

    class Refusing:
        # A long name: its series need more room than the filler's left over.
        name = "refusing-" + "x" * 300

        def record(self, metrics):
            raise ConnectionError("refused")

        def flush(self):
            pass

    def refusing_series():
        found = {}
        for family in text_string_to_metric_families(exposition()[0].decode()):
            for sample in family.samples:
                if sample.labels.get("sink") == Refusing.name and (
                    sample.labels.get("reason") == "sink_error"
                    or sample.name == "llm_sink_export_failures_total"
                ):
                    kind = "failures" if "export" in sample.name else "dropped"
                    found[kind] = sample.value
        return found

    sink = PrometheusMetricsSink()
    collector = MetricsCollector(MetricsConfig(flush_on_exit=False), [sink])
    collector.record(_request("first"))
    assert collector.flush(10)
    filler = _fill(directory)
    # New label sets of a counter alone (retries; no breaker state, so no gauge), until the
    # counters' file cannot grow.
    for i in range(5000):
        retried = ReliabilityMetrics(time.time(), "r", "openai", f"model-{i}", retry_attempts=1)
        retried.circuit_breaker_state = ""
        sink.record(retried)
        if sink.write_failures:
            break
    collector.add_sink(Refusing())
    collector.record(_request("first"))
    collector.flush(10)
    assert collector.flush(10)
    while_full = refusing_series()
    os.unlink(filler)
    assert collector.flush(10)
    stats = collector.stats().sinks[Refusing.name]
    result = {
        "full": sink.write_failures > 0,
        "while_full": while_full,
        "after": refusing_series(),
        "expected": {"dropped": float(stats.failed), "failures": float(stats.errors)},
    }
    collector.shutdown(5)
    return result


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    print(json.dumps(globals()[f"scenario_{name}"](*args)))
