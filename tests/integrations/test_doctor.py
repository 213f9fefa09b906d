"""Issue 24, item 4: ``doctor()`` and ``python -m steer_llm_sdk doctor``.

Real parts only: collectors with real sinks (in-memory, one that raises, one that hangs),
a real OTLP receiver and a closed port, PROMETHEUS_MULTIPROC_DIR in a fresh interpreter
that imports gunicorn (a real tmpfs remounted read-only for the read-only case), a libc
fork without hooks, the OpenAI SDK streaming from the local LLM server, the command as a
real subprocess, and the Flask and Django endpoints through their test clients.
"""

import importlib.metadata
import json
import os
import signal
import sys
import textwrap
import threading
import time
import uuid
from typing import Any, Dict, List

import pytest
from support import spawn
from support.corpus import SDK_WARNINGS
from support.network import free_port
from support.sdk_clients import closing
from support.sinks import HangingSink, RecordingSink
from support.waiting import wait_until

from steer_llm_sdk.observability import (
    DoctorReport,
    MetricsCollector,
    RequestMetrics,
    doctor,
    instrument,
    uninstrument,
)
from steer_llm_sdk.observability.sinks import InMemoryMetricsSink
from steer_llm_sdk.testing import LocalLLMServer, OTLPReceiver

CHECKS = [
    "collector",
    "sinks",
    "sampling",
    "round_trip",
    "sink",
    "dropped",
    "internal_errors",
    "fork",
    "instrumentation",
    "stream_usage",
]


def request(**fields: Any) -> RequestMetrics:
    fields.setdefault("provider", "openai")
    fields.setdefault("model", "gpt-4o")
    return RequestMetrics(time.time(), **fields)


def one(report: DoctorReport, check: str, subject: Any = None) -> Any:
    (found,) = [f for f in report.findings if f.check == check and f.subject == subject]
    return found


def statuses(report: DoctorReport) -> Dict[str, str]:
    return {f"{f.check}:{f.subject}" if f.subject else f.check: f.status for f in report.findings}


class BrokenSink:
    """Raises on every call, quoting a credential (which must never be shown)."""

    name = "broken"

    def record(self, metrics: Any) -> None:
        raise RuntimeError("backend refused api_key=sk-doctor0123456789abcdef")

    def flush(self) -> None:
        raise RuntimeError("flush refused")


# --------------------------------------------------------------------------- collector
@pytest.mark.timeout(20)
def test_a_healthy_collector_is_ok_and_delivers_in_the_round_trip(make_collector):
    memory, recording = InMemoryMetricsSink(), RecordingSink()
    collector = make_collector([memory, recording], batch_timeout_seconds=30)
    collector.record(request())  # waits for its batch: only the round trip delivers it
    report = doctor(collector, timeout=5)
    assert report.status == "ok" and report.ok and report.exit_code == 0, report.to_text()
    assert [f.check for f in report.findings if f.check != "sink"] == [
        c for c in CHECKS if c != "sink"
    ]
    assert one(report, "sinks").details["names"] == ["in_memory", "recording"]
    assert len(recording.records) == 1  # the round trip delivered what was queued
    assert recording.flushes == 1  # and flushed the sink
    assert one(report, "sink", "recording").details["delivered"] == 1
    assert one(report, "round_trip").details["flushed"] is True
    # No record made up for the check: the sinks hold only the application's one.
    assert len(memory.get_metrics()) == 1
    assert json.loads(json.dumps(report.to_dict()))["status"] == "ok"


@pytest.mark.timeout(20)
def test_the_default_collector_is_checked_when_none_is_given():
    from steer_llm_sdk.observability import get_collector

    report = doctor(timeout=5)
    names = one(report, "sinks").details["names"]
    assert len(names) == len(get_collector().sinks)


@pytest.mark.timeout(20)
def test_a_disabled_or_shut_down_collector_is_reported(make_collector):
    disabled = make_collector([RecordingSink()], enabled=False)
    found = one(doctor(disabled, timeout=2), "collector")
    assert found.status == "warning" and "enabled = True" in found.fix
    closed = make_collector([RecordingSink()])
    closed.shutdown(2)
    closed.record(request())
    report = doctor(closed, timeout=2)
    assert statuses(report)["collector"] == "problem"
    assert statuses(report)["round_trip"] == "problem"
    assert one(report, "dropped", "after_shutdown").details["count"] == 1


