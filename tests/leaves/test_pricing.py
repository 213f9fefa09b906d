"""Prices: matching, the cost formula (cache reads and writes, reasoning), the three sources
and their order, unknown models."""

import json

import pytest

from steer_llm_sdk.observability import MetricsConfig, RequestMetrics
from steer_llm_sdk.pricing import ModelPrice, Pricer, PriceTable, load_pricing


def test_longest_prefix_at_a_boundary():
    table = PriceTable.default()
    assert table.lookup("gpt-4o-mini-2024-07-18") == table.lookup("gpt-4o-mini")
    assert table.lookup("gpt-4o-2024-08-06") == table.lookup("gpt-4o")
    assert table.lookup("gpt-4o") != table.lookup("gpt-4o-mini")
    assert table.lookup("openai:gpt-4o") == table.lookup("gpt-4o")
    assert table.lookup("claude-3-5-haiku-20241022") == ModelPrice(0.80, 4.0, 0.08, 1.0)
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


def test_cache_writes_and_reasoning_at_their_own_rates():
    table = PriceTable({"m": {"input": 2.0, "output": 8.0, "cached_input": 0.5,
                              "cache_write": 2.5, "reasoning": 16.0}})  # fmt: skip
    # 1,000 prompt tokens: 400 read from cache, 300 written to it, 300 plain; 500 completion
    # tokens of which 200 reasoning.
    assert table.cost("m", 1000, 500, 400, 300, 200) == pytest.approx(
        (300 * 2.0 + 400 * 0.5 + 300 * 2.5 + 300 * 8.0 + 200 * 16.0) / 1e6
    )
    # Without those rates: writes at the input rate, reasoning at the output rate.
    plain = PriceTable({"m": (2.0, 8.0)})
    assert plain.cost("m", 1000, 500, 0, 300, 200) == pytest.approx((1000 * 2 + 500 * 8) / 1e6)
    # Anthropic's bundled prices bill 5-minute cache writes at 1.25x input.
    haiku = PriceTable.default().lookup("claude-3-5-haiku-20241022")
    assert haiku.cache_write == pytest.approx(1.25 * haiku.input)


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
    pricer = load_pricing({"my-model": (5, 6)}, environ={"STEER_PRICING_FILE": str(path)})
    assert pricer.overrides.lookup("gpt-4o") == ModelPrice(1.0, 2.0, None)
    assert pricer.overrides.lookup("my-model") == ModelPrice(5.0, 6.0, None)
    assert pricer.cost("openai", "gpt-4o", 10**6, 0) == (1.0, "override")
    assert pricer.cost("openai", "my-model", 0, 10**6) == (6.0, "override")
    with pytest.raises(ValueError, match="STEER_PRICING_FILE"):
        load_pricing(environ={"STEER_PRICING_FILE": str(tmp_path / "missing.json")})
    with pytest.raises(ValueError, match="STEER_PRICE_SOURCE"):
        load_pricing(environ={"STEER_PRICE_SOURCE": "guess"})


def test_sources_in_order_override_genai_prices_bundled():
    pytest.importorskip("genai_prices")
    pricer = load_pricing({"house-model": (1.0, 2.0)}, environ={})
    assert pricer.cost("openai", "house-model", 10**6, 0)[1] == "override"
    cost, source = pricer.cost("openai", "gpt-4o-mini-2024-07-18", 10**6, 10**6)
    assert source == "genai-prices" and cost == pytest.approx(0.15 + 0.60)
    bundled = load_pricing(environ={"STEER_PRICE_SOURCE": "bundled"})
    assert bundled.cost("openai", "gpt-4o-mini", 10**6, 10**6) == (
        pytest.approx(0.75),
        "bundled",
    )
    assert pricer.cost("openai", "no-such-model-anywhere", 1, 1) is None


def test_genai_prices_agree_with_the_package_itself():
    # The cached rates give what genai-prices computes, cache reads and writes included,
    # tiered models (a higher rate past a prompt size) on both sides of the threshold.
    genai_prices = pytest.importorskip("genai_prices")
    pricer = Pricer(None, PriceTable.default())
    cases = [
        ("anthropic", "claude-3-5-haiku-20241022", 5000, 700, 1000, 2000),
        ("openai", "gpt-4o-2024-08-06", 5000, 700, 1000, 0),
        ("gcp.gemini", "gemini-2.5-pro", 100_000, 700, 0, 0),
        ("gcp.gemini", "gemini-2.5-pro", 300_000, 700, 0, 0),
    ]
    for provider, model, prompt, completion, cached, written in cases:
        cost, source = pricer.cost(provider, model, prompt, completion, cached, written)
        usage = genai_prices.Usage(
            input_tokens=prompt,
            output_tokens=completion,
            cache_read_tokens=cached,
            cache_write_tokens=written,
        )
        provider_id = {"gcp.gemini": "google"}.get(provider, provider)
        expected = genai_prices.calc_price(usage, model_ref=model, provider_id=provider_id)
        assert source == "genai-prices"
        assert cost == pytest.approx(float(expected.total_price), rel=1e-9), (model, prompt)


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
    sources = {m.request_id: m.price_source for m in sink.records}
    assert sources["r-house-model"] == "override" and sources["r-mystery"] is None
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
