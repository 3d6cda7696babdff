"""Each method on a tiny BERT built from a config, trained for a few steps on real snippets."""

from __future__ import annotations

import pytest
import torch

from bench import pipeline, plan, record, runner
from bench.budget import Allowance
from bench.config import ConfigError
from bench.methods.base import count_params


def one_plan(raw: dict):
    return plan.expand(raw)[0]


def prepared(raw: dict) -> dict:
    """Run the data and model stages; return the run state (model, method, tokenizer...)."""
    p = one_plan(raw)
    rec = runner.base_record(p)
    state = pipeline.new_state(Allowance())
    for stage in ("data", "model"):
        pipeline.run_stage(stage, p, rec, state)
    return state


@pytest.mark.parametrize("method", ["lora", "qlora", "adalora", "full"])
def test_each_method_trains_and_writes_a_valid_record(make_config, tmp_path, method):
    raw = make_config(method={"name": method, "tinit": 1, "tfinal": 2})
    rec = runner.execute(one_plan(raw), tmp_path)
    assert rec["status"] == "ok", rec.get("error")
    (on_disk,), _ = record.read_all(tmp_path)
    assert on_disk["method"] == method and on_disk["task"] == "seq_cls"
    train = on_disk["train"]
    assert train["optimizer_steps"] == 8 and train["samples"] == 64  # 64 examples / batch 8, one epoch
    # Throughput is counted work over the labelled wall time, nothing else.
    assert train["samples_per_s"] == pytest.approx(train["samples"] / train["wall_s"])
    assert train["tokens_real_per_s"] == pytest.approx(train["tokens_real"] / train["wall_s"])
    assert train["device_hours"] == pytest.approx(train["wall_s"] / 3600)
    assert on_disk["cost"]["train_usd"] == pytest.approx(train["device_hours"] * on_disk["cost"]["usd_per_hour"])
    assert 0 < train["tokens_real"] < train["tokens_padded"]
    assert on_disk["eval"]["n_examples"] == 40 and 0 <= on_disk["quality"]["accuracy"] <= 1
    assert on_disk["serve"]["latency_ms"]["n"] == 12
    assert on_disk["serve"]["latency_ms"]["p50"] <= on_disk["serve"]["latency_ms"]["p99"]
    assert on_disk["train"]["energy_kwh"] > 0 and "estimated" in on_disk["train"]["energy_method"]["cpu"]


def test_real_token_count_matches_an_independent_count(make_config, tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    from bench import sources

    raw = make_config()
    rec = runner.execute(one_plan(raw), tmp_path)
    splits = sources.build_splits(plan.expand(raw)[0].cfg.data)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    expected = sum(min(len(tok(t)["input_ids"]), 32) for t in splits.train_texts)
    assert rec["train"]["tokens_real"] == expected


def test_gradient_accumulation_gives_the_same_loss(make_config, tmp_path):
    a = runner.execute(one_plan(make_config(train={"batch_size": 8, "grad_accum": 1, "max_steps": 3})), tmp_path)
    b = runner.execute(one_plan(make_config(train={"batch_size": 4, "grad_accum": 2, "max_steps": 3})), tmp_path)
    assert a["train"]["samples"] == b["train"]["samples"] == 24
    assert a["train"]["tokens_real"] == b["train"]["tokens_real"]
    assert b["train"]["losses"] == pytest.approx(a["train"]["losses"], abs=1e-4)


def test_qlora_quantizes_every_target_but_not_the_head(make_config):
    import bitsandbytes as bnb

    q = prepared(make_config(method={"name": "qlora"}))
    model, method = q["model"], q["method"]
    modules = dict(model.named_modules())
    targets = [n for n in modules if n.endswith(("attention.self.query", "attention.self.value"))]
    assert len(targets) == 4  # 2 layers x (query, value)
    for name in targets:
        assert isinstance(modules[name].base_layer, bnb.nn.Linear4bit), name
    base_linear = [m for n, m in modules.items() if isinstance(m, torch.nn.Linear) and "classifier" not in n
                   and "lora_" not in n]
    assert base_linear and all(isinstance(m, bnb.nn.Linear4bit) for m in base_linear)
    head = [m for n, m in modules.items() if n.endswith("classifier.modules_to_save.default")]
    assert head and not isinstance(head[0], bnb.nn.Linear4bit) and head[0].weight.requires_grad
    assert method.report(model)["quantization"]["quant_type"] == "nf4"

    lora = prepared(make_config(method={"name": "lora"}))
    assert count_params(model) == count_params(lora["model"])  # 4-bit counted at 16-bit size


def test_adalora_really_allocates_ranks(make_config, tmp_path):
    raw = make_config(data={"train_size": 400}, method={"name": "adalora", "init_r": 6, "r": 3, "tinit": 5,
                                                         "tfinal": 10, "delta_t": 2},
                      train={"epochs": 1, "batch_size": 8, "lr": 5e-3})
    rec = runner.execute(one_plan(raw), tmp_path)
    assert rec["status"] == "ok", rec.get("error")
    ada = rec["method_report"]["adalora"]
    assert ada["total_step"] == 50 and ada["update_and_allocate_calls"] == 50
    ranks = ada["final_ranks"]
    assert len(ranks) == 4 and set(ranks) == set(rec["method_report"]["target_modules"])
    assert len(set(ranks.values())) > 1, ranks  # ranks differ across layers: allocation ran
    assert sum(ranks.values()) <= ada["budget_target_total_rank"] == 3 * 4
    assert all(0 <= r <= 6 for r in ranks.values())


def test_adalora_schedule_needs_a_budgeting_phase(make_config, tmp_path):
    rec = runner.execute(one_plan(make_config(method={"name": "adalora", "tinit": 4, "tfinal": 4})), tmp_path)
    assert rec["status"] == "error" and rec["failed_stage"] == "model"
    assert "no budgeting phase" in rec["error"]["message"]


def test_unmatched_target_lists_existing_modules(make_config):
    with pytest.raises(ConfigError, match=r"'q_proj' matches no linear module.*query.*value"):
        prepared(make_config(method={"target_modules": ["q_proj"]}))


def test_all_linear_never_wraps_the_head(make_config):
    from peft.tuners.lora import LoraLayer

    s = prepared(make_config(method={"target_modules": "all-linear"}))
    wrapped = [n for n, m in s["model"].named_modules() if isinstance(m, LoraLayer)]
    assert len(wrapped) == 2 * 6 + 1  # per layer: q, k, v, attn out, intermediate, output; plus the pooler
    assert not any("classifier" in n for n in wrapped)
