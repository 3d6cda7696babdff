"""Load the tokenizer and the sequence-classification model for a run.

The head is found on a weightless (meta-device) copy first, so a method can keep it
out of quantization before the real weights load.
"""

from __future__ import annotations

import torch

from bench import sources
from bench.config import Config
from bench.methods.base import head_module_names


def load_tokenizer(cfg: Config):
    from transformers import AutoTokenizer

    location = sources.model_location(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(location, **sources.pretrained_kwargs(cfg.model))
    if tokenizer.pad_token is None:  # Llama-style tokenizers ship without one
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_config(cfg: Config, label_names: list[str], tokenizer):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(
        sources.model_location(cfg.model), num_labels=len(label_names),
        id2label=dict(enumerate(label_names)), label2id={n: i for i, n in enumerate(label_names)},
        **sources.pretrained_kwargs(cfg.model),
    )
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
    return config


def head_names(config) -> list[str]:
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        skeleton = AutoModelForSequenceClassification.from_config(config)
    return head_module_names(skeleton)


def load_model(cfg: Config, config, extra_kwargs: dict, device: str):
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "newly initialized head" notice is expected here
    hf_logging.disable_progress_bar()
    model = AutoModelForSequenceClassification.from_pretrained(
        sources.model_location(cfg.model), config=config, **sources.pretrained_kwargs(cfg.model), **extra_kwargs,
    )
    if "device_map" not in extra_kwargs:
        model.to(device)
    return model
