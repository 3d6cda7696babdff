"""The method interface and the helpers methods share: head detection, targets, counts."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from bench.config import ConfigError, MethodConfig


@dataclass
class MethodContext:
    """What a method needs to know beyond its own config section."""

    total_steps: int  # optimizer steps of the run (AdaLoRA's total_step)
    device: str
    precision: str  # fp32 | bf16 | fp16
    head_names: list = field(default_factory=list)  # top-level modules that are the task head
    task: str = "seq_cls"  # seq_cls: the head is new and trained in full; causal_lm: lm_head is pretrained


def head_module_names(model: nn.Module) -> list[str]:
    """Top-level children that are not the pretrained base (e.g. ['classifier'] for BERT)."""
    prefix = getattr(model, "base_model_prefix", "")
    if not prefix or not hasattr(model, prefix):
        raise ConfigError("model.id: cannot tell the task head from the base for this architecture")
    return [name for name, _ in model.named_children() if name != prefix]


def is_linear(module: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (nn.Linear, Conv1D))


def base_linear_names(model: nn.Module, head_names: list[str]) -> list[str]:
    """Full names of every linear layer in the base model (the head excluded)."""
    heads = tuple(head_names)
    return [
        name for name, module in model.named_modules()
        if is_linear(module) and name and name.split(".")[0] not in heads
    ]


def resolve_targets(model: nn.Module, cfg: MethodConfig, head_names: list[str]) -> list[str]:
    """Full module names to adapt; an unmatched target is an error listing what exists."""
    linear = base_linear_names(model, head_names)
    short_names = sorted({n.rsplit(".", 1)[-1] for n in linear})
    if cfg.target_modules == "all-linear":
        return linear
    if cfg.target_modules == "auto":
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as defaults

        model_type = getattr(model.config, "model_type", None)
        if model_type not in defaults:
            raise ConfigError(
                f"method.target_modules: no default targets for model type '{model_type}'; "
                f"set a list from the linear modules: {', '.join(short_names)}"
            )
        wanted = list(defaults[model_type])
    else:
        wanted = [str(t) for t in cfg.target_modules]
    chosen = []
    for target in wanted:
        hits = [n for n in linear if n == target or n.endswith("." + target)]
        if not hits:
            raise ConfigError(
                f"method.target_modules: '{target}' matches no linear module of the base; "
                f"linear modules: {', '.join(short_names)}"
            )
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def logical_numel(param: torch.Tensor) -> int:
    """Elements a parameter stands for: a packed 4-bit tensor counts as its unpacked shape."""
    quant_state = getattr(param, "quant_state", None)
    if quant_state is not None and getattr(quant_state, "shape", None) is not None:
        return int(torch.Size(quant_state.shape).numel())
    return param.numel()


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, 4-bit weights counted at their 16-bit size."""
    trainable = total = 0
    for param in model.parameters():
        n = logical_numel(param)
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total


class Method:
    """Base class: override what differs. The default is a no-op for every hook."""

    name = "base"

    def __init__(self, cfg: MethodConfig, ctx: MethodContext):
        self.cfg = cfg
        self.ctx = ctx
        self.targets: list[str] = []

    def load_kwargs(self) -> dict:
        """Extra ``from_pretrained`` keyword arguments (e.g. a quantization config)."""
        return {}

    def wrap(self, model: nn.Module) -> nn.Module:
        """Turn the loaded base model into the model to train."""
        raise NotImplementedError

    def after_optimizer_step(self, model: nn.Module, global_step: int) -> None:
        """Called after ``optimizer.step()`` and before ``zero_grad()``, every step."""

    def report(self, model: nn.Module) -> dict:
        """What the method did, for the run record."""
        return {"target_modules": self.targets, "adapter_b_norm": adapter_b_norm(model)}


def adapter_b_norm(model: nn.Module) -> float | None:
    """Frobenius norm over all LoRA B matrices: 0 at initialization, so > 0 shows the adapters trained."""
    squares = [float(p.detach().float().pow(2).sum()) for n, p in model.named_parameters() if ".lora_B." in n]
    return sum(squares) ** 0.5 if squares else None
