"""Serving capacity, utilization and total cost of ownership at a stated traffic.

  avg output tokens/s  = requests_per_day x output_tokens / 86,400
  peak output tokens/s = avg x peak_to_average
  replicas             = ceil(peak / capacity at SLO of one replica)   (at least 1)
  utilization          = avg / (replicas x capacity)   (consumed / provisioned throughput)
  serving $ per month  = replicas x devices x usd_per_hour x HOURS_PER_MONTH
  TCO                  = training $ + serving $ per month x months
  $ / 1M output tokens = usd_per_hour x devices / (3600 x tokens/s x utilization) x 1e6
An API model at the same traffic costs requests x (input x $in + output x $out) / 1e6.
"""

from __future__ import annotations

import math

HOURS_PER_MONTH = 730.0  # 8,760 hours a year / 12
DAYS_PER_MONTH = 365.0 / 12


def usd_per_1m_output_tokens(usd_per_hour: float, devices: int, tokens_per_s: float, utilization: float = 1.0) -> float:
    if tokens_per_s <= 0 or not 0 < utilization <= 1:
        raise ValueError("tokens_per_s must be > 0 and utilization in (0, 1]")
    return usd_per_hour * devices / (3600.0 * tokens_per_s * utilization) * 1e6


def self_hosted(traffic: dict, capacity_tokens_s: float, usd_per_hour: float, devices: int, train_usd: float) -> dict:
    """Replicas, utilization, monthly serving $ and TCO for one run at ``traffic``."""
    if capacity_tokens_s <= 0:
        raise ValueError("capacity_tokens_s must be > 0")
    avg = traffic["requests_per_day"] * traffic["output_tokens"] / 86_400.0
    peak = avg * traffic["peak_to_average"]
    replicas = max(1, math.ceil(peak / capacity_tokens_s - 1e-12))
    monthly = replicas * devices * usd_per_hour * HOURS_PER_MONTH
    return {
        "avg_output_tokens_s": avg,
        "peak_output_tokens_s": peak,
        "capacity_output_tokens_s_per_replica": capacity_tokens_s,
        "replicas": replicas,
        "utilization": avg / (replicas * capacity_tokens_s),
        "serve_usd_per_month": monthly,
        "months": traffic["months"],
        "train_usd": train_usd,
        "usd": train_usd + monthly * traffic["months"],
    }


def api(traffic: dict, usd_per_1m_input: float, usd_per_1m_output: float) -> dict:
    """An API model's bill for the same traffic over the same months."""
    per_request = (traffic["input_tokens"] * usd_per_1m_input + traffic["output_tokens"] * usd_per_1m_output) / 1e6
    monthly = per_request * traffic["requests_per_day"] * DAYS_PER_MONTH
    return {"usd_per_request": per_request, "serve_usd_per_month": monthly, "usd": monthly * traffic["months"]}


def break_even_months(a: dict, b: dict) -> float | None:
    """Months after which the TCOs of two runs cross (None if they never do)."""
    slope = a["serve_usd_per_month"] - b["serve_usd_per_month"]
    if slope == 0:
        return None
    months = (b["train_usd"] - a["train_usd"]) / slope
    return months if months > 0 else None