@pytest.mark.timeout(20)
def test_no_sinks_is_a_problem_and_sampling_rates_are_shown(make_collector):
    collector = make_collector([], request_sampling_rate=0.0, error_sampling_rate=0.5)
    report = doctor(collector, timeout=2)
    assert one(report, "sinks").status == "problem"
    sampling = one(report, "sampling")
    assert sampling.status == "warning" and "request_rate=0" in sampling.message
    assert sampling.details == {"request_rate": 0.0, "streaming_rate": 1.0, "error_rate": 0.5}
    collector.set_sampling(request_rate=1.0)  # what is in force, not the config
    assert one(doctor(collector, timeout=2), "sampling").status == "ok"


# --------------------------------------------------------------------------- sinks
@pytest.mark.timeout(20)
def test_a_sink_that_raises_is_a_problem_with_its_last_error(make_collector):
    memory = InMemoryMetricsSink()
    collector = make_collector([memory, BrokenSink()])
    collector.record(request())
    assert wait_until(lambda: collector.stats().sinks["broken"].errors >= 1)
    report = doctor(collector, timeout=5)
    assert report.status == "problem" and report.exit_code == 1
    trip = one(report, "round_trip")
    assert trip.status == "problem" and trip.details["raised"] == ["broken"]
    broken = one(report, "sink", "broken")
    assert broken.status == "problem" and "failing now" in broken.message
    assert broken.details["failed"] == 1 and broken.details["errors"] >= 2
    assert broken.details["last_error"]["error"] == "RuntimeError"
    assert one(report, "sink", "in_memory").status == "ok"
    shown = json.dumps(report.to_dict()) + report.to_text()
    assert "backend refused" in shown and "sk-doctor0123456789abcdef" not in shown


@pytest.mark.timeout(20)
def test_a_healthy_sink_never_shows_another_sinks_error(make_collector):
    class Flaky(RecordingSink):
        def __init__(self, fail: bool) -> None:
            super().__init__("flaky")
            self.fail = fail

        def record(self, metrics: Any) -> None:
            if self.fail:
                raise RuntimeError("flaky backend")
            super().record(metrics)

    failing = make_collector([Flaky(fail=True)])
    failing.record(request())
    failing.flush(5)
    assert one(doctor(failing, timeout=2), "sink", "flaky").details["last_error"]
    healthy = make_collector([Flaky(fail=False)])
    healthy.record(request())
    found = one(doctor(healthy, timeout=2), "sink", "flaky")
    assert found.status == "ok" and "last_error" not in found.details


@pytest.mark.timeout(20)
def test_keeping_the_last_error_takes_no_lock_a_signal_could_leave_held(make_collector):
    from steer_llm_sdk.observability.doctor import _last_errors

    class Refusing(RecordingSink):
        def record(self, metrics: Any) -> None:
            raise RuntimeError("refused")

    # As if a signal had interrupted logging between the handler lock's acquire and release.
    _last_errors.acquire()
    try:
        collector = make_collector([Refusing(f"refusing-{uuid.uuid4().hex}")])
        collector.record(request())
        assert collector.flush(3)  # the delivery thread logged the failure and went on
    finally:
        _last_errors.release()


@pytest.mark.timeout(20)
def test_a_hanging_sink_fails_the_round_trip_at_the_deadline(make_collector):
    hanging = HangingSink()
    collector = make_collector([InMemoryMetricsSink(), hanging])
    collector.record(request())
    assert hanging.entered.wait(5)
    started = time.monotonic()
    report = doctor(collector, timeout=0.3)
    assert time.monotonic() - started < 3
    trip = one(report, "round_trip")
    assert trip.status == "problem" and "hanging 1" in trip.message
    stuck = one(report, "sink", "hanging")
    assert stuck.status == "problem" and stuck.details["pending"] == 1
    assert one(report, "sink", "in_memory").status == "ok"


