"""LoRA: low-rank adapters on the target linear layers.

Sequence classification trains its new head in full; a causal LM keeps its pretrained
``lm_head`` frozen (and out of the adapters) like the rest of the base.
"""

from __future__ import annotations

from peft import LoraConfig, TaskType, get_peft_model

from bench.config import ConfigError
from bench.methods.base import Method, resolve_targets


def peft_kwargs(method: Method, model) -> dict:
    """Keyword arguments common to LoRA-family peft configs, plus the config's extras."""
    method.targets = resolve_targets(model, method.cfg, method.ctx.head_names)
    kwargs = {
        "r": method.cfg.r,
        "lora_alpha": method.cfg.alpha,
        "lora_dropout": method.cfg.dropout,
        "target_modules": method.targets,
        "task_type": TaskType.CAUSAL_LM if method.ctx.task == "causal_lm" else TaskType.SEQ_CLS,
        # A classification head is new: train it in full (only head modules that hold weights).
        "modules_to_save": None if method.ctx.task == "causal_lm" else
        [n for n in method.ctx.head_names if any(True for _ in getattr(model, n).parameters())] or None,
    }
    kwargs.update(method.cfg.peft_options)
    return kwargs


def build_peft_config(config_cls, kwargs: dict):
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"method.peft_options: {config_cls.__name__} rejected the options: {exc}") from None


class LoraMethod(Method):
    name = "lora"

    def wrap(self, model):
        return get_peft_model(model, build_peft_config(LoraConfig, peft_kwargs(self, model)))
