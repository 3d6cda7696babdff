"""Serving test of a fine-tuned causal LM on vLLM's OpenAI-compatible server (engine ``vllm``).

Variants of one trained run:
  base      the un-tuned base model (dense)
  unmerged  the base with the run's LoRA adapter loaded by the engine (``--lora-modules``)
  merged    the adapter merged into the dense base (peft ``merge_and_unload``), saved and served
The base is reloaded from its source and saved dense; adapters are merged into that dense
base (never into a 4-bit one). A QLoRA adapter is therefore served on the dense base, and
AdaLoRA (which vLLM cannot load as an adapter) is served merged only. Each variant gets a
concurrency sweep over held-out prompts with a fixed output length (``ignore_eos``); the
cost basis is the highest output-token throughput whose p99 TTFT and TPOT meet the SLO.
Merged and unmerged greedy outputs are compared on the first prompts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench import tco
from bench.loadtest import run_load
from bench.measure import cost as cost_mod
from bench.measure.streaming import best_at_slo
from bench.serve import prompt_set
from bench.vllm_server import VllmServer

AGREEMENT_PROMPTS = 8
UTILIZATIONS = (1.0, 0.6, 0.3)


def save_variants(cfg, model, tokenizer, method, workdir: Path) -> dict:
    """Write base (dense), adapter and merged model directories, each with the run's tokenizer."""
    import torch

    from bench import models

    base = models.load_model(cfg, models.model_config(cfg, [], tokenizer), {}, "cpu")
    paths = {"base": workdir / "base", "merged": workdir / "merged"}
    base.save_pretrained(paths["base"])
    tokenizer.save_pretrained(paths["base"])
    if method == "full":
        model.save_pretrained(paths["merged"])
        tokenizer.save_pretrained(paths["merged"])
        return paths
    from peft import PeftModel

    paths["adapter"] = workdir / "adapter"
    model.save_pretrained(paths["adapter"])
    with torch.no_grad():
        merged = PeftModel.from_pretrained(base, paths["adapter"]).merge_and_unload()
    merged.save_pretrained(paths["merged"])
    tokenizer.save_pretrained(paths["merged"])
    return paths


def _sweep(server, name: str, prompts: list[str], cfg) -> dict:
    s = cfg.serve
    points = [run_load(server.base_url, name, prompts, s.output_tokens, mode="concurrency", concurrency=c,
                       warmup=s.warmup_requests, ignore_eos=True)["summary"] for c in s.concurrency]
    return {"points": points, "basis": best_at_slo(points, s.slo_ttft_p99_ms, s.slo_tpot_p99_ms)}


def _greedy(server, name: str, prompts: list[str], max_tokens: int) -> list[str]:
    import requests

    session, out = requests.Session(), []
    for prompt in prompts:
        body = {"model": name, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0}
        out.append(session.post(f"{server.base_url}/v1/completions", json=body, timeout=300).json()["choices"][0]["text"])
    return out


def _section(variant: str, sweep: dict, cfg, usd_per_hour: float, devices: int, ready_s: float) -> dict:
    points, basis = sweep["points"], sweep["basis"]
    single = points[0]
    chosen = basis or single
    out = {
        "engine": "vllm", "variant": variant, "task": "causal_lm",
        "ttft_ms": chosen["ttft_ms"], "tpot_ms": chosen["tpot_ms"], "itl_ms": chosen["itl_ms"],
        "e2e_ms": chosen["e2e_ms"], "n_requests": chosen["n_requests"], "n_failed": chosen["n_failed"],
        "throughput_output_tokens_s": chosen["throughput_output_tokens_s"],
        "cost_basis_concurrency": chosen["concurrency"], "cost_basis_meets_slo": basis is not None,
        "slo": {"ttft_p99_ms": cfg.serve.slo_ttft_p99_ms, "tpot_p99_ms": cfg.serve.slo_tpot_p99_ms},
        "by_concurrency": {str(p["concurrency"]): p for p in points},
        "server_ready_s": ready_s,
        "latency_ms": chosen["e2e_ms"],  # one request's whole answer, for the common leaderboard columns
    }
    tps = chosen["throughput_output_tokens_s"]
    if tps > 0:
        out["usd_per_1m_output_tokens"] = tco.usd_per_1m_output_tokens(usd_per_hour, devices, tps, 1.0)
        out["usd_per_1m_output_tokens_at_utilization"] = {
            str(u): tco.usd_per_1m_output_tokens(usd_per_hour, devices, tps, u) for u in UTILIZATIONS}
        out["usd_per_1k_requests"] = cost_mod.usd_per_1k_requests(chosen["requests_per_s"], devices, usd_per_hour)
    return out


def serve_vllm(cfg, model, tokenizer, formatter, splits, method: str, *, usd_per_hour: float, devices: int,
               log_dir: Path | None = None) -> dict:
    """The run's serve section (its own adapter) plus one section per other variant."""
    texts = prompt_set(splits.test_texts, cfg.serve.n_requests)
    prompts = [formatter.prompt_text(t) for t in texts]
    wanted = list(cfg.serve.variants)
    if method in ("adalora", "full") and "unmerged" in wanted:
        wanted.remove("unmerged")  # vLLM loads LoRA adapters only; these are served merged
    sections, outputs = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        paths = save_variants(cfg, model, tokenizer, method, Path(tmp))
        lora = {"adapter": {"path": str(paths["adapter"]), "rank": cfg.method.r}} if "unmerged" in wanted else None
        if "base" in wanted or "unmerged" in wanted:
            with VllmServer(cfg.serve.vllm_python, str(paths["base"]), lora=lora,
                            max_model_len=cfg.data.max_length + cfg.serve.output_tokens + 8,
                            log_path=(log_dir / "vllm-base.log") if log_dir else None) as server:
                for variant, name in (("base", "model"), ("unmerged", "adapter")):
                    if variant in wanted:
                        sections[variant] = _section(variant, _sweep(server, name, prompts, cfg), cfg,
                                                     usd_per_hour, devices, server.ready_s)
                if "unmerged" in wanted:
                    outputs["unmerged"] = _greedy(server, "adapter", prompts[:AGREEMENT_PROMPTS], 16)
        if "merged" in wanted:
            with VllmServer(cfg.serve.vllm_python, str(paths["merged"]),
                            max_model_len=cfg.data.max_length + cfg.serve.output_tokens + 8,
                            log_path=(log_dir / "vllm-merged.log") if log_dir else None) as server:
                sections["merged"] = _section("merged", _sweep(server, "model", prompts, cfg), cfg,
                                              usd_per_hour, devices, server.ready_s)
                outputs["merged"] = _greedy(server, "model", prompts[:AGREEMENT_PROMPTS], 16)
    own = "unmerged" if "unmerged" in sections else "merged"
    result = dict(sections[own])
    result["variants"] = sections
    if "unmerged" in outputs and "merged" in outputs:
        same = [a == b for a, b in zip(outputs["unmerged"], outputs["merged"])]
        result["merge_agreement"] = {"prompts": len(same), "identical_greedy_outputs": sum(same),
                                     "fraction": sum(same) / len(same), "max_tokens": 16}
    result["covers"] = ("vLLM OpenAI-compatible server on the training host, streamed /v1/completions, "
                        f"{cfg.serve.output_tokens} output tokens per request (ignore_eos), held-out prompts; "
                        "cost basis = highest output-token throughput whose p99 TTFT and TPOT meet the SLO "
                        "(else concurrency 1)")
    return result
