"""A real Prometheus server for the tests, and reading what it and an exposition hold.

Debian's ``prometheus`` package (installed by ``.ci/run``) provides both binaries used here:
``prometheus`` and ``promtool``. A test that needs one is skipped when it is missing on a
developer's machine, and fails under CI (``CI`` set), where a skip would hide a lost check.

:func:`prometheus_server` starts the server on a free loopback port with the test's scrape
targets and rule files, waits until it is ready, and stops it at the end (printing the tail
of its log, which pytest shows for a failed test). Waits are bounded polls
(:func:`wait_for`), never bare sleeps.
"""

import datetime
import os
import re
import shutil
import signal
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, TypeVar

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from support import spawn, waiting
from support.network import free_port

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
UNDER_CI = bool(os.environ.get("CI"))

T = TypeVar("T")


def _needs(path: Optional[str], name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        path is None and not UNDER_CI,
        reason=f"{name} is not installed (.ci/run installs Debian's prometheus package; "
        "under CI this fails)",
    )


#: Skip a test without the prometheus server, unless under CI.
needs_prometheus = _needs(PROMETHEUS, "the prometheus server")
#: Skip a test without promtool, unless under CI.
needs_promtool = _needs(PROMTOOL, "promtool")


def binary(path: Optional[str], name: str) -> str:
    """``path``, or a failure naming what CI must install (reached only under CI: elsewhere
    the skip markers above stop the test first)."""
    assert path is not None, f"CI must have {name} (.ci/run installs the prometheus package)"
    return path


#: What a poll of the server may meet before it is ready: no answer, or not the data yet.
_NOT_YET = (requests.RequestException, KeyError, IndexError, ValueError)


def wait_for(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """:func:`support.waiting.wait_for`, polling every 0.2 s, a failed request or a missing
    piece of the answer counting as not yet."""
    return waiting.wait_for(predicate, timeout, what, interval=0.2, errors=_NOT_YET)


def api(url: str, path: str, **params: Any) -> Any:
    """The ``data`` of a successful answer of Prometheus' HTTP API."""
    reply = requests.get(f"{url}/api/v1/{path}", params=params, timeout=5).json()
    assert reply["status"] == "success", reply
    return reply["data"]


def query(url: str, expr: str) -> List[Dict[str, Any]]:
    """The result of an instant query now."""
    return api(url, "query", query=expr)["result"]


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def unix_time(stamp: str) -> float:
    """A time of Prometheus' API (RFC 3339, up to nanoseconds, which ``fromisoformat`` of
    older Pythons refuses) as Unix seconds."""
    match = _RFC3339.match(stamp)
    assert match is not None, stamp
    whole, fraction, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    seconds = datetime.datetime.fromisoformat(whole + zone).timestamp()
    return seconds + float(fraction or 0)


def samples(text: str) -> Dict[Any, float]:
    """{(sample name, frozenset(labels)): value} of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def total(parsed: Dict[Any, float], name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` carrying ``labels`` in :func:`samples`' result."""
    return sum(
        value
        for (sample, key), value in parsed.items()
        if sample == name and all(dict(key).get(k) == v for k, v in labels.items())
    )


def scrape_config(job: str, port: int, path: str = "/metrics", token: Optional[str] = None) -> Dict:
    """One scrape job of a target on loopback."""
    job_config: Dict[str, Any] = {
        "job_name": job,
        "metrics_path": path,
        "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
    }
    if token is not None:
        job_config["authorization"] = {"credentials": token}
    return job_config


@contextmanager
def prometheus_server(
    workdir: Path,
    scrape_configs: Sequence[Dict[str, Any]],
    rule_files: Sequence[Path] = (),
    interval: str = "1s",
) -> Iterator[str]:
    """Run Prometheus scraping ``scrape_configs`` and evaluating ``rule_files`` every
    ``interval``, its data in ``workdir``; yields its base URL once it is ready."""
    server = binary(PROMETHEUS, "the prometheus server")
    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": interval, "evaluation_interval": interval},
                "rule_files": [str(path) for path in rule_files],
                "scrape_configs": list(scrape_configs),
            }
        )
    )
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in finally
    process = spawn.popen(
        [
            server,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(url + "/-/ready", timeout=1).ok, 30, "prometheus")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.seek(0)
        print(log.read()[-2000:])
        log.close()
