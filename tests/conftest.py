"""The fixtures the tests share, built on the plain helpers of ``support/``: sinks that
record what they get, collectors shut down after each test, LocalLLMServers; and a check
that no module leaves an official SDK client open."""

from typing import Iterator

import pytest
from support.collectors import Collectors
from support.local import marked_server
from support.sdk_clients import close_clients, open_clients
from support.sinks import RecordingSink

from steer_llm_sdk.testing import LocalLLMServer

#: Modules whose tests start real servers or fresh interpreters (seconds each, mostly
#: start-up): the slow tier. ``make test`` runs every tier; ``make test-quick`` leaves this
#: one out (``-m "not slow"``) for the edit-and-test loop.
SLOW_MODULES = frozenset(
    {
        "test_browser",
        "test_celery",
        "test_docs",
        "test_examples",
        "test_exit",
        "test_faults",
        "test_gunicorn",
        "test_instrument_lazy",
        "test_instrument_litellm",
        "test_usage_hint",
        "test_uwsgi",
        "test_waitress",
    }
)


def pytest_collection_modifyitems(items: "list[pytest.Item]") -> None:
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__ in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module", autouse=True)
def sdk_clients_closed(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the module that leaves an official SDK client open, and closes it.

    A client left open fails, with ``ResourceWarning: unclosed socket``, only the test in
    which a garbage collection happens to free it, and only when that collection
    finalizes the socket before the client (see support/sdk_clients.py): looking for open
    clients at the end of each module makes the failure certain and puts it in the module
    that leaked. Under pytest-xdist (``make test``) each worker process looks at the end of
    each run of a module's tests it was given, so a client is found in the process that
    made it, and blamed on that module."""
    yield
    left = open_clients()
    if left:
        kinds = ", ".join(sorted(type(client).__name__ for client in left))
        close_clients(*left)
        del left
        pytest.fail(
            f"{request.module.__name__} left official SDK clients open ({kinds}): "
            "close each one it makes (tests/support/sdk_clients.py)",
            pytrace=False,
        )


@pytest.fixture
def make_collector(request: pytest.FixtureRequest) -> Iterator[Collectors]:
    """Factory of collectors (fast batching by default), all shut down after the test, which
    fails if a collector counted an internal error (unless marked allow_internal_errors)."""
    collectors = Collectors()
    yield collectors
    for collector in collectors.made:
        for sink in collector.sinks:
            release = getattr(sink, "release", None)
            if release is not None:
                release.set()
        collector.shutdown(2.0)
    if request.node.get_closest_marker("allow_internal_errors") is None:
        for collector in collectors.made:
            assert collector.stats().internal_errors == 0, collector.stats()


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[LocalLLMServer]:
    """A LocalLLMServer of the test's own (faults it scripts reach no other test), started
    with the keyword arguments of the closest ``llm_server`` mark."""
    with marked_server(request.node) as llm:
        yield llm


@pytest.fixture(scope="module")
def module_server(request: pytest.FixtureRequest) -> Iterator[LocalLLMServer]:
    """One LocalLLMServer for all the tests of a module (and its module-scoped fixtures),
    started with the keyword arguments of the module's ``llm_server`` mark."""
    with marked_server(request.node) as llm:
        yield llm
