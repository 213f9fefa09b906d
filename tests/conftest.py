"""The fixtures the tests share, built on the plain helpers of ``support/``: sinks that
record what they get, collectors shut down after each test, LocalLLMServers; and a check
that no module leaves an official SDK client open."""

import gc
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


@pytest.fixture(autouse=True)
def young_heap() -> Iterator[None]:
    """Each test's garbage collections walk only the objects made since it started.

    Tests of streams ended when nothing can reach them any more call ``gc.collect()``; in a
    process that has loaded the SDKs (LiteLLM above all) one full collection walks hundreds
    of thousands of objects, up to 1.7 s here: 60 s of the instrument and measure tests
    went to the 157 collections they ask for. What exists when the test starts is frozen
    (``gc.freeze()``: a few list splices, and the collector skips it). When the test ends,
    after its other fixtures, what it left unreachable is collected while the rest is still
    frozen, so that its sockets and streams are finalised in it and not in a later test,
    and the frozen objects are handed back to the oldest generation. A test never needs to
    collect what was made before it; ``gc.get_objects()`` does not list frozen objects,
    which a test comparing its own counts before and after never sees."""
    gc.freeze()
    try:
        yield
    finally:
        gc.collect()
        gc.unfreeze()


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
