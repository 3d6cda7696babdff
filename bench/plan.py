"""Config -> run plans: sweep expansion, step counts and stable run ids. No torch import.

``sweep`` maps dotted keys to lists of values (a grid: every combination), and may
hold ``variants``: a list of {dotted key: value} mappings crossed with the grid, for
settings that go together (e.g. full fine-tuning with its own learning rate).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from bench import config as config_mod
from bench.config import Config, ConfigError


@dataclass
class RunPlan:
    run_id: str
    index: int  # 1-based position in the sweep
    total: int  # runs in the sweep
    overrides: dict  # the sweep point: dotted key -> value
    config: dict  # the resolved config (sweep section removed)
    planned_steps: int | None  # optimizer steps, when data.train_size fixes it

    @property
    def cfg(self) -> Config:
        return config_mod.from_dict(self.config)

    def to_dict(self) -> dict:
        return asdict(self)


def total_steps(n_train: int, batch_size: int, grad_accum: int, epochs: float, max_steps: int | None) -> int:
    """Optimizer steps a run takes: ceil(epochs x ceil(n_train / (batch x accum)))."""
    per_epoch = math.ceil(n_train / (batch_size * grad_accum))
    steps = math.ceil(epochs * per_epoch)
    return min(steps, max_steps) if max_steps else steps


def steps_for(cfg: Config, n_train: int) -> int:
    """Optimizer steps of a run of ``cfg`` over ``n_train`` training examples."""
    t = cfg.train
    return total_steps(n_train, t.batch_size, t.grad_accum, t.epochs, t.max_steps)


def adalora_schedule(total: int, tinit: int | None, tfinal: int | None) -> tuple[int, int]:
    """AdaLoRA (tinit, tfinal): defaults 10% warm-up and 30% final phase; a budgeting phase must remain."""
    tinit = max(1, int(0.1 * total)) if tinit is None else tinit
    tfinal = max(1, int(0.3 * total)) if tfinal is None else tfinal
    if tinit < 0 or tfinal < 0:
        raise ConfigError(f"method.tinit/method.tfinal: must be >= 0 (got {tinit}, {tfinal})")
    if tinit + tfinal >= total:
        raise ConfigError(
            f"method.tinit + method.tfinal: {tinit} + {tfinal} >= {total} total steps leaves "
            "no budgeting phase; lower them or train longer"
        )
    return tinit, tfinal


def run_id_for(resolved: dict) -> str:
    """Stable id from the resolved config (tags included: the same run for two teams is two spends)."""
    material = {k: v for k, v in resolved.items() if k != "sweep"}
    digest = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:10]
    name = re.sub(r"[^a-z0-9_-]+", "-", str(resolved.get("name", "run")).lower()).strip("-") or "run"
    method = resolved.get("method", {}).get("name", "method")
    return f"{name[:40]}-{method}-{digest}"


def _sweep_points(sweep: dict) -> list[dict]:
    sweep = dict(sweep or {})
    variants = sweep.pop("variants", None)
    if variants is not None:
        if not isinstance(variants, list) or not variants:
            raise ConfigError("sweep.variants: must be a non-empty list of mappings")
        for i, v in enumerate(variants):
            if not isinstance(v, dict) or not v or not all(isinstance(k, str) for k in v):
                raise ConfigError(f"sweep.variants[{i}]: must be a non-empty mapping of dotted keys")
    for key, values in sweep.items():
        if not isinstance(key, str):
            raise ConfigError(f"sweep: keys must be dotted key names (got {key!r})")
        if not isinstance(values, list):
            raise ConfigError(f"sweep.{key}: must be a list of values (got {values!r})")
        if not values:
            raise ConfigError(f"sweep.{key}: empty list")
    keys = list(sweep)
    grid = [dict(zip(keys, combo)) for combo in itertools.product(*(sweep[k] for k in keys))]
    if variants is None:
        return grid
    return [{**g, **v} for v in variants for g in grid]


def expand(raw: dict) -> list[RunPlan]:
    """Expand a loaded (raw) config into validated run plans, in sweep order."""
    base = copy.deepcopy(raw)
    sweep = base.pop("sweep", None) or {}
    if not isinstance(sweep, dict):
        raise ConfigError("sweep: must be a mapping of dotted keys to lists")
    points = _sweep_points(sweep)
    plans, seen = [], set()
    for point in points:
        data = copy.deepcopy(base)
        for key, value in point.items():
            config_mod.set_dotted(data, key, value, path_prefix="sweep.")
        cfg = config_mod.from_dict(data)
        resolved = cfg.to_dict()
        resolved.pop("sweep")
        run_id = run_id_for(resolved)
        if run_id in seen:
            continue  # two sweep points that resolve to the same run
        seen.add(run_id)
        steps = None
        if cfg.data.train_size:
            steps = steps_for(cfg, cfg.data.train_size)
        plans.append(RunPlan(run_id, 0, 0, point, resolved, steps))
    for i, plan in enumerate(plans, 1):
        plan.index, plan.total = i, len(plans)
    return plans


def describe(plan: RunPlan) -> str:
    over = ", ".join(f"{k}={v}" for k, v in plan.overrides.items()) or "(no sweep)"
    steps = f"{plan.planned_steps} steps" if plan.planned_steps else "steps set by data size"
    return f"[{plan.index}/{plan.total}] {plan.run_id}  {over}  ({steps})"


