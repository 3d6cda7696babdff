"""Checks a sweep before anything runs, so bad input costs nothing and writes nothing.

Loads each distinct dataset once (columns, labels, paths), resolves each model
location, prices the device the runs will use, and checks step-dependent settings
(AdaLoRA's schedule) against the real training-set size.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from bench import sources
from bench.config import ConfigError
from bench.measure import cost
from bench.plan import RunPlan, adalora_schedule, total_steps


def check(plans: list[RunPlan]) -> None:
    """Raise ConfigError naming the key for the first problem found."""
    train_sizes: dict[str, int] = {}
    detected: dict[str, str] = {}
    for plan in plans:
        cfg = plan.cfg
        card = cost.load_price_card(cfg.cost.price_card)
        sources.model_location(cfg.model)
        data_key = json.dumps(asdict(cfg.data), sort_keys=True)
        if data_key not in train_sizes:
            train_sizes[data_key] = len(sources.build_splits(cfg.data).train_texts)
        t = cfg.train
        steps = total_steps(train_sizes[data_key], t.batch_size, t.grad_accum, t.epochs, t.max_steps)
        if cfg.method.name == "adalora":
            adalora_schedule(steps, cfg.method.tinit, cfg.method.tfinal)
        if cfg.train.device not in detected:
            detected[cfg.train.device] = _device_name(cfg.train.device)
        cost.select_device(card, cfg.cost.device, detected[cfg.train.device])


def _device_name(wanted: str) -> str:
    from bench import device

    try:
        return device.describe(device.pick_device(wanted))["name"]
    except RuntimeError as exc:
        raise ConfigError(str(exc)) from None
