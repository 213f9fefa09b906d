"""The benchmark scripts run (their figures are read by people, not asserted here)."""

import os
import re
import shutil
import subprocess
import sys

import pytest
from support import spawn
from support.paths import ROOT

pytestmark = pytest.mark.slow


def _git_head():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: compare.py exports revisions with git archive")
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_compare_measures_a_revision_beside_this_tree():
    head = _git_head()
    env = dict(os.environ, BENCH_ROUNDS="3", BENCH_BATCH="200", BENCH_WARMUP="200")
    out = spawn.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare.py"), "HEAD"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
        cwd=ROOT,
    ).stdout
    number = r"-?\d+\.\d{3}"
    rows = {}
    for line in out.splitlines():
        found = re.match(rf"(.+?)\s+({number}) ±\d+\.\d{{3}}\s+({number})\s+({number}) ±", line)
        if found:
            rows[found.group(1).strip()] = float(found.group(2))
    # The exported revision loaded as a package of its own, beside this tree's.
    assert set(rows) == {head, "this tree", "prometheus_client"}, out
    assert all(value > 0 for value in rows.values()), out
