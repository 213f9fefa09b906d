"""Every code block of README.md and docs/*.md runs as written, so that a reader's first hour
works (docs/architecture.md is left out: its blocks draw modules and paths).

How a block is checked follows from its language:

- ``python``: run in a fresh interpreter, in an empty directory, with the environment that
  the README's first-hour ``export`` block leaves: ``OPENAI_BASE_URL`` and
  ``ANTHROPIC_BASE_URL`` naming this module's LocalLLMServer (its port in place of the
  README's 8000, which the README marks as any free port) and test keys; the snippets read
  those variables as the official SDKs and ``SteerLLMClient`` do. OTLP exports go to a
  loopback port where nothing listens. A snippet must exit 0 having made exactly the
  provider calls ``CALLS`` gives it (none unless listed). A block whose first line is
  ``# settings.py`` or ``# urls.py`` is a fragment of a Django project (the README says to
  add it to those files): it is added to a minimal project, the rest of each file being the
  placeholder, and the project must start and route to the integration.
- ``sh``: ``SHELL`` says, for every block, whether it runs here (``RUN``, under
  ``bash -euo pipefail``, in an empty directory with the same environment) or which test
  runs what it describes; a test so named must exist.
- ``yaml``: parsed; a Prometheus configuration is checked by ``promtool check config``, an
  OpenTelemetry Collector configuration by the rule that a pipeline names only components
  defined above it (no Collector binary is available here).
- ``promql``: each query is checked by promtool, and every metric and label it reads must
  be in what ``PrometheusMetricsSink`` exports.
- no language: a diagram; not run.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Set, Tuple, TypeVar

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry
from support import spawn
from support.network import free_port
from support.paths import ROOT, TESTS
from support.prometheus import PROMTOOL, binary, needs_promtool, samples
from support.records import request_record

from steer_llm_sdk.observability import ErrorMetrics, StreamingMetrics
from steer_llm_sdk.observability.sinks import PrometheusMetricsSink
from steer_llm_sdk.testing import LocalLLMServer

#: The documents whose blocks must run, relative to the repository.
DOCS = ["README.md"] + sorted(
    f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md") if path.name != "architecture.md"
)

#: The port the README's first-hour blocks use; the tests put a free one in its place.
README_PORT = "8000"
T = TypeVar("T")


class Block(NamedTuple):
    """One fenced code block: the document, the line of its opening fence, its language
    (empty for none) and its text."""

    doc: str
    line: int
    lang: str
    code: str

    @property
    def head(self) -> str:
        """The block's first line: what names it in ``SHELL`` and ``CALLS``."""
        return self.code.split("\n", 1)[0].strip()

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(doc: str) -> List[Block]:
    """The fenced blocks of ``doc``, in order."""
    found: List[Block] = []
    lang, start, lines = None, 0, []  # type: ignore[var-annotated]
    for number, line in enumerate((ROOT / doc).read_text(encoding="utf-8").splitlines(), 1):
        if lang is None and line.startswith("```"):
            lang, start, lines = line[3:].strip(), number, []
        elif lang is not None and line.rstrip() == "```":
            found.append(Block(doc, start, lang, "\n".join(lines) + "\n"))
            lang = None
        elif lang is not None:
            lines.append(line)
    assert lang is None, f"{doc}: the block opened at line {start} is never closed"
    return found


ALL = [block for doc in DOCS for block in blocks(doc)]
FRAGMENT_FILES = ("# settings.py", "# urls.py")


def of(lang: str) -> List[Block]:
    return [block for block in ALL if block.lang == lang]


def params(chosen: List[Block]) -> List[object]:
    return [pytest.param(block, id=block.id) for block in chosen]


#: How each shell block is checked, by its document and the start of its first line: RUN
#: here, or the test that runs what it describes.
RUN = "run here"
EXAMPLE_TEST = "tests/project/test_examples.py::test_flask_instrument_example_under_gunicorn"
SHELL = {
    ("README.md", "make demo"):
        "tests/project/test_docs.py::test_make_demo_is_the_quickstart_example",
    ("README.md", "python -m steer_llm_sdk.testing.server"):
        "tests/project/test_docs.py::test_the_local_server_command_serves_both_protocols",
    ("README.md", "export OPENAI_BASE_URL="): "tests/project/test_docs.py::provider_env",
    ("README.md", "export PROMETHEUS_MULTIPROC_DIR="): EXAMPLE_TEST,
    ("README.md", "curl -X POST http://127.0.0.1:8001/chat"): EXAMPLE_TEST,
    ("docs/production.md", "export OTEL_SERVICE_NAME="): RUN,
    ("docs/production.md", "rm -rf /run/app-metrics"):
        "tests/sinks/test_prometheus.py::test_real_prometheus_counts_every_request_across_recycled_workers",
    ("docs/production.md", "python -m steer_llm_sdk doctor"): RUN,
}  # fmt: skip

