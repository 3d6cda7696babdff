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
from bench.plan import RunPlan, adalora_schedule, steps_for
from bench.prompts import split_options


def check(plans: list[RunPlan]) -> None:
    """Raise ConfigError naming the key for the first problem found."""
    train_sizes: dict[str, int] = {}
    detected: dict[str, str] = {}
    models: set[str] = set()
    for plan in plans:
        cfg = plan.cfg
        card = cost.load_price_card(cfg.cost.price_card)
        sources.model_location(cfg.model)
        model_key = json.dumps([asdict(cfg.model), cfg.method.name, cfg.method.target_modules,
                                cfg.method.peft_options], sort_keys=True, default=str)
        if model_key not in models:
            _check_model_and_method(cfg)
            models.add(model_key)
        options = split_options(cfg)
        data_key = json.dumps([asdict(cfg.data), options], sort_keys=True)
        if data_key not in train_sizes:
            train_sizes[data_key] = len(sources.build_splits(cfg.data, **options).train_texts)
        steps = steps_for(cfg, train_sizes[data_key])
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


def _check_model_and_method(cfg) -> None:
    """Load the model's config (no weights), find its head and resolve the method's targets."""
    import dataclasses

    import torch
    from transformers import AutoConfig

    from bench import models
    from bench.config import did_you_mean
    from bench.methods.base import head_module_names, resolve_targets

    kind = "causal LM" if cfg.task == "causal_lm" else "sequence classifier"
    try:
        location, kwargs = models.pretrained_args(cfg)
        config = AutoConfig.from_pretrained(location, **({"num_labels": 2} if cfg.task == "seq_cls" else {}), **kwargs)
        with torch.device("meta"):
            skeleton = models.auto_class(cfg).from_config(config)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"model.id: cannot load '{cfg.model.id}' as a {kind}: "
                          f"{str(exc).strip().splitlines()[0][:200]}") from None
    if cfg.method.name == "full":
        return
    resolve_targets(skeleton, cfg.method, head_module_names(skeleton))
    from peft import AdaLoraConfig, LoraConfig

    config_cls = AdaLoraConfig if cfg.method.name == "adalora" else LoraConfig
    known = {f.name for f in dataclasses.fields(config_cls)}
    for key in cfg.method.peft_options:
        if key not in known:
            raise ConfigError(f"method.peft_options.{key}: not an option of peft's {config_cls.__name__}"
                              + did_you_mean(key, known))
