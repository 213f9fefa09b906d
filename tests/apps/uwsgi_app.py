"""A WSGI app for the uWSGI tests: it makes a measured call while it loads (in the master,
unless lazy-apps), one per request, and writes each delivered record as "pid request_id" to
``$RECORDS_FILE``. Each answer also says what the loading process left running (see
``uwsgi_load.py``). SIGURG dumps every thread's stack to uWSGI's log."""

import faulthandler
import json
import os
import signal

import uwsgi_load

from steer_llm_sdk.observability import MetricsCollector, MetricsConfig, lifecycle
from steer_llm_sdk.observability.runtime.forks import threads_stall_forks

faulthandler.register(signal.SIGURG, all_threads=True)


class FileSink:
    def __init__(self, path: str) -> None:
        self.out = open(path, "a", buffering=1)  # noqa: SIM115 - open for the sink's life

    def record(self, m) -> None:
        self.out.write(f"{os.getpid()} {m.request_id}\n")

    def flush(self) -> None:
        pass


# Records stay queued until a flush: the load-time call is still queued when the master forks.
collector = MetricsCollector(
    MetricsConfig(batch_size=1000, batch_timeout_seconds=3600, enable_cost_tracking=False),
    [FileSink(os.environ["RECORDS_FILE"])],
)
with collector.track_request("openai", "gpt-4o"):
    pass


# Whether Python's after-fork callbacks ran in this worker (the library runs them from
# uWSGI's post-fork hook when uWSGI itself does not).
at_fork_ran = []
os.register_at_fork(after_in_child=lambda: at_fork_ran.append(os.getpid()))

LOADED = uwsgi_load.loaded()


def application(environ, start_response):
    # A request that takes this long is stuck: every thread's stack goes to uWSGI's log,
    # which the test shows when it fails.
    faulthandler.dump_traceback_later(8)
    with collector.track_request("openai", "gpt-4o") as m:
        pass
    flushed = collector.flush(5)
    body = json.dumps(
        {
            "pid": os.getpid(),
            "id": m.request_id,
            "flushed": flushed,
            "reset_by": lifecycle.fork_state()["reset_by"],
            "at_fork_ran": os.getpid() in at_fork_ran,
            "loaded": LOADED,
            "threads_stall_forks": threads_stall_forks(),
        }
    ).encode()
    faulthandler.cancel_dump_traceback_later()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
