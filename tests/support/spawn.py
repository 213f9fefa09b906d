"""Starting the tests' subprocesses without fork, and the interpreters to start.

The gRPC OTLP tests leave grpc's threads in the test process, and with them grpc's at-fork
handlers, which run in every child between fork and exec; some grpcio releases (1.80 on
Python 3.9, seen here) abort the child there. ``close_fds=False`` (and no ``cwd``) lets
``subprocess`` start the child with ``posix_spawn`` instead, where no handler runs. Turning
grpc's fork support off is not an option: children of a real ``os.fork()`` then crash.
"""

import glob
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, List, Mapping

import pytest

from support.paths import FLASK_APP, ROOT

GUNICORN = Path(sys.executable).parent / "gunicorn"
#: The Python versions the package supports, as (3, minor).
SUPPORTED = range(9, 14)


def run(args: Any, **kwargs: Any) -> "subprocess.CompletedProcess[Any]":
    """``subprocess.run`` through ``posix_spawn``."""
    kwargs.setdefault("close_fds", False)
    return subprocess.run(args, **kwargs)


def popen(args: Any, **kwargs: Any) -> "subprocess.Popen[Any]":
    """``subprocess.Popen`` through ``posix_spawn``."""
    kwargs.setdefault("close_fds", False)
    return subprocess.Popen(args, **kwargs)


def stop(proc: "subprocess.Popen[Any]", timeout: float = 60) -> Any:
    """Stop a server gracefully (SIGTERM) and return its output; one still running after
    ``timeout`` seconds is killed (its test then fails on the exit code)."""
    proc.send_signal(signal.SIGTERM)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    return output


def gunicorn(env: Mapping[str, str]) -> "subprocess.Popen[str]":
    """The Flask example under gunicorn with its ``gunicorn.conf.py`` (workers, bind and
    recycling from ``GUNICORN_*`` in ``env``); stdout and stderr together, as text."""
    return popen(
        [
            str(GUNICORN),
            "--chdir",
            str(FLASK_APP),
            "-c",
            str(FLASK_APP / "gunicorn.conf.py"),
            "app:create_app()",
        ],  # fmt: skip
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def interpreters(oldest: int = SUPPORTED[0]) -> List[Any]:
    """A ``pytest.param`` of this interpreter and of each supported one pyenv installed from
    3.``oldest`` on, named by its version."""
    found = {sys.executable: f"{sys.version_info.major}.{sys.version_info.minor}"}
    for path in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3"))):
        version = Path(path).parent.parent.name
        minor = version.split(".")[1]
        if minor.isdigit() and oldest <= int(minor) and int(minor) in SUPPORTED:
            found.setdefault(path, version)
    return [pytest.param(path, id=version) for path, version in found.items()]


def core_pythonpath() -> str:
    """A ``PYTHONPATH`` on which another interpreter runs the metrics core from the source
    tree without an install: the core needs only pure-Python packages beside it."""
    import structlog
    import typing_extensions

    return os.pathsep.join(
        [
            str(ROOT),
            str(Path(structlog.__file__).resolve().parent.parent),
            str(Path(typing_extensions.__file__).parent),
        ]
    )
