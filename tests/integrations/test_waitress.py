"""waitress (threads, no fork) serving the Flask example: 200 requests at concurrency 16, then
a stop by SIGINT; the OTLP receiver holds exactly 200 requests from one process."""

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from support import spawn
from support.network import free_port, wait_serving

from steer_llm_sdk.testing import LocalLLMServer, OTLPReceiver

pytest.importorskip("waitress")

SERVE = """
import sys
from waitress import serve
from app import create_app
serve(create_app(), host="127.0.0.1", port=int(sys.argv[1]), threads=8)
"""


@pytest.mark.timeout(90)
def test_threads_without_fork_export_every_request_exactly_once():
    port = free_port()
    with LocalLLMServer(reply_words=5) as llm, OTLPReceiver("http") as receiver:
        env = dict(
            os.environ,
            STEER_LLM_BASE_URL=llm.url,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            STEER_OTLP_EXPORT_INTERVAL="2",
            PYTHONPATH=os.pathsep.join([str(spawn.FLASK_APP), str(spawn.ROOT)]),
        )
        proc = spawn.popen(
            [sys.executable, "-c", SERVE, str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_serving(base + "/healthz", proc)

            def call(n: int) -> int:
                response = requests.post(base + "/chat", json={"prompt": f"q{n}"}, timeout=30)
                response.raise_for_status()
                return response.json()["tokens"]

            with ThreadPoolExecutor(max_workers=16) as pool:
                tokens = list(pool.map(call, range(200)))
            assert all(t > 0 for t in tokens)
        finally:
            proc.send_signal(signal.SIGINT)  # waitress ends its serve() loop; atexit runs
            try:
                output, _ = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
        assert receiver.wait_for(lambda r: r.total("llm.requests") == 200, 10), output[-2000:]
        instances = {
            instance for (instance, name, _) in receiver.latest() if name == "llm.requests"
        }
        assert len(instances) == 1
