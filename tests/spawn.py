"""Starting the tests' subprocesses without fork.

The gRPC OTLP tests leave grpc's threads in the test process, and with them grpc's at-fork
handlers, which run in every child between fork and exec; some grpcio releases (1.80 on
Python 3.9, seen here) abort the child there. ``close_fds=False`` (and no ``cwd``) lets
``subprocess`` start the child with ``posix_spawn`` instead, where no handler runs. Turning
grpc's fork support off is not an option: children of a real ``os.fork()`` then crash.
"""

import subprocess
from typing import Any


def run(args: Any, **kwargs: Any) -> "subprocess.CompletedProcess[Any]":
    """``subprocess.run`` through ``posix_spawn``."""
    kwargs.setdefault("close_fds", False)
    return subprocess.run(args, **kwargs)


def popen(args: Any, **kwargs: Any) -> "subprocess.Popen[Any]":
    """``subprocess.Popen`` through ``posix_spawn``."""
    kwargs.setdefault("close_fds", False)
    return subprocess.Popen(args, **kwargs)
