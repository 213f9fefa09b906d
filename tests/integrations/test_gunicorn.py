"""gunicorn end to end: `gunicorn --preload` serving the Flask example on 127.0.0.1 with sync
workers, and with sync and gthread workers recycled by `max_requests`, its views calling the
local LLM server, 400 requests at concurrency 16; the OTLP receiver must then hold exactly
400 requests' worth of counts, one instance per worker process (recycled ones included),
nothing duplicated and nothing lost, after a graceful SIGTERM of the master."""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from support import spawn
from support.network import free_port, wait_serving

from steer_llm_sdk.testing import LocalLLMServer, OTLPReceiver

pytestmark = [
    pytest.mark.skipif(not spawn.GUNICORN.exists(), reason="gunicorn is not installed"),
    pytest.mark.timeout(120),
]


@pytest.mark.parametrize(
    "settings",
    [
        {"GUNICORN_WORKERS": "4"},
        {"GUNICORN_WORKERS": "2", "GUNICORN_MAX_REQUESTS": "40"},
        {
            "GUNICORN_WORKERS": "2",
            "GUNICORN_WORKER_CLASS": "gthread",
            "GUNICORN_THREADS": "4",
            "GUNICORN_MAX_REQUESTS": "40",
        },
    ],
    ids=["sync", "sync-max-requests", "gthread-max-requests"],
)
def test_preforked_workers_export_every_request_exactly_once(settings):
    port = free_port()
    recycled = "GUNICORN_MAX_REQUESTS" in settings
    workers = int(settings["GUNICORN_WORKERS"])
    with LocalLLMServer(reply_words=5) as llm, OTLPReceiver("http") as receiver:
        env = dict(
            os.environ,
            STEER_LLM_BASE_URL=llm.url,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            STEER_OTLP_EXPORT_INTERVAL="2",
            GUNICORN_BIND=f"127.0.0.1:{port}",
            **settings,
        )
        proc = spawn.gunicorn(env)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_serving(base + "/healthz", proc)
            local = threading.local()

            def call(n):
                session = getattr(local, "session", None)
                if session is None:
                    session = local.session = requests.Session()
                response = session.post(base + "/chat", json={"prompt": f"q{n}"}, timeout=30)
                response.raise_for_status()
                return response.json()["tokens"]

            with ThreadPoolExecutor(max_workers=16) as pool:
                tokens = list(pool.map(call, range(400)))
            assert len(tokens) == 400 and all(t > 0 for t in tokens)
            assert len(llm.requests) == 400
        finally:
            output = spawn.stop(proc)
        assert proc.returncode == 0, output

        per_worker = {}
        for (instance, name, _), point in receiver.latest().items():
            if name == "llm.requests":
                per_worker[instance] = per_worker.get(instance, 0) + point["value"]
        assert sum(per_worker.values()) == 400, per_worker
        # Recycled workers export under their own instance ids: more than the pool size.
        assert len(per_worker) > workers if recycled else len(per_worker) == workers, per_worker
        durations = sum(
            p["count"]
            for (_, name, _), p in receiver.latest().items()
            if name == "gen_ai.client.operation.duration"
        )
        assert durations == 400
        routes = {
            p["attributes"].get("http.route")
            for (_, name, _), p in receiver.latest().items()
            if name == "llm.requests"
        }
        assert routes == {"/chat"}  # the Flask route, allow-listed for export