#: The provider calls each Python block makes, by its document and the start of its first
#: line (others: none).
CALLS = {
    ("README.md", "import openai"): 1,
    ("README.md", "from steer_llm_sdk import SteerLLMClient"): 3,
    ("README.md", "from steer_llm_sdk.reliability import"): 1,
    ("README.md", "import anthropic"): 2,
}

#: Files a block expects beside it, named as above: the doctor commands import the
#: application that production.md's path B shows as ``app.py``.
BESIDE = {
    ("docs/production.md", "python -m steer_llm_sdk doctor"): {
        "app.py": ("docs/production.md", "from flask import Flask")
    },
}


def named(block: Block, table: Dict[Tuple[str, str], T]) -> Optional[T]:
    """The entry of ``table`` naming ``block`` (its document and the start of its first
    line), or None."""
    found = [
        v for (doc, head), v in table.items() if block.doc == doc and block.head.startswith(head)
    ]
    assert len(found) <= 1, f"{block.id} matches several entries"
    return found[0] if found else None


def block_named(key: Tuple[str, str]) -> Block:
    """The one block of the document ``key[0]`` whose first line starts with ``key[1]``."""
    (found,) = [b for b in ALL if b.doc == key[0] and b.head.startswith(key[1])]
    return found


def base_env() -> Dict[str, str]:
    """This process' environment without provider or framework settings of its own, and
    OTLP pointed at loopback port 9, where nothing listens (exports fail at once and never
    leave the machine)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI", "ANTHROPIC", "OTEL_", "STEER_", "PROMETHEUS_"))
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"
    return env


def venv_env(**more: str) -> Dict[str, str]:
    """:func:`base_env`, with this interpreter's directory first on ``PATH`` (the README's
    commands run in the ``.venv`` that ``make`` builds) and ``more``."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**base_env(), "PATH": path, **more}


