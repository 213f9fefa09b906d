"""Headless Chromium loads the dashboard served by the Flask example and takes a screenshot;
the rendered page must show the numbers it was given. Under CI (CI=true) a missing Chromium
fails the test instead of skipping it."""

import os
import re
import shutil
import subprocess
import sys
import threading

import pytest
from support.paths import FLASK_APP
from werkzeug.serving import make_server

from steer_llm_sdk.testing import LocalLLMServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


@pytest.fixture(scope="module")
def chromium():
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is required under CI (.ci/run installs it)")
        pytest.skip("Chromium is not installed")
    return CHROMIUM


@pytest.fixture
def dashboard(monkeypatch):
    with LocalLLMServer(reply_words=4) as llm:
        monkeypatch.setenv("STEER_LLM_BASE_URL", llm.url)
        monkeypatch.setenv("STEER_DEBUG_ENDPOINTS", "1")
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
        sys.path.insert(0, str(FLASK_APP))
        try:
            from app import create_app
        finally:
            sys.path.pop(0)
        app = create_app()
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        client = app.test_client()
        for n in range(5):
            assert client.post("/chat", json={"prompt": f"q{n}"}).status_code == 200
        for n in range(2):
            assert client.post("/stream", json={"prompt": f"s{n}"}).status_code == 200
        from steer_llm_sdk.observability import get_collector

        assert get_collector().flush(5)
        yield f"http://127.0.0.1:{server.server_port}/_steer/debug/dashboard"
        server.shutdown()
        thread.join(5)


def run_chromium(binary, tmp_path, *args):
    profile = tmp_path / "profile"
    return subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dashboard_renders_its_numbers(chromium, dashboard, tmp_path):
    dom = run_chromium(chromium, tmp_path, "--dump-dom", dashboard).stdout
    assert "<svg" in dom
    requests_card = re.search(r'id="LLM-calls">([^<]+)<', dom)
    assert requests_card and requests_card.group(1) == "7"
    assert "openai/gpt-4o-mini" in dom and "anthropic/claude-3-5-haiku-latest" in dom
    shot = tmp_path / "dashboard.png"
    run_chromium(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1200,1400", dashboard)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
