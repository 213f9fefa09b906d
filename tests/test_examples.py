"""Every example runs as documented and prints what it promises."""

import os
import sys
from pathlib import Path

import pytest
from support import spawn
from support.paths import EXAMPLES


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


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_is_covered(name):
    assert f"test_{name[:-3]}" in Path(__file__).read_text() or name == "quickstart.py"


def test_otlp_export_example():
    out = run("otlp_export.py").stdout
    assert "gen_ai.client.operation.duration" in out and "llm.requests" in out
    assert "gen_ai.client.operation.time_to_first_chunk" in out
