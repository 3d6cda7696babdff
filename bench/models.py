"""Load the tokenizer and the model of a run: a sequence classifier or a causal LM.

The head is found on a weightless (meta-device) copy first, so a method can keep it
out of quantization before the real weights load. A GGUF checkpoint (``model.gguf_file``
or a ``.gguf`` path) is dequantized by transformers into a dense model that trains and
saves like any other; QLoRA re-quantizes that dense model to 4-bit with bitsandbytes.
"""

from __future__ import annotations

import tempfile

import torch

from bench import sources
from bench.config import Config
from bench.methods.base import head_module_names


def pretrained_args(cfg: Config) -> tuple[str, dict]:
    """(location, from_pretrained kwargs) including the GGUF file name where there is one."""
    location, gguf = sources.gguf_parts(cfg.model)
    kwargs = sources.pretrained_kwargs(cfg.model)
    if gguf:
        kwargs["gguf_file"] = gguf
    return location, kwargs


def auto_class(cfg: Config):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForCausalLM if cfg.task == "causal_lm" else AutoModelForSequenceClassification


def load_tokenizer(cfg: Config):
    from transformers import AutoTokenizer

    location, kwargs = pretrained_args(cfg)
    tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    if tokenizer.pad_token is None:  # Llama-style tokenizers ship without one
        tokenizer.pad_token = tokenizer.eos_token
    # Training pads on the right (labels mask the padding); generation pads on the left explicitly.
    tokenizer.padding_side = "right"
    return tokenizer


def model_config(cfg: Config, label_names: list[str], tokenizer):
    from transformers import AutoConfig

    location, kwargs = pretrained_args(cfg)
    labels = {}
    if cfg.task == "seq_cls":
        labels = {"num_labels": len(label_names), "id2label": dict(enumerate(label_names)),
                  "label2id": {n: i for i, n in enumerate(label_names)}}
    config = AutoConfig.from_pretrained(location, **labels, **kwargs)
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
    return config


def head_names(config, cfg: Config) -> list[str]:
    with torch.device("meta"):
        skeleton = auto_class(cfg).from_config(config)
    return head_module_names(skeleton)


def _gguf_quantization():
    """Dense dequantization of GGUF weights (the only kind older transformers versions load)."""
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def load_model(cfg: Config, config, extra_kwargs: dict, device: str):
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "newly initialized head" notice is expected here
    hf_logging.disable_progress_bar()
    auto = auto_class(cfg)
    location, kwargs = pretrained_args(cfg)
    if "gguf_file" in kwargs:
        dense_kwargs = {**kwargs, **_gguf_quantization()}
        if "quantization_config" in extra_kwargs:
            # GGUF -> dense -> 4-bit: save the dequantized weights once, reload them quantized.
            dense = auto.from_pretrained(location, config=config, **dense_kwargs)
            with tempfile.TemporaryDirectory(prefix="bench-dense-") as tmp:
                dense.save_pretrained(tmp)
                del dense
                model = auto.from_pretrained(tmp, config=config, local_files_only=True, **extra_kwargs)
        else:
            model = auto.from_pretrained(location, config=config, **dense_kwargs, **extra_kwargs)
    else:
        model = auto.from_pretrained(location, config=config, **kwargs, **extra_kwargs)
    if "device_map" not in extra_kwargs:
        model.to(device)
    return model
