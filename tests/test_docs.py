"""The Python snippets of docs/production.md run as written, in a fresh interpreter."""

import os
import re
import sys

import pytest
from support import spawn
from support.paths import ROOT


def snippets(name: str) -> list:
    text = (ROOT / "docs" / name).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("index", range(len(snippets("production.md"))))
def test_production_snippets_run_as_written(index):
    code = snippets("production.md")[index]
    # Nothing listens on port 9 of loopback: exports fail fast and stay on this machine.
    env = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = spawn.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=50
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_integrations_name_the_extra_to_install():
    # With the framework hidden, importing its integration says which extra to install.
    code = (
        "import sys; sys.modules['flask'] = None\n"
        "try:\n"
        "    import steer_llm_sdk.observability.integrations.flask\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = spawn.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert "pip install 'steer-llm-sdk[flask]'" in out.stdout, out.stderr