@pytest.mark.timeout(20)
def test_a_sink_whose_attributes_raise_is_a_finding_not_an_exception(make_collector):
    class Odd(RecordingSink):
        @property
        def export_failures(self) -> int:
            raise RuntimeError("attribute broken")

    collector = make_collector([Odd("odd"), RecordingSink()])
    report = doctor(collector, timeout=2)
    odd = one(report, "sink", "odd")
    assert odd.status == "warning" and "could not be checked" in odd.message
    assert one(report, "sink", "recording").status == "ok"
    assert [f.check for f in report.findings][-1] == "stream_usage"  # every check ran


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
@pytest.mark.timeout(20)
def test_an_exception_raised_by_a_signal_handler_reaches_the_caller(make_collector):
    """A Celery soft time limit is the caller's, never turned into a finding."""

    class SoftTimeLimit(Exception):
        pass

    def handler(signum: int, frame: Any) -> None:
        raise SoftTimeLimit()

    class Interrupted(RecordingSink):
        @property
        def write_failures(self) -> int:
            signal.raise_signal(signal.SIGUSR1)  # the handler runs here, on this thread
            return 0

    collector = make_collector([Interrupted("interrupted")])
    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        with pytest.raises(SoftTimeLimit):
            doctor(collector, timeout=2)
    finally:
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.timeout(20)
def test_drops_are_reported_by_reason(make_collector):
    entered, gate = threading.Event(), threading.Event()

    def hold(metrics: Any) -> Any:  # keeps the flush thread busy while the queue fills
        entered.set()
        gate.wait(10)
        return metrics

    collector = make_collector([RecordingSink()], batch_size=1, max_queue_size=2, filters=[hold])
    collector.record(request())
    assert entered.wait(5)
    assert [collector.record(request()) for _ in range(3)] == [True, True, False]
    gate.set()
    report = doctor(collector, timeout=5)
    full = one(report, "dropped", "queue_full")
    assert full.status == "warning" and full.details["count"] == 1
    assert "max_queue_size" in full.fix
    assert report.status == "warning" and report.exit_code == 0  # warnings alone exit 0


# --------------------------------------------------------------------------- OTLP
def closed_port() -> int:
    return free_port()  # bound once and released: nothing listens there


@pytest.mark.timeout(30)
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_reachable_otlp_endpoint_is_ok_and_gets_no_data(make_collector, protocol):
    from steer_llm_sdk.observability.sinks import OTelMetricsSink

    receiver = OTLPReceiver(protocol).start()
    try:
        sink = OTelMetricsSink(
            endpoint=receiver.endpoint,
            protocol="grpc" if protocol == "grpc" else "http/protobuf",
            export_interval_seconds=3600,
        )
        collector = make_collector([sink])
        found = one(doctor(collector, timeout=5), "otlp_endpoint", "otlp")
        assert found.status == "ok" and found.details["reachable"] is True
        assert f"127.0.0.1:{receiver.port}" in found.message
        assert receiver.requests == []  # a TCP connect only: nothing was exported
    finally:
        receiver.stop()


@pytest.mark.timeout(30)
def test_an_unreachable_otlp_endpoint_is_a_problem_shown_without_secrets(make_collector):
    from steer_llm_sdk.observability.sinks import OTelMetricsSink

    port = closed_port()
    sink = OTelMetricsSink(
        endpoint=f"http://alice:pa55word-doctor@127.0.0.1:{port}/v1/metrics?token=tok-doctor",
        export_interval_seconds=3600,
        export_timeout_seconds=0.5,
    )
    collector = make_collector([sink])
    report = doctor(collector, timeout=5)
    found = one(report, "otlp_endpoint", "otlp")
    assert found.status == "problem" and found.details["reachable"] is False
    assert "Connection refused" in found.message and "OTEL_EXPORTER_OTLP_ENDPOINT" in found.fix
    assert found.details["endpoint"] == f"http://127.0.0.1:{port}/v1/metrics"
    shown = json.dumps(report.to_dict()) + report.to_text()
    assert "pa55word-doctor" not in shown and "tok-doctor" not in shown and "alice" not in shown
    assert report.exit_code == 1