# --------------------------------------------------------------------------- environment
@pytest.fixture(scope="module")
def provider_env(module_server: LocalLLMServer) -> Dict[str, str]:
    """What the README's ``export`` block sets, run by bash with the server's port in place
    of the README's: the variables every snippet gets."""
    block = block_named(("README.md", "export OPENAI_BASE_URL="))
    code = block.code.replace(README_PORT, str(module_server.port))
    done = spawn.run(
        ["bash", "-euo", "pipefail", "-c", code + 'python3 -c "import json, os; '
         'print(json.dumps(dict(os.environ)))"'],
        env=base_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    after = json.loads(done.stdout)
    exported = {k: v for k, v in after.items() if base_env().get(k) != v and k in block.code}
    assert exported["OPENAI_BASE_URL"] == module_server.openai_base_url
    assert exported["ANTHROPIC_BASE_URL"] == module_server.anthropic_base_url
    return exported


def run_block(
    args: List[str], cwd: Path, env: Dict[str, str]
) -> "subprocess.CompletedProcess[str]":
    """``args`` run in ``cwd`` (given to the child by ``cd``: posix_spawn takes no cwd)."""
    return spawn.run(
        ["bash", "-c", 'cd "$0" && exec "$@"', str(cwd), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,  # imports of both SDKs on a busy machine
    )


# --------------------------------------------------------------------------- python
PYTHON = [block for block in of("python") if not block.head.startswith(FRAGMENT_FILES)]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("block", params(PYTHON))
def test_python_blocks_run_as_written(block, provider_env, module_server, tmp_path):
    before = len(module_server.requests)
    done = run_block([sys.executable, "-c", block.code], tmp_path, {**base_env(), **provider_env})
    assert done.returncode == 0, done.stderr[-3000:]
    made = len(module_server.requests) - before
    assert made == (named(block, CALLS) or 0), (made, done.stdout[-2000:])


FRAGMENTS = [block for block in of("python") if block.head.startswith(FRAGMENT_FILES)]

#: The minimal project the Django fragments are added to; the checks it runs once started.
DJANGO_SETTINGS = """\
SECRET_KEY = "docs-test"
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]
MIDDLEWARE = []
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
"""
DJANGO_URLS = "urlpatterns = []\n"
DJANGO_CHECK = """\
import django
from django.test import Client
from django.urls import resolve

django.setup()
from django.conf import settings
from steer_llm_sdk.observability import get_collector

resolve("/_steer/debug")  # the integration's URLs are included
assert Client().get("/_steer/debug").status_code == 404  # debug endpoints off: 404
options = settings.STEER_LLM_METRICS
assert [type(s) for s in get_collector().sinks] == [type(s) for s in options["sinks"]]
print("django ok")
"""


@pytest.mark.timeout(180)
def test_django_fragments_start_a_project(tmp_path):
    assert sorted(block.head for block in FRAGMENTS) == sorted(FRAGMENT_FILES)
    files = {"settings.py": DJANGO_SETTINGS, "urls.py": DJANGO_URLS}
    for block in FRAGMENTS:
        name = block.head[2:]
        files[name] += "\n" + block.code
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "check.py").write_text(DJANGO_CHECK)
    env = {**base_env(), "DJANGO_SETTINGS_MODULE": "settings", "PYTHONPATH": str(tmp_path)}
    done = run_block([sys.executable, "check.py"], tmp_path, env)
    assert done.returncode == 0 and "django ok" in done.stdout, done.stderr[-3000:]


# --------------------------------------------------------------------------- shell
@pytest.mark.parametrize("block", params(of("sh")))
def test_every_shell_block_is_run_or_covered(block):
    how = named(block, SHELL)
    assert how is not None, f"{block.id}: say in SHELL how {block.head!r} is checked"
    if how != RUN:
        path, _, name = how.partition("::")
        assert f"def {name}(" in (ROOT / path).read_text(), f"{how} does not exist"


def test_the_tables_name_existing_blocks():
    for table, lang in ((SHELL, "sh"), (CALLS, "python"), (BESIDE, "sh")):
        for doc, head in table:
            assert block_named((doc, head)).lang == lang, (doc, head)
    for files in BESIDE.values():
        assert all(block_named(source).lang == "python" for source in files.values())


@pytest.mark.timeout(180)
@pytest.mark.parametrize("block", params([b for b in of("sh") if named(b, SHELL) == RUN]))
def test_shell_blocks_run_as_written(block, provider_env, tmp_path):
    for name, source in (named(block, BESIDE) or {}).items():
        (tmp_path / name).write_text(block_named(source).code)
    done = run_block(
        ["bash", "-euo", "pipefail", "-c", block.code], tmp_path, venv_env(**provider_env)
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])


