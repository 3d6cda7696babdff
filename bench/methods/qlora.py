"""QLoRA: LoRA on a base whose linear layers are stored in 4-bit NF4 (bitsandbytes).

The task head is never quantized (it is skipped in the quantization config). A run
that cannot quantize fails with an error; it never falls back to plain LoRA.
"""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

from bench.methods.base import Method, base_linear_names
from bench.methods.lora import build_peft_config, peft_kwargs

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class QuantizationError(RuntimeError):
    """The base could not be loaded in 4-bit."""


def compute_dtype(name: str, precision: str) -> torch.dtype:
    """The 4-bit layers' compute dtype: the config's, or the run's training precision."""
    if name != "auto":
        return DTYPES[name]
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


class QLoraMethod(Method):
    name = "qlora"

    def load_kwargs(self) -> dict:
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError as exc:
            raise QuantizationError(f"qlora needs bitsandbytes: {exc}") from None
        self.dtype = compute_dtype(self.cfg.compute_dtype, self.ctx.precision)
        quant = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=self.cfg.quant_type,
            bnb_4bit_use_double_quant=self.cfg.double_quant,
            bnb_4bit_compute_dtype=self.dtype,
            llm_int8_skip_modules=list(self.ctx.head_names),  # keep the classification head in full precision
        )
        return {"quantization_config": quant, "device_map": {"": self.ctx.device}}

    def wrap(self, model):
        import bitsandbytes as bnb

        linear = base_linear_names(model, self.ctx.head_names)
        modules = dict(model.named_modules())
        not_quantized = [n for n in linear if not isinstance(modules[n], bnb.nn.Linear4bit)]
        if not linear or not_quantized:
            raise QuantizationError(
                f"qlora: {len(not_quantized)} of {len(linear)} base linear layers are not 4-bit "
                f"(e.g. {', '.join(not_quantized[:3])}); refusing to run as plain LoRA"
            )
        self.quantized_layers = len(linear)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return get_peft_model(model, build_peft_config(LoraConfig, peft_kwargs(self, model)))

    def report(self, model) -> dict:
        return {
            **super().report(model),
            "quantization": {
                "library": "bitsandbytes",
                "quant_type": self.cfg.quant_type,
                "double_quant": self.cfg.double_quant,
                "compute_dtype": str(self.dtype).replace("torch.", ""),
                "quantized_linear_layers": self.quantized_layers,
                "unquantized_head": list(self.ctx.head_names),
            },
        }