# --------------------------------------------------------------------------- SDKs, streams
@pytest.fixture
def openai_client():
    openai = pytest.importorskip("openai")
    with LocalLLMServer(reply_words=5) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        with closing(client):
            yield client


@SDK_WARNINGS[0]
@pytest.mark.timeout(30)
def test_streams_without_provider_usage_and_instrumented_sdks(make_collector, openai_client):
    memory = InMemoryMetricsSink()
    collector = make_collector([memory])
    uninstrument()
    instrument("openai", collector=collector)
    try:

        def stream(**options: Any) -> None:
            chunks = openai_client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True, **options
            )
            with chunks:
                for _ in chunks:
                    pass

        stream(stream_options={"include_usage": True})
        report = doctor(collector, timeout=5)
        usage = one(report, "stream_usage")
        assert usage.status == "ok" and usage.details["streams"] == 1
        sdks = one(report, "instrumentation").details["sdks"]
        assert sdks["openai"]["instrumented"] > 0
        assert sdks["openai"]["version"] == importlib.metadata.version("openai")

        stream()  # no usage asked for: the provider sends none
        usage = one(doctor(collector, timeout=5), "stream_usage")
        assert usage.status == "warning"
        assert usage.details == {"streams": 2, "without_usage": {"openai": 1}}
        assert 'stream_options={"include_usage": True}' in usage.fix
    finally:
        uninstrument()
    sdks = one(doctor(collector, timeout=5), "instrumentation").details["sdks"]
    assert sdks["openai"]["instrumented"] == 0


# --------------------------------------------------------------------------- processes
def run_python(args: List[str], tmp_path: Any, **env: str) -> Any:
    """A fresh interpreter in ``tmp_path`` (where an app module may be written)."""
    environ = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    environ.update(env)
    environ["PYTHONPATH"] = os.pathsep.join([str(tmp_path), environ.get("PYTHONPATH", "")])
    return spawn.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, env=environ
    )


APP = textwrap.dedent("""
    import os, subprocess
    from steer_llm_sdk.observability import MetricsConfig, configure

    class BrokenSink:
        name = "broken"
        def record(self, metrics):
            raise RuntimeError("no")
        def flush(self):
            raise RuntimeError("no")

    def broken():
        configure(MetricsConfig(flush_on_exit=False), [BrokenSink()])

    def unsampled():
        configure(MetricsConfig(flush_on_exit=False, request_sampling_rate=0.0))

    def prometheus():
        if os.environ.get("PRETEND_GUNICORN"):
            import gunicorn  # noqa: F401  what a gunicorn worker has imported
        from steer_llm_sdk.observability.sinks import PrometheusMetricsSink
        configure(MetricsConfig(flush_on_exit=False), [PrometheusMetricsSink()])
        remount = os.environ.get("REMOUNT_READ_ONLY")
        if remount:  # the directory turns read-only after the sink was made
            subprocess.run(["mount", "-o", "remount,ro", remount], check=True)
        gone = os.environ.get("REMOVE_DIRECTORY")
        if gone:
            os.rmdir(gone)
""")


@pytest.fixture
def app(tmp_path):
    (tmp_path / "doctor_app.py").write_text(APP)
    return tmp_path


@pytest.mark.timeout(70)
def test_the_command_prints_text_and_exits_0_when_healthy(app):
    done = run_python(["-m", "steer_llm_sdk", "doctor"], app)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("steer_llm_sdk doctor (pid ")
    assert "round_trip" in done.stdout and "PROBLEM" not in done.stdout


