"""Percentiles and cost arithmetic against hand-computed values."""

from __future__ import annotations

import pytest

from bench.config import ConfigError
from bench.measure import cost
from bench.measure.stats import percentile, summarize


def test_percentile_linear_interpolation():
    values = [10.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0, 5.0]  # 1..10 shuffled
    # position (n-1) x q/100 over sorted values: p50 -> 4.5 -> 5.5; p90 -> 8.1 -> 9.1; p99 -> 8.91 -> 9.91
    assert percentile(values, 50) == pytest.approx(5.5)
    assert percentile(values, 90) == pytest.approx(9.1)
    assert percentile(values, 99) == pytest.approx(9.91)
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 10.0
    assert percentile([42.0], 99) == 42.0


def test_percentile_rejects_bad_input():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_reports_n_and_order():
    s = summarize([3.0, 1.0, 2.0, 100.0])
    assert s["n"] == 4 and s["mean"] == pytest.approx(26.5) and s["max"] == 100.0
    assert s["p50"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"]
    assert s["p50"] == pytest.approx(2.5)


def test_training_cost():
    # 30 minutes on 2 devices at $3/device-hour = 1 device-hour x ... = 2 x 0.5 x 3 = $3.00
    assert cost.device_hours(1800, 2) == pytest.approx(1.0)
    assert cost.device_time_usd(1800, 2, 3.0) == pytest.approx(3.0)


def test_serving_cost_per_1k_requests():
    # $0.0765/h at 50 requests/s: 180,000 requests per hour -> 0.0765 / 180 per 1K = $0.000425
    assert cost.usd_per_1k_requests(50.0, 1, 0.0765) == pytest.approx(0.000425)
    assert cost.usd_per_1k_requests(50.0, 4, 1.0) == pytest.approx(4.0 / 180.0)
    with pytest.raises(ValueError):
        cost.usd_per_1k_requests(0.0, 1, 1.0)


def test_energy_cost():
    assert cost.energy_usd(2.5, 0.13) == pytest.approx(0.325)


@pytest.fixture
def card(tmp_path):
    path = tmp_path / "card.yaml"
    path.write_text("devices:\n  h100:\n    usd_per_hour: 6.88\n    match: [h100]\n"
                    "  cpu:\n    usd_per_hour: 0.08\n    match: [cpu]\n")
    return cost.load_price_card(path)


def test_device_matching(card):
    assert cost.select_device(card, "auto", "NVIDIA H100 80GB HBM3")[0] == "h100"
    assert cost.select_device(card, "auto", "cpu: AMD EPYC")[1]["usd_per_hour"] == 0.08
    assert cost.select_device(card, "h100", "anything")[0] == "h100"


def test_device_without_price(card):
    with pytest.raises(ConfigError, match="no price for device 'NVIDIA A10G'"):
        cost.select_device(card, "auto", "NVIDIA A10G")
    with pytest.raises(ConfigError, match="no price for device 'h10'.*did you mean 'h100'"):
        cost.select_device(card, "h10", "x")


def test_bad_price_cards(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        cost.load_price_card(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices:\n  x:\n    usd_per_hour: -1\n")
    with pytest.raises(ConfigError, match="devices.x.usd_per_hour"):
        cost.load_price_card(bad)


def test_shipped_price_card_has_sources():
    card = cost.load_price_card("configs/prices/cloud.yaml")
    for name, entry in card["devices"].items():
        assert entry["source"] and entry["as_of"] and entry["usd_per_hour"] > 0, name
    assert card["usd_per_kwh"]["source"]


def test_the_most_specific_price_entry_wins():
    card = cost.load_price_card("configs/prices/cloud.yaml")
    # "l4" is a substring of "l40s": an L40S must get the L40S price, not the L4's
    assert cost.select_device(card, "auto", "NVIDIA L40S")[0] == "l40s"
    assert cost.select_device(card, "auto", "NVIDIA L4")[0] == "l4"
    assert cost.select_device(card, "auto", "NVIDIA A100-SXM4-40GB")[0] == "a100-40gb"


def test_shipped_api_price_card_has_sources():
    card = cost.load_api_price_card("configs/prices/api.yaml")
    for name, entry in card["models"].items():
        assert entry["source"] and entry["as_of"] and entry["usd_per_1m_output"] > entry["usd_per_1m_input"] > 0, name
