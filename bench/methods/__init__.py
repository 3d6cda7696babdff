"""Fine-tuning methods, one module each, behind one small interface (`Method`).

A method may change how the base model is loaded (QLoRA quantizes it), wraps the
loaded model (peft adapters), may act after every optimizer step (AdaLoRA's rank
allocation), and reports what it did (final AdaLoRA ranks, quantized layers).
"""

from __future__ import annotations

from bench.config import ConfigError, did_you_mean
from bench.methods.adalora import AdaLoraMethod
from bench.methods.base import Method
from bench.methods.full import FullMethod
from bench.methods.lora import LoraMethod
from bench.methods.qlora import QLoraMethod

REGISTRY: dict[str, type[Method]] = {
    "lora": LoraMethod,
    "qlora": QLoraMethod,
    "adalora": AdaLoraMethod,
    "full": FullMethod,
}


def get_method(name: str) -> type[Method]:
    if name not in REGISTRY:
        raise ConfigError(f"method.name: unknown method '{name}'" + did_you_mean(name, REGISTRY)
                          + f"; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]
