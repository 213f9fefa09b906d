"""What the process that loaded a uWSGI test app (the master, unless lazy-apps) left
running, taken at the end of the app's module and inherited by every worker forked from it.

A uWSGI master that forks without Python's fork hooks lets its Python threads run between
forks, and a worker forked while one of them held the GIL never starts; so in such a master
the library must have started no thread by the time the app is loaded, even after a
measured call made while loading.
"""

import os
import threading
from typing import Any, Dict

from steer_llm_sdk.observability.runtime.forks import threads_stall_forks


def loaded() -> Dict[str, Any]:
    """``{"pid", "threads", "threads_stall_forks"}`` of the calling (loading) process:
    ``threads`` names every thread but the main one."""
    main = threading.main_thread()
    return {
        "pid": os.getpid(),
        "threads": sorted(t.name for t in threading.enumerate() if t is not main),
        "threads_stall_forks": threads_stall_forks(),
    }
