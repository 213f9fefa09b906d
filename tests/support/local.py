"""The set-up the client tests share: a SteerLLMClient wired to a LocalLLMServer, and what
it recorded; and the LocalLLMServer of the ``server`` fixtures, configured by a mark."""

from contextlib import contextmanager
from typing import Any, Iterator, List

import pytest

from steer_llm_sdk import SteerLLMClient
from steer_llm_sdk.observability import MetricsConfig
from steer_llm_sdk.testing import LocalLLMServer

#: No exit drain (the test shuts the client down), short batches (records arrive fast).
CONFIG = MetricsConfig(flush_on_exit=False, batch_timeout_seconds=0.02)


@contextmanager
def marked_server(node: pytest.Item) -> Iterator[LocalLLMServer]:
    """A LocalLLMServer started with the keyword arguments of the ``llm_server`` mark closest
    to ``node`` (a test's, its class' or its module's ``pytestmark``; none: the defaults),
    stopped when the block ends."""
    mark = node.get_closest_marker("llm_server")
    with LocalLLMServer(**(mark.kwargs if mark is not None else {})) as server:
        yield server


def local_client(server: LocalLLMServer, **options: Any) -> SteerLLMClient:
    """A client owning its collector (one in-memory sink), speaking to ``server`` for OpenAI
    and Anthropic with test keys and no environment variables; ``options`` override."""
    settings = {
        "openai_base_url": server.openai_base_url,
        "anthropic_base_url": server.anthropic_base_url,
        "openai_api_key": "test",
        "anthropic_api_key": "test",
        "environ": {},
        **options,
    }
    return SteerLLMClient(CONFIG, **settings)


def recorded(client: SteerLLMClient, kind: str) -> List[Any]:
    """The records of ``kind`` the client's in-memory sink holds, after a flush."""
    assert client.metrics_collector.flush(5)
    return client.metrics_collector.sinks[0].get_metrics(metric_type=kind)