@pytest.mark.timeout(70)
def test_the_command_json_is_one_object_and_the_exit_code_follows_problems(app):
    healthy = run_python(["-m", "steer_llm_sdk", "doctor", "--json"], app)
    assert healthy.returncode == 0, healthy.stderr
    body = json.loads(healthy.stdout)
    assert body["status"] == "ok" and body["pid"] > 0
    assert [f["check"] for f in body["findings"] if f["check"] != "sink"] == [
        c for c in CHECKS if c != "sink"
    ]

    broken = run_python(
        ["-m", "steer_llm_sdk", "doctor", "--json", "--import", "doctor_app:broken"], app
    )
    assert broken.returncode == 1, broken.stderr
    body = json.loads(broken.stdout)
    assert body["status"] == "problem"
    assert {f["check"] for f in body["findings"] if f["status"] == "problem"} >= {
        "round_trip",
        "sink",
    }

    warned = run_python(
        ["-m", "steer_llm_sdk", "doctor", "--json", "--import", "doctor_app:unsampled"], app
    )
    assert warned.returncode == 0, warned.stderr  # warnings alone exit 0
    assert json.loads(warned.stdout)["status"] == "warning"

    failed = run_python(["-m", "steer_llm_sdk", "doctor", "--import", "no_such_app"], app)
    assert failed.returncode == 2 and "no_such_app" in failed.stderr


@pytest.mark.timeout(70)
def test_missing_optional_dependencies_are_not_needed(app):
    code = (
        "import sys\n"
        "for name in ('opentelemetry', 'prometheus_client', 'wrapt'):\n"
        "    sys.modules[name] = None  # not installed\n"
        "from steer_llm_sdk.__main__ import main\n"
        "sys.exit(main(['doctor', '--json']))\n"
    )
    done = run_python(["-c", code], app)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "ok"


def prometheus_finding(app: Any, **env: str) -> Dict[str, Any]:
    done = run_python(
        ["-m", "steer_llm_sdk", "doctor", "--json", "--import", "doctor_app:prometheus"],
        app,
        **env,
    )
    assert done.returncode in (0, 1), done.stderr
    body = json.loads(done.stdout)
    (found,) = [f for f in body["findings"] if f["check"] == "prometheus_multiproc"]
    assert done.returncode == (1 if body["status"] == "problem" else 0)
    return dict(found)


@pytest.mark.timeout(70)
def test_prometheus_multiproc_dir_under_gunicorn(app, tmp_path):
    directory = tmp_path / "prom"
    directory.mkdir()
    unset = prometheus_finding(app, PRETEND_GUNICORN="1")
    assert unset["status"] == "problem" and "without PROMETHEUS_MULTIPROC_DIR" in unset["message"]
    assert "PROMETHEUS_MULTIPROC_DIR" in unset["fix"] and unset["details"]["server"] == "gunicorn"

    fine = prometheus_finding(app, PRETEND_GUNICORN="1", PROMETHEUS_MULTIPROC_DIR=str(directory))
    assert fine["status"] == "ok" and "writable" in fine["message"]
    assert list(directory.iterdir()) == []  # the probe file is gone

    gone = prometheus_finding(
        app,
        PRETEND_GUNICORN="1",
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        REMOVE_DIRECTORY=str(directory),
    )
    assert gone["status"] == "problem" and "not a directory" in gone["message"]

    single = prometheus_finding(app)  # one process, no gunicorn: nothing to set
    assert single["status"] == "ok" and single["details"]["server"] is None


@pytest.mark.timeout(70)
def test_a_read_only_prometheus_multiproc_dir_is_a_problem(app, tmp_path):
    directory = tmp_path / "ro"
    directory.mkdir()
    mounted = spawn.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0777", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root with CAP_SYS_ADMIN: {mounted.stderr.strip()}")
    try:
        found = prometheus_finding(
            app,
            PRETEND_GUNICORN="1",
            PROMETHEUS_MULTIPROC_DIR=str(directory),
            REMOUNT_READ_ONLY=str(directory),
        )
    finally:
        spawn.run(["umount", "-l", str(directory)], capture_output=True)
    assert found["status"] == "problem" and "not writable" in found["message"], found


FORK = textwrap.dedent("""
    import ctypes, json, os, sys
    from steer_llm_sdk.observability import MetricsCollector, MetricsConfig, doctor
    from steer_llm_sdk.observability.sinks import InMemoryMetricsSink

    how, out = sys.argv[1], sys.argv[2]
    collector = MetricsCollector(
        MetricsConfig(batch_timeout_seconds=3600, flush_on_exit=False), [InMemoryMetricsSink()])
    with collector.track_request("openai", "gpt-4o"):
        pass  # queued in the parent at the fork
    pid = ctypes.PyDLL(None).fork() if how == "libc" else os.fork()
    if pid == 0:
        try:
            with collector.track_request("openai", "gpt-4o"):
                pass
            with open(out, "w") as f:
                json.dump(doctor(collector, timeout=5).to_dict(), f)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
""")