def test_make_demo_is_the_quickstart_example():
    # tests/project/test_examples.py runs examples/quickstart.py and checks what it prints; `make
    # demo` must be that script (make -n prints the commands without running them).
    done = spawn.run(
        ["make", "-n", "--no-print-directory", "-C", str(ROOT), "demo"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == ".venv/bin/python examples/quickstart.py"
    assert (
        "def test_quickstart_prints_summary_table("
        in (TESTS / "project" / "test_examples.py").read_text()
    )


@pytest.mark.timeout(120)
def test_the_local_server_command_serves_both_protocols(tmp_path):
    port = free_port()
    block = block_named(("README.md", "python -m steer_llm_sdk.testing.server"))
    code = block.code.replace(README_PORT, str(port))
    # A run started in the background (nohup, a CI runner's non-interactive shell) has
    # SIGINT ignored, and a child inherits that: Python then installs no KeyboardInterrupt
    # handler and Ctrl-C does nothing. A signal this process catches is reset to the default
    # in the child instead, as in a terminal.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        server = spawn.popen(
            ["bash", "-c", f"exec {code}"], env=venv_env(), stdout=subprocess.PIPE, text=True
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        line = server.stdout.readline()  # type: ignore[union-attr]
        assert f"http://127.0.0.1:{port}/v1" in line, line
        chat = requests.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        ).json()
        message = requests.post(
            f"http://127.0.0.1:{port}/v1/messages",
            json={"model": "claude-3-5-haiku-latest", "max_tokens": 50,
                  "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        ).json()  # fmt: skip
        assert chat["usage"]["completion_tokens"] > 0 and message["usage"]["output_tokens"] > 0
    finally:
        server.send_signal(signal.SIGINT)  # the README's Ctrl-C
        try:
            server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            stuck = _stuck_process(server.pid)
            server.kill()
            server.communicate()
            pytest.fail(f"the server did not stop at SIGINT within 20 s:\n{stuck}")
    assert server.returncode == 0


def _stuck_process(pid: int) -> str:
    """What a process that does not stop is doing: its signal masks and dispositions (from
    ``/proc``), and its Python stacks where ``py-spy`` is installed."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            found = [line.strip() for line in status if line.startswith(("Sig", "State"))]
    except OSError as exc:
        found = [f"no /proc status: {exc}"]
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if os.path.exists(spy):
        dump = subprocess.run(
            [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
        )
        found.append(dump.stdout + dump.stderr)
    return "\n".join(found)


# --------------------------------------------------------------------------- yaml, promql
@pytest.mark.parametrize("block", params(of("yaml")))
def test_yaml_blocks(block, tmp_path):
    config = yaml.safe_load(block.code)
    if "scrape_configs" in config:
        checked = _promtool_config(block, tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    else:
        # An OpenTelemetry Collector configuration: every component a pipeline uses is
        # defined in its section.
        assert config["service"]["pipelines"]
        for pipeline in config["service"]["pipelines"].values():
            for section in ("receivers", "processors", "exporters"):
                assert set(pipeline.get(section, ())) <= set(config[section]), section


def _promtool_config(block: Block, tmp_path: Path) -> "subprocess.CompletedProcess[str]":
    if PROMTOOL is None and not os.environ.get("CI"):
        pytest.skip("promtool is not installed (.ci/run installs Debian's prometheus)")
    path = tmp_path / "prometheus.yml"
    path.write_text(block.code)
    return spawn.run(
        [binary(PROMTOOL, "promtool"), "check", "config", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def queries(block: Block) -> List[str]:
    """The queries of a ``promql`` block: each starts after a comment line."""
    found: List[str] = []
    for line in block.code.splitlines():
        if line.startswith("#"):
            found.append("")
        elif line.strip():
            found[-1] += line.strip() + " "
    return [q.strip() for q in found if q.strip()]


def exported_names() -> Set[str]:
    """Every sample and label name PrometheusMetricsSink exports for a call, a failed call
    and a stream."""
    sink = PrometheusMetricsSink(registry=CollectorRegistry())
    stream = StreamingMetrics(
        time.time(), "s", "openai", "gpt-4o", total_chunks=3, first_chunk_latency_ms=10.0
    )
    call = request_record("r", model="gpt-4o", usage=(10, 5), duration_ms=300.0, cost_usd=0.1)
    failed = ErrorMetrics(
        time.time(), "e", "openai", "gpt-4o", error_class="RateLimitError",
        error_category="rate_limit",
    )  # fmt: skip
    sink.record_batch([call, failed, stream])
    body, _ = sink.exposition()
    names: Set[str] = set()
    for name, labels in samples(body.decode()):
        names.add(name)
        names.update(key for key, _ in labels)
    return names


@needs_promtool
@pytest.mark.parametrize("block", params(of("promql")))
def test_promql_blocks(block, tmp_path):
    found = queries(block)
    assert found
    rules = {"groups": [{"name": "docs", "rules": [
        {"record": f"docs:query{i}", "expr": q} for i, q in enumerate(found)
    ]}]}  # fmt: skip
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = spawn.run(
        [binary(PROMTOOL, "promtool"), "check", "rules", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    exported = exported_names()
    functions = {"histogram_quantile", "sum", "by", "rate", "le"}
    for q in found:
        read = set(re.findall(r"[a-z_][a-z0-9_]*", re.sub(r"\[[^]]*\]|\d+(\.\d+)?", "", q)))
        assert read - functions <= exported, (q, sorted(read - functions - exported))


# --------------------------------------------------------------------------- the set
def test_every_block_is_checked():
    assert {block.lang for block in ALL} <= {"python", "sh", "yaml", "promql", ""}
    assert PYTHON and of("sh")


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
