"""Checks a sweep before anything runs, so bad input costs nothing and writes nothing.

Loads each distinct dataset once (columns, labels, paths), resolves each model
location, checks causal_lm formatting against the real tokenizer (the answer fits
``data.max_length``, the chat template setting is possible), prices the device the runs will use, and checks step-dependent settings
(AdaLoRA's schedule) against the real training-set size.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from bench import sources
from bench.config import ConfigError
from bench.measure import cost
from bench.plan import RunPlan, adalora_schedule, steps_for
from bench.prompts import split_options


def check(plans: list[RunPlan]) -> None:
    """Raise ConfigError naming the key for the first problem found."""
    splits: dict[str, sources.Splits] = {}
    formats: set[str] = set()
    detected: dict[str, str] = {}
    models: set[str] = set()
    for plan in plans:
        cfg = plan.cfg
        card = cost.load_price_card(cfg.cost.price_card)
        if cfg.cost.api_price_card:
            cost.load_api_price_card(cfg.cost.api_price_card)
        sources.model_location(cfg.model)
        model_key = json.dumps([asdict(cfg.model), cfg.method.name, cfg.method.target_modules,
                                cfg.method.peft_options], sort_keys=True, default=str)
        if model_key not in models:
            _check_model_and_method(cfg)
            models.add(model_key)
        options = split_options(cfg)
        data_key = json.dumps([asdict(cfg.data), options], sort_keys=True)
        if data_key not in splits:
            splits[data_key] = sources.build_splits(cfg.data, **options)
        if cfg.task == "causal_lm":
            format_key = json.dumps([asdict(cfg.model), asdict(cfg.prompt), data_key, cfg.data.max_length])
            if format_key not in formats:
                _check_formatting(cfg, splits[data_key])
                formats.add(format_key)
        steps = steps_for(cfg, len(splits[data_key].train_texts))
        if cfg.method.name == "adalora":
            adalora_schedule(steps, cfg.method.tinit, cfg.method.tfinal)
        key_env = cfg.serve.api_key_env
        if cfg.serve.enabled and cfg.serve.engine == "openai" and key_env and not os.environ.get(key_env):
            raise ConfigError(f"serve.api_key_env: environment variable {key_env} is not set (it holds the "
                              "endpoint's API key)")
        if cfg.serve.enabled and cfg.serve.engine == "vllm" and not Path(cfg.serve.vllm_python).is_file():
            raise ConfigError(f"serve.vllm_python: '{cfg.serve.vllm_python}' not found; install vLLM with "
                              "`make setup-vllm` or point it at an interpreter that has vLLM")
        if cfg.train.device not in detected:
            detected[cfg.train.device] = _device_name(cfg.train.device)
        cost.select_device(card, cfg.cost.device, detected[cfg.train.device])


def _check_formatting(cfg, splits) -> None:
    """causal_lm: the tokenizer loads, the chat template setting fits it, and every label's answer
    fits ``data.max_length`` with the shortest possible text."""
    from bench import models
    from bench.prompts import Formatter

    try:
        tokenizer = models.load_tokenizer(cfg)
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"model.id: cannot load the tokenizer of '{cfg.model.id}': "
                          f"{str(exc).strip().splitlines()[0][:200]}") from None
    formatter = Formatter(tokenizer, cfg.prompt, splits.label_names, cfg.data.max_length)
    fields = {name: "x" for name in (splits.train_fields[0] if splits.train_fields else {})}
    labels = range(len(splits.label_names)) if splits.label_names else splits.train_labels[:1]
    for label in labels:
        formatter.encode("x", label, fields)


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

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # architecture notices are not errors; real problems raise
    kind = "causal LM" if cfg.task == "causal_lm" else "sequence classifier"
    try:
        location, kwargs = models.pretrained_args(cfg)
        config = AutoConfig.from_pretrained(location, **({"num_labels": 2} if cfg.task == "seq_cls" else {}), **kwargs)
        with torch.device("meta"):
            skeleton = models.auto_class(cfg).from_config(config)
    except ConfigError:
        raise
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
