"""Serving capacity, utilization and total cost of ownership at a stated traffic.

Capacity is one replica's requests/s at its cost basis (the highest load meeting the SLO):
  avg requests/s       = requests_per_day / 86,400
  peak requests/s      = avg x peak_to_average
  replicas             = ceil(peak / capacity)   (at least 1)
  utilization          = avg / (replicas x capacity)   (consumed / provisioned throughput)
  serving $ per month  = replicas x devices x usd_per_hour x HOURS_PER_MONTH
  TCO                  = training $ + serving $ per month x months
  $ / 1M output tokens = usd_per_hour x devices / (3600 x tokens/s x utilization) x 1e6
An API model at the same traffic costs, per request,
  (input x ((1 - cached) x $in + cached x $cached_in) + output x $out) / 1e6
and per month that x requests_per_day x DAYS_PER_MONTH; it has no training $.
"""

from __future__ import annotations

import math

HOURS_PER_MONTH = 730.0  # 8,760 hours a year / 12
DAYS_PER_MONTH = 365.0 / 12


def usd_per_1m_output_tokens(usd_per_hour: float, devices: int, tokens_per_s: float, utilization: float = 1.0) -> float:
    if tokens_per_s <= 0 or not 0 < utilization <= 1:
        raise ValueError("tokens_per_s must be > 0 and utilization in (0, 1]")
    return usd_per_hour * devices / (3600.0 * tokens_per_s * utilization) * 1e6


def self_hosted(traffic: dict, capacity_requests_s: float, usd_per_hour: float, devices: int,
                train_usd: float) -> dict:
    """Replicas, utilization, monthly serving $ and TCO for one run at ``traffic``."""
    if capacity_requests_s <= 0:
        raise ValueError("capacity_requests_s must be > 0")
    avg = traffic["requests_per_day"] / 86_400.0
    peak = avg * traffic["peak_to_average"]
    replicas = max(1, math.ceil(peak / capacity_requests_s - 1e-9))
    monthly = replicas * devices * usd_per_hour * HOURS_PER_MONTH
    return {
        "avg_requests_s": avg,
        "peak_requests_s": peak,
        "capacity_requests_s_per_replica": capacity_requests_s,
        "replicas": replicas,
        "devices_per_replica": devices,
        "utilization": avg / (replicas * capacity_requests_s),
        "serve_usd_per_month": monthly,
        "months": traffic["months"],
        "train_usd": train_usd,
        "serve_usd": monthly * traffic["months"],
        "usd": train_usd + monthly * traffic["months"],
    }


def api(traffic: dict, price: dict) -> dict:
    """An API model's bill for the same traffic over the same months (``price``: a price card entry)."""
    cached = traffic.get("cached_input_fraction", 0.0)
    cached_price = price.get("usd_per_1m_cached_input", price["usd_per_1m_input"])
    input_usd = traffic["input_tokens"] * ((1 - cached) * price["usd_per_1m_input"] + cached * cached_price)
    per_request = (input_usd + traffic["output_tokens"] * price["usd_per_1m_output"]) / 1e6
    monthly = per_request * traffic["requests_per_day"] * DAYS_PER_MONTH
    return {"usd_per_request": per_request, "serve_usd_per_month": monthly, "months": traffic["months"],
            "train_usd": 0.0, "usd": monthly * traffic["months"]}


def capacity_of(serve: dict) -> float | None:
    """Requests/s one replica served at its cost basis (older records: the basis batch size's row)."""
    if serve.get("capacity_requests_s"):
        return serve["capacity_requests_s"]
    row = (serve.get("by_batch_size") or {}).get(str(serve.get("cost_basis_batch_size")))
    return (row or {}).get("requests_per_s")


def for_record(rec: dict, traffic: dict) -> dict | None:
    """`self_hosted` for a run record at ``traffic`` (None when it measured no serving capacity)."""
    capacity = capacity_of(rec.get("serve") or {})
    if not capacity:
        return None
    cost = rec["cost"]
    return self_hosted(traffic, capacity, cost["usd_per_hour"], cost.get("devices", 1), cost["train_usd"])


def break_even_months(a: dict, b: dict) -> float | None:
    """Months after which the TCOs of two runs cross (None if they never do)."""
    slope = a["serve_usd_per_month"] - b["serve_usd_per_month"]
    if slope == 0:
        return None
    months = (b["train_usd"] - a["train_usd"]) / slope
    return months if months > 0 else None
