"""Celery: a real `celery worker --pool prefork --concurrency 2` against a real Redis broker on
127.0.0.1. N tasks each make a tracked call; records wait for a 60 s batch, so only the
integration's drain at the children's end can deliver them. After a warm shutdown exactly N
records were delivered, from the worker children's own pids."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
from support.network import free_port
from support.paths import ROOT
from support.waiting import wait_for

celery = pytest.importorskip("celery")
redis = pytest.importorskip("redis")

REDIS = shutil.which("redis-server")
if REDIS is None and os.environ.get("CI") == "true":
    raise RuntimeError("redis-server is missing: .ci/run installs it")

APP = textwrap.dedent("""
    import os
    from celery import Celery
    from steer_llm_sdk.observability import MetricsConfig, configure, track_request
    from steer_llm_sdk.observability.integrations.celery import setup_celery

    PATH, PORT = os.environ["STEER_TEST_RECORDS"], os.environ["STEER_TEST_REDIS_PORT"]

    class FileSink:
        def record(self, metrics):
            with open(PATH, "a") as out:
                out.write("%d %s\\n" % (os.getpid(), metrics.request_id))
        def flush(self):
            pass

    configure(MetricsConfig(batch_size=10_000, batch_timeout_seconds=60), [FileSink()])
    app = Celery("steer_test", broker="redis://127.0.0.1:%s/0" % PORT,
                 backend="redis://127.0.0.1:%s/1" % PORT)
    app.conf.worker_hijack_root_logger = False
    setup_celery()

    @app.task
    def work(i):
        @track_request("openai", model="gpt-4o-mini")
        def call():
            return i
        call()
        return os.getpid()
""")


@pytest.fixture
def broker(tmp_path):
    if REDIS is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [
            REDIS,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        wait_for(client.ping, 10, "redis-server", errors=(redis.exceptions.ConnectionError,))
    except AssertionError:
        proc.kill()
        raise
    yield port
    proc.terminate()
    proc.wait(10)


DRIVER = textwrap.dedent("""
    import sys
    from steer_test_app import work
    results = [work.delay(i) for i in range(int(sys.argv[1]))]
    print(" ".join(str(result.get(timeout=60)) for result in results))
""")


@pytest.mark.timeout(150)
def test_prefork_children_deliver_every_record_at_a_warm_shutdown(broker, tmp_path):
    records = tmp_path / "records.txt"
    (tmp_path / "steer_test_app.py").write_text(APP)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
        STEER_TEST_RECORDS=str(records),
        STEER_TEST_REDIS_PORT=str(broker),
    )
    # Another test module sets it for Django at import; Celery would then load Django's fixup.
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed in finally; not a pipe
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "steer_test_app",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "2",
            "--loglevel",
            "WARNING",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    n = 20
    try:
        # The tasks are sent from another process, so this one stays free of Celery's state.
        sent = subprocess.run(
            [sys.executable, "-c", DRIVER, str(n)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert sent.returncode == 0, sent.stderr
        pids = {int(pid) for pid in sent.stdout.split()}
        assert not records.exists() or records.read_text() == ""  # still batched in children
        worker.send_signal(signal.SIGTERM)  # warm shutdown
        worker.wait(60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        log.close()
    output = (tmp_path / "worker.log").read_text()
    lines = records.read_text().split("\n") if records.exists() else []
    delivered = [line.split()[0] for line in lines if line]
    assert len(delivered) == n, output
    assert {int(pid) for pid in delivered} <= pids and worker.pid not in pids
