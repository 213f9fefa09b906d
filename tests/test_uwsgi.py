"""A real uWSGI (built by pip from the dev extra) serving a WSGI app that makes a measured
call while it loads and one per request: with uWSGI's default flags (no Python fork hooks
in the workers), with ``py-call-uwsgi-fork-hooks``, and with ``lazy-apps``, every request's
record is delivered exactly once, by the worker that served it, and the workers stop
promptly."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
import requests
import spawn

UWSGI = shutil.which("uwsgi", path=str(Path(sys.executable).parent)) or shutil.which("uwsgi")
APP = Path(__file__).resolve().parent / "apps" / "uwsgi_app.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        UWSGI is None and not os.environ.get("CI"),
        reason="uWSGI is not installed (the dev extra installs it; under CI this fails)",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tmp_path: Path, flags: List[str], requests_count: int) -> Dict:
    assert UWSGI is not None, "CI must have uWSGI (the dev extra installs it)"
    port = _free_port()
    records = tmp_path / "records.txt"
    env = dict(
        os.environ,
        RECORDS_FILE=str(records),
        PYTHONPATH=os.pathsep.join([str(Path(spawn.ROOT)), os.environ.get("PYTHONPATH", "")]),
    )
    log = (tmp_path / "uwsgi.log").open("w")
    server = spawn.popen(
        [UWSGI, "--http-socket", f"127.0.0.1:{port}", "--master", "--processes", "2",
         "--wsgi-file", str(APP), "--die-on-term", "--disable-logging", *flags],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    answers = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answers.append(requests.get(f"http://127.0.0.1:{port}/", timeout=5).json())
                break
            except requests.ConnectionError:
                assert server.poll() is None, (tmp_path / "uwsgi.log").read_text()
                assert time.monotonic() < deadline, "uWSGI did not start"
                time.sleep(0.05)
        with requests.Session() as session:
            for _ in range(requests_count - 1):
                answers.append(session.get(f"http://127.0.0.1:{port}/", timeout=5).json())
        stopping = time.monotonic()
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)
        stopped_in = time.monotonic() - stopping
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
    lines = [line.split() for line in records.read_text().splitlines()]
    return {"answers": answers, "delivered": lines, "stopped_in": stopped_in}


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "flags",
    [[], ["--enable-threads", "--py-call-uwsgi-fork-hooks"], ["--lazy-apps"]],
    ids=["default-flags", "fork-hooks", "lazy-apps"],
)
def test_every_request_is_delivered_once_by_its_worker(flags, tmp_path):
    got = _serve(tmp_path, flags, requests_count=40)
    answers, delivered = got["answers"], got["delivered"]
    assert all(a["flushed"] for a in answers)
    ids = [rid for _, rid in delivered]
    assert len(ids) == len(set(ids)), "a record was delivered twice"
    by_id = {rid: int(pid) for pid, rid in delivered}
    for answer in answers:  # each request's own record, from the worker that served it
        assert by_id.get(answer["id"]) == answer["pid"], answer
    assert len({a["pid"] for a in answers}) >= 1
    assert got["stopped_in"] < 10, got["stopped_in"]
