"""Every example runs as documented and prints what it promises."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict

import pytest
import requests
from support import spawn
from support.network import free_port, wait_serving
from support.paths import EXAMPLES, ROOT
from support.prometheus import samples, total
from support.sdk_clients import closing
from support.waiting import wait_for, wait_until

from steer_llm_sdk.testing import LocalLLMServer, OTLPReceiver


def run(name):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "ANTHROPIC"))}
    return spawn.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )


def test_quickstart_prints_summary_table():
    out = run("quickstart.py").stdout
    for model in ("openai/gpt-4o-mini", "openai/gpt-4o", "anthropic/claude-3-5-haiku-20241022"):
        assert model in out
    assert "total" in out and "retries" in out and "recovered" in out
    assert "circuit breaker for openai:gpt-4o: CLOSED -> OPEN -> HALF_OPEN -> CLOSED" in out
    assert "0 dropped, 0 pending" in out


def test_decorator_example():
    out = run("decorator.py").stdout
    assert "openai/gpt-4o-mini" in out and "0 dropped, 0 pending" in out


def test_streaming_example():
    out = run("streaming.py").stdout
    assert "usage: Usage(" in out and "json: [{'answer':" in out and "completed" in out


def test_tools_example():
    out = run("tools.py").stdout
    for model in ("gpt-4o-mini", "claude-3-5-haiku-latest"):
        assert f"{model}: tool get_weather({{'city':" in out
        assert f"{model}: answer '" in out
    assert "streamed tool calls: [('get_weather', {'city':" in out
    assert "5 LLM calls recorded" in out


def test_custom_sink_example():
    proc = run("custom_sink.py")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines and all('"deployment.environment": "example"' in line for line in lines)
    assert "sampled out" in proc.stderr


@pytest.mark.parametrize(
    "name", sorted(p.name for p in EXAMPLES.glob("*.py")) + ["flask_instrument/"]
)
def test_every_example_is_covered(name):
    stem = name[:-3] if name.endswith(".py") else name.rstrip("/")
    assert f"test_{stem}" in Path(__file__).read_text() or name == "quickstart.py"


def test_otlp_export_example():
    out = run("otlp_export.py").stdout
    assert "gen_ai.client.operation.duration" in out and "llm.requests" in out
    assert "gen_ai.client.operation.time_to_first_chunk" in out


# --------------------------------------------------------------------------- flask_instrument
INSTRUMENT_APP = EXAMPLES / "flask_instrument"
#: The calls made to each view of the example: (route, provider, model, streamed).
VIEWS = {
    "/chat": ("openai", "gpt-4o-mini", False),
    "/stream": ("openai", "gpt-4o-mini", True),
    "/claude": ("anthropic", "claude-3-5-haiku-latest", False),
}
CALLS = {"/chat": 3, "/stream": 2, "/claude": 2}
PROMPT = "What is a token?"


def provider_usage(llm: LocalLLMServer) -> Dict[str, Any]:
    """(input, output) tokens the local server reports for one call of each view, asked
    with the official SDKs directly, as the views ask."""
    import anthropic
    import openai

    messages = [{"role": "user", "content": PROMPT}]
    oa = openai.OpenAI(base_url=llm.openai_base_url, api_key="test", max_retries=0)
    an = anthropic.Anthropic(base_url=llm.anthropic_base_url, api_key="test", max_retries=0)
    with closing(oa, an):
        chat = oa.chat.completions.create(model="gpt-4o-mini", messages=messages).usage
        chunks = oa.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
        (streamed,) = [c.usage for c in chunks if c.usage is not None]
        claude = an.messages.create(
            model="claude-3-5-haiku-latest", max_tokens=256, messages=messages
        ).usage
    return {
        "/chat": (chat.prompt_tokens, chat.completion_tokens),
        "/stream": (streamed.prompt_tokens, streamed.completion_tokens),
        "/claude": (claude.input_tokens, claude.output_tokens),
    }


@pytest.mark.timeout(240)
@pytest.mark.skipif(not spawn.GUNICORN.exists(), reason="gunicorn is not installed")
def test_flask_instrument_example_under_gunicorn(tmp_path):
    """The README's way: gunicorn with the example's gunicorn.conf.py (two pre-forked
    workers), the SDKs pointed at a local server by their own variables. After real requests
    to the three views, the Prometheus endpoint holds exactly the calls and tokens the
    provider reported, per route; the debug endpoint refuses a request without the token and
    holds the same calls, summed over the workers that answered it; and after a graceful
    stop an OTLP receiver holds them too."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    token = {"Authorization": "Bearer change-me"}
    with LocalLLMServer(reply_words=5) as llm, OTLPReceiver("http") as receiver:
        usage = provider_usage(llm)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "ANTHROPIC"))}
        env.update(
            OPENAI_BASE_URL=llm.openai_base_url,
            ANTHROPIC_BASE_URL=llm.anthropic_base_url,
            OPENAI_API_KEY="test",
            ANTHROPIC_API_KEY="test",
            PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
            STEER_DEBUG_TOKEN="change-me",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            GUNICORN_BIND=f"127.0.0.1:{port}",
            PYTHONPATH=str(ROOT),
        )
        # posix_spawn takes no cwd: the README's relative paths are run from the root by cd.
        proc = spawn.popen(
            ["bash", "-c", 'cd "$0" && exec "$@"', str(ROOT), str(spawn.GUNICORN),
             "-c", "examples/flask_instrument/gunicorn.conf.py",
             "--chdir", "examples/flask_instrument", "app:create_app()"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            # The master imports both SDKs before it forks: slow on a busy machine.
            wait_serving(base + "/healthz", proc, timeout=90)
            assert requests.get(base + "/_steer/debug", timeout=10).status_code == 403
            wrong = {"Authorization": "Bearer wrong"}
            assert (
                requests.get(base + "/_steer/debug", headers=wrong, timeout=10).status_code == 403
            )

            def ask(route: str) -> None:
                answer = requests.post(base + route, json={"prompt": PROMPT}, timeout=30)
                assert answer.status_code == 200 and answer.json()["text"], answer.text

            # Several at once, so that both workers answer (one idle worker could otherwise
            # take every request in turn), each exporting under an instance of its own.
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(ask, [route for route, n in CALLS.items() for _ in range(n)]))
            check_prometheus(base, usage)
            check_debug_page(base, token, usage)
        finally:
            output = spawn.stop(proc)
        assert proc.returncode == 0, output
        for route, count in CALLS.items():
            assert receiver.total("llm.requests", **{"http.route": route}) == count, route
        instances = {instance for instance, name, _ in receiver.latest() if name == "llm.requests"}
        assert len(instances) == 2, instances  # one per worker


def check_prometheus(base: str, usage: Dict[str, Any]) -> None:
    # A record's families are written one after another, so a scrape can land between a
    # record's request count and its tokens: wait for the whole expected picture.
    expected: Dict[Any, float] = {}
    for route, (_, _, streamed) in VIEWS.items():
        calls = CALLS[route]
        expected[("llm_requests_total", route, "")] = calls
        for kind, tokens in zip(("input", "output"), usage[route]):
            expected[("gen_ai_client_token_usage_sum", route, kind)] = calls * tokens
        expected[("llm_time_to_first_token_seconds_count", route, "")] = calls if streamed else 0

    def seen(parsed: Any) -> Dict[Any, float]:
        out: Dict[Any, float] = {}
        for route, (provider, model, _) in VIEWS.items():
            labels = {"http_route": route, "gen_ai_provider_name": provider}
            out[("llm_requests_total", route, "")] = total(
                parsed, "llm_requests_total", error_type="", **labels
            )
            for kind in ("input", "output"):
                out[("gen_ai_client_token_usage_sum", route, kind)] = total(
                    parsed, "gen_ai_client_token_usage_sum", gen_ai_token_type=kind,
                    gen_ai_request_model=model, **labels,
                )  # fmt: skip
            out[("llm_time_to_first_token_seconds_count", route, "")] = total(
                parsed, "llm_time_to_first_token_seconds_count", **labels
            )
        return out

    last: Dict[str, Any] = {}

    def scraped() -> bool:
        last["seen"] = seen(samples(requests.get(base + "/_steer/metrics", timeout=10).text))
        return last["seen"] == expected

    if not wait_until(scraped, 20, 0.2):
        assert last.get("seen") == expected  # names the family that differs


def check_debug_page(base: str, token: Dict[str, str], usage: Dict[str, Any]) -> None:
    # Each answer describes the worker that gave it: collect every worker's newest summary
    # until together they hold every call.
    newest: Dict[int, Dict[str, Any]] = {}

    def complete() -> bool:
        reply = requests.get(base + "/_steer/debug", headers=token, timeout=10)
        assert reply.status_code == 200, reply.status_code
        body = reply.json()
        assert body["summary"] is not None, body.get("error")
        newest[body["process"]["pid"]] = body["summary"]
        return sum(s["total_requests"] for s in newest.values()) == sum(CALLS.values())

    wait_for(complete, 30, "the workers' debug pages to hold every call", interval=0.1)
    by_model: Dict[str, Dict[str, int]] = {}
    for summary in newest.values():
        for key, part in summary["by_model"].items():
            seen = by_model.setdefault(key, {"calls": 0, "streamed": 0, "input": 0, "output": 0})
            seen["calls"] += part["total_requests"]
            seen["streamed"] += part["streamed_requests"]
            seen["input"] += part["prompt_tokens"]
            seen["output"] += part["completion_tokens"]
    expected: Dict[str, Dict[str, int]] = {}
    for route, (provider, model, streamed) in VIEWS.items():
        seen = expected.setdefault(
            f"{provider}/{model}", {"calls": 0, "streamed": 0, "input": 0, "output": 0}
        )
        seen["calls"] += CALLS[route]
        seen["streamed"] += CALLS[route] if streamed else 0
        seen["input"] += CALLS[route] * usage[route][0]
        seen["output"] += CALLS[route] * usage[route][1]
    assert by_model == expected
    page = requests.get(base + "/_steer/debug/dashboard", headers=token, timeout=10)
    assert page.status_code == 200 and "gpt-4o-mini" in page.text
