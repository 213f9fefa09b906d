"""Every package's __all__ lists exactly its public names, and the contract names exist."""

import importlib

import pytest

PACKAGES = [
    "steer_llm_sdk",
    "steer_llm_sdk.observability",
    "steer_llm_sdk.observability.sinks",
    "steer_llm_sdk.streaming",
    "steer_llm_sdk.streaming.readers",
    "steer_llm_sdk.observability.instrumentation",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_matches_public_names(name):
    module = importlib.import_module(name)
    for n in module.__all__:  # also loads names a module provides lazily
        assert getattr(module, n) is not None
    public = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and not isinstance(v, type(importlib))
    }
    public -= {"Any"}  # the annotation import of a lazy __getattr__
    assert set(module.__all__) - {"__version__"} == public


def test_testing_package_exports_resolve():
    import steer_llm_sdk.testing as testing

    for name in testing.__all__:
        assert getattr(testing, name) is not None
    from steer_llm_sdk.testing import LocalLLMServer  # noqa: F401  (a contract name)


def test_contract_names_from_the_issues():
    from steer_llm_sdk import (  # noqa: F401
        GenerationResponse,
        SteerLLMClient,
        StreamingResponseWithUsage,
        Usage,
    )
    from steer_llm_sdk.observability import (  # noqa: F401
        AgentMetrics,
        BaseMetrics,
        CollectorStats,
        ErrorMetrics,
        MetricsCollector,
        MetricsConfig,
        ReliabilityMetrics,
        RequestMetrics,
        StreamingMetrics,
        UsageMetrics,
        configure,
        current_metrics,
        flush,
        get_collector,
        metrics_context,
        shutdown,
        track_request,
    )
    from steer_llm_sdk.observability.filters import (  # noqa: F401
        AttributeFilter,
        MetricsFilter,
        OnlyProductionFilter,
    )
    from steer_llm_sdk.observability.sinks import (  # noqa: F401
        InMemoryMetricsSink,
        MetricsSink,
        MetricsSummary,
    )
