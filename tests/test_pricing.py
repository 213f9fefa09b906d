"""Price table: matching, cost formula, overrides, unknown models."""

import json

import pytest

from steer_llm_sdk.observability import MetricsConfig, RequestMetrics
from steer_llm_sdk.pricing import ModelPrice, PriceTable, load_pricing


def test_longest_prefix_at_a_boundary():
    table = PriceTable.default()
    assert table.lookup("gpt-4o-mini-2024-07-18") == table.lookup("gpt-4o-mini")
    assert table.lookup("gpt-4o-2024-08-06") == table.lookup("gpt-4o")
    assert table.lookup("gpt-4o") != table.lookup("gpt-4o-mini")
    assert table.lookup("openai:gpt-4o") == table.lookup("gpt-4o")
    assert table.lookup("claude-3-5-haiku-20241022") == ModelPrice(0.80, 4.0, 0.08)
    assert table.lookup("gpt-4.5-preview") is None  # no silent fall back to gpt-4
    assert table.lookup("llama3") is None and table.lookup(None) is None


def test_cost_formula():
    table = PriceTable({"m": (2.0, 8.0, 0.5)})
    # 1,000 prompt tokens of which 400 cached, 500 completion tokens.
    assert table.cost("m", 1000, 500, 400) == pytest.approx(
        (600 * 2.0 + 400 * 0.5 + 500 * 8.0) / 1e6
    )
    assert PriceTable({"m": (1.0, 1.0)}).cost("m", 10, 10, 5) == pytest.approx(20 / 1e6)
    assert table.cost("other", 1, 1) is None and table.cost("m", None, 1) is None


def test_overrides_file_and_env(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {
                "as_of": "2026-01-01",
                "models": {
                    "gpt-4o": {"input": 1.0, "output": 2.0},
                    "my-model": {"input": 3, "output": 4},
                },
            }
        )
    )
    table = load_pricing({"my-model": (5, 6)}, environ={"STEER_PRICING_FILE": str(path)})
    assert table.lookup("gpt-4o") == ModelPrice(1.0, 2.0, None)
    assert table.lookup("my-model") == ModelPrice(5.0, 6.0, None)
    assert table.lookup("gpt-4o-mini") == PriceTable.default().lookup("gpt-4o-mini")
    with pytest.raises(ValueError, match="STEER_PRICING_FILE"):
        load_pricing(environ={"STEER_PRICING_FILE": str(tmp_path / "missing.json")})


def test_invalid_prices_are_rejected_at_construction():
    with pytest.raises(ValueError, match="pricing\\['m'\\]"):
        MetricsConfig(pricing={"m": {"input": 1.0}})
    with pytest.raises(ValueError, match=">= 0"):
        PriceTable({"m": (-1, 1)})
    with pytest.raises(TypeError):
        MetricsConfig(pricing=[("m", 1, 2)])


def test_collector_prices_records_and_warns_once_for_unknown(make_collector, sink, caplog):
    collector = make_collector(
        [sink], enable_cost_tracking=True, pricing={"house-model": (1.0, 2.0)}
    )
    for model in ("house-model", "gpt-4o-mini", "mystery", "mystery"):
        m = RequestMetrics(1e12, f"r-{model}", "openai", model)
        m.set_usage(1000, 1000)
        collector.record(m)
    collector.record(RequestMetrics(1e12, "no-usage", "openai", "gpt-4o"))
    assert collector.flush(5)
    costs = {m.request_id: m.cost_usd for m in sink.records}
    assert costs["r-house-model"] == pytest.approx(3000 / 1e6)
    assert costs["r-gpt-4o-mini"] == pytest.approx((1000 * 0.15 + 1000 * 0.60) / 1e6)
    assert costs["r-mystery"] is None and costs["no-usage"] is None
    warnings = [r for r in caplog.records if "no price for this model" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].name == "steer_llm_sdk"


def test_cost_tracking_off_leaves_cost_none(make_collector, sink):
    collector = make_collector([sink])
    m = RequestMetrics(1e12, "r", "openai", "gpt-4o")
    m.set_usage(10, 10)
    collector.record(m)
    assert collector.flush(5) and sink.records[0].cost_usd is None
