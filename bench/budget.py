"""Spend budgets: project a run's cost, stop (or warn) before it breaks a limit.

A run's spend is the device time it holds: its wall seconds over all phases x devices
x the hourly price. Before a run starts, its spend is projected from earlier records
of the same model and method in the results directory (scaled by optimizer steps);
during training the projection is refined from the measured speed of the first steps.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from bench.config import BudgetConfig

REFINE_AFTER_STEPS = 5  # steps of measured speed before the in-run projection is trusted


class BudgetExceeded(RuntimeError):
    """A run (or the sweep) would exceed its budget."""


def spend(rec: dict) -> tuple[float, float]:
    """(usd, device_hours) a record accounts for, finished or not."""
    cost = rec.get("cost") or {}
    return float(cost.get("run_usd") or 0.0), float(cost.get("run_device_hours") or 0.0)


@dataclass
class Allowance:
    """What one run may still spend; handed to the run process."""

    max_usd: float | None = None
    max_device_hours: float | None = None
    on_breach: str = "stop"
    alerts: list = field(default_factory=list)
    _warned: set = field(default_factory=set, repr=False)

    def check(self, projected_usd: float, projected_device_hours: float, when: str) -> None:
        """Raise BudgetExceeded (stop) or add an alert (warn) when a projection breaks a limit."""
        problems = {}
        if self.max_usd is not None and projected_usd > self.max_usd:
            problems["usd"] = f"{when}: projected ${projected_usd:.4g} > allowed ${self.max_usd:.4g}"
        if self.max_device_hours is not None and projected_device_hours > self.max_device_hours:
            problems["device_hours"] = (f"{when}: projected {projected_device_hours:.4g} device-h > allowed "
                                        f"{self.max_device_hours:.4g} device-h")
        for limit, problem in problems.items():
            if self.on_breach == "stop":
                raise BudgetExceeded(problem)
            if limit not in self._warned:  # warn once per limit, not at every step
                self._warned.add(limit)
                self.alerts.append(problem)
                print(f"bench: budget alert: {problem}", file=sys.stderr, flush=True)


def project_from_history(records: list[dict], config: dict, planned_steps: int | None) -> tuple[float, float] | None:
    """(usd, device_hours) for a planned run, from ok records of the same model and method."""
    if not planned_steps:
        return None
    same = [r for r in records if r["status"] == "ok"
            and r["config"]["model"]["id"] == config["model"]["id"] and r["method"] == config["method"]["name"]
            and r["config"]["train"]["batch_size"] == config["train"]["batch_size"]
            and r.get("train", {}).get("optimizer_steps")]
    if not same:
        return None
    rec = same[-1]
    scale = planned_steps / rec["train"]["optimizer_steps"]
    usd, hours = spend(rec)
    return usd * scale, hours * scale


class SweepBudget:
    """Tracks the sweep's spend and hands each run what it may still spend."""

    def __init__(self, cfg: BudgetConfig, prior: list[dict]):
        self.cfg = cfg
        self.usd = sum(spend(r)[0] for r in prior)
        self.device_hours = sum(spend(r)[1] for r in prior)

    def allowance(self) -> Allowance:
        limits = [v for v in (self.cfg.max_usd_per_run,
                              None if self.cfg.max_usd_total is None else self.cfg.max_usd_total - self.usd)
                  if v is not None]
        hours = None if self.cfg.max_device_hours_total is None else self.cfg.max_device_hours_total - self.device_hours
        return Allowance(max_usd=min(limits) if limits else None, max_device_hours=hours, on_breach=self.cfg.on_breach)

    def add(self, rec: dict) -> None:
        usd, hours = spend(rec)
        self.usd += usd
        self.device_hours += hours
