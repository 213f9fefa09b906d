"""Starting the tests' subprocesses without fork.

The gRPC OTLP tests leave grpc's threads in the test process, and with them grpc's at-fork
handlers, which run in every child between fork and exec; some grpcio releases (1.80 on
Python 3.9, seen here) abort the child there. ``close_fds=False`` (and no ``cwd``) lets
``subprocess`` start the child with ``posix_spawn`` instead, where no handler runs. Turning
grpc's fork support off is not an option: children of a real ``os.fork()`` then crash.
"""

import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parent.parent
#: The Flask example the gunicorn tests serve.
FLASK_APP = ROOT / "examples" / "flask_app"
GUNICORN = Path(sys.executable).parent / "gunicorn"


def run(args: Any, **kwargs: Any) -> "subprocess.CompletedProcess[Any]":
    """``subprocess.run`` through ``posix_spawn``."""
    kwargs.setdefault("close_fds", False)
    return subprocess.run(args, **kwargs)


def popen(args: Any, **kwargs: Any) -> "subprocess.Popen[Any]":
    """``subprocess.Popen`` through ``posix_spawn``."""
    kwargs.setdefault("close_fds", False)
    return subprocess.Popen(args, **kwargs)


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