@pytest.mark.skipif(sys.platform != "linux", reason="libc fork through ctypes")
@pytest.mark.timeout(70)
@pytest.mark.parametrize("how", ["libc", "os"])
def test_a_fork_without_hooks_is_a_warning_naming_the_uwsgi_setting(tmp_path, how):
    out = tmp_path / "child.json"
    done = run_python(["-c", FORK, how, str(out)], tmp_path)
    assert done.returncode == 0, done.stderr
    body = json.loads(out.read_text())
    (fork,) = [f for f in body["findings"] if f["check"] == "fork"]
    if how == "os":
        assert fork["status"] == "ok" and fork["details"]["reset_by"] == "python-hook"
        return
    assert fork["status"] == "warning" and fork["details"]["reset_by"] == "pid-check"
    assert "py-call-uwsgi-fork-hooks" in fork["fix"]
    (dropped,) = [f for f in body["findings"] if f["check"] == "dropped"]
    assert dropped["subject"] == "fork" and "py-call-uwsgi-fork-hooks" in dropped["fix"]


# --------------------------------------------------------------------------- web endpoints
def flask_app(collector: MetricsCollector, **config: Any) -> Any:
    flask = pytest.importorskip("flask")
    from steer_llm_sdk.observability.integrations.flask import SteerLLMMetrics

    app = flask.Flask(__name__)
    app.config.update(config)
    SteerLLMMetrics(app, collector=collector)
    return app


@pytest.mark.timeout(30)
def test_the_flask_endpoint_is_gated_like_the_dashboard(make_collector):
    collector = make_collector([InMemoryMetricsSink(), BrokenSink()])
    off = flask_app(collector).test_client()
    assert off.get("/_steer/debug/doctor").status_code == 404
    denied = flask_app(collector, STEER_LLM_METRICS_DEBUG_ENDPOINTS=True).test_client()
    assert denied.get("/_steer/debug/doctor").status_code == 403
    refuse = flask_app(
        collector,
        STEER_LLM_METRICS_DEBUG_ENDPOINTS=True,
        STEER_LLM_METRICS_AUTHORIZE=lambda request: request.headers.get("X-Ops") == "yes",
    ).test_client()
    assert refuse.get("/_steer/debug/doctor").status_code == 403
    response = refuse.get("/_steer/debug/doctor", headers={"X-Ops": "yes"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "problem" and body["pid"] == os.getpid()
    assert {f["subject"] for f in body["findings"] if f["check"] == "sink"} == {
        "in_memory",
        "broken",
    }


DJANGO = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, sys.argv[1])
    os.environ["DJANGO_SETTINGS_MODULE"] = "project.settings"
    import django
    django.setup()
    from django.test import Client, override_settings

    codes = {"off": Client().get("/_steer/debug/doctor").status_code}
    with override_settings(STEER_LLM_METRICS={"debug_endpoints": True}):
        codes["no_staff"] = Client().get("/_steer/debug/doctor").status_code
    allowed = {"debug_endpoints": True, "authorize": lambda request: True}
    with override_settings(STEER_LLM_METRICS=allowed):
        response = Client().get("/_steer/debug/doctor")
        codes["allowed"] = response.status_code
        codes["body"] = response.json()
    print(json.dumps(codes))
""")


@pytest.mark.timeout(70)
def test_the_django_endpoint_is_gated_like_the_dashboard(tmp_path):
    pytest.importorskip("django")
    example = spawn.ROOT / "examples" / "django_project"
    done = run_python(["-c", DJANGO, str(example)], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    assert (codes["off"], codes["no_staff"], codes["allowed"]) == (404, 403, 200)
    assert codes["body"]["status"] == "ok"
    assert one_check(codes["body"], "sinks")["details"]["names"] == ["in_memory"]


def one_check(body: Dict[str, Any], check: str) -> Dict[str, Any]:
    (found,) = [f for f in body["findings"] if f["check"] == check]
    return dict(found)
