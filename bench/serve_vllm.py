"""Serving test of a causal LM over an OpenAI-compatible HTTP API (engines ``vllm`` and ``openai``).

Engine ``vllm`` starts vLLM's server for each model it serves. Variants of one trained run:
  base       the un-tuned base model (dense)
  unmerged   the base with the run's LoRA adapter loaded by the engine (``--lora-modules``)
  merged     the adapter merged into the dense base (peft ``merge_and_unload``), saved and served
  quantized  the dense base quantized by the engine at load (``--quantization``, serve.quantization,
             default fp8: vLLM's online FP8 on GPUs); where the engine cannot, the record says so
The base is reloaded from its source and saved dense; adapters are merged into that dense
base (never into a 4-bit one). A QLoRA adapter is therefore served on the dense base, and
AdaLoRA (which vLLM cannot load as an adapter) is served merged only.

Engine ``openai`` measures an endpoint that is already running (``serve.base_url``): the
same client, prompts and SLO search; the harness cannot know which weights it serves.

Each load point streams held-out prompts (``serve.load``: a concurrency sweep, Poisson
arrivals at each of ``serve.rates``, or all at once). vLLM requests use ``ignore_eos`` so every
answer has the same length. The cost basis is the point with the highest output-token
throughput whose p99 TTFT and p99 TPOT meet ``serve.slo`` (else the lightest load point, flagged).
Merged and unmerged greedy outputs are compared on the first prompts. The run's own ``serve``
section is the adapter variant (unmerged or merged) that carried the most requests/s within the SLO.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench import config as config_mod
from bench import tco
from bench.loadtest import run_load
from bench.measure import cost as cost_mod
from bench.measure.streaming import best_at_slo
from bench.serve import prompt_set
from bench.vllm_server import ServerError, VllmServer

class ServingFailed(RuntimeError):
    """No request of a load point succeeded: there is nothing to measure."""


AGREEMENT_PROMPTS = 8
AGREEMENT_TOKENS = 16
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


def load_points(base_url: str, name: str, prompts: list[str], cfg, *, ignore_eos: bool,
                headers: dict | None = None) -> list[dict]:
    """One summary per load point of ``serve.load``."""
    s = cfg.serve
    common = dict(warmup=s.warmup_requests, ignore_eos=ignore_eos, headers=headers)
    n_out = config_mod.output_tokens(cfg)
    if s.load == "concurrency":
        return [run_load(base_url, name, prompts, n_out, mode="concurrency", concurrency=c, **common)["summary"]
                for c in s.concurrency]
    if s.load == "poisson":
        return [run_load(base_url, name, prompts, n_out, mode="poisson", rate=float(r), burstiness=s.burstiness,
                         seed=cfg.train.seed, **common)["summary"] for r in s.rates]
    return [run_load(base_url, name, prompts, n_out, mode="offline", **common)["summary"]]


def point_label(point: dict) -> str:
    if point["mode"] == "concurrency":
        return f"concurrency={point['concurrency']}"
    if point["mode"] == "poisson":
        return f"rate={point['rate']:g}/s"
    return "offline"


def _greedy(base_url: str, name: str, prompts: list[str], headers: dict | None = None) -> list[str]:
    import requests

    session, out = requests.Session(), []
    for prompt in prompts:
        body = {"model": name, "prompt": prompt, "max_tokens": AGREEMENT_TOKENS, "temperature": 0.0}
        resp = session.post(f"{base_url.rstrip('/')}/v1/completions", json=body, timeout=300, headers=headers)
        out.append(resp.json()["choices"][0]["text"])
    return out


def section(engine: str, variant: str, points: list[dict], cfg, usd_per_hour: float, devices: int,
            ready_s: float | None = None) -> dict:
    """One variant's serving figures at its cost basis, with every load point kept."""
    slo = cfg.serve.slo
    dead = [p for p in points if p["n_requests"] == 0]
    if dead:
        p = dead[0]
        raise ServingFailed(f"every request failed at {point_label(p)} ({p['n_failed']} of {p['n_failed']}): "
                            + ("; ".join(p.get("errors") or []) or "no output chunk came back"))
    basis = best_at_slo(points, slo["ttft_p99_ms"], slo["tpot_p99_ms"])
    chosen = basis or points[0]
    out = {
        "engine": engine, "variant": variant, "task": "causal_lm", "load": cfg.serve.load,
        "ttft_ms": chosen["ttft_ms"], "tpot_ms": chosen["tpot_ms"], "itl_ms": chosen["itl_ms"],
        "e2e_ms": chosen["e2e_ms"], "n_requests": chosen["n_requests"], "n_failed": chosen["n_failed"],
        "few_requests": chosen["n_requests"] < config_mod.MIN_MEASURED_REQUESTS,
        "output_tokens_per_request": config_mod.output_tokens(cfg),
        "output_tokens_source": chosen["output_tokens_source"],
        "throughput_output_tokens_s": chosen["throughput_output_tokens_s"],
        "requests_per_s": chosen["requests_per_s"],
        "cost_basis": point_label(chosen), "cost_basis_meets_slo": basis is not None,
        "slo": dict(slo),
        "by_load_point": {point_label(p): p for p in points},
        "latency_ms": chosen["e2e_ms"],  # one request's whole answer, for the common leaderboard columns
    }
    if ready_s is not None:
        out["server_ready_s"] = ready_s
    tps = chosen["throughput_output_tokens_s"]
    if tps > 0:
        out["capacity_requests_s"] = chosen["requests_per_s"]
        out["usd_per_1m_output_tokens"] = tco.usd_per_1m_output_tokens(usd_per_hour, devices, tps, 1.0)
        out["usd_per_1m_output_tokens_at_utilization"] = {
            str(u): tco.usd_per_1m_output_tokens(usd_per_hour, devices, tps, u) for u in UTILIZATIONS}
        out["usd_per_1k_requests"] = cost_mod.usd_per_1k_requests(chosen["requests_per_s"], devices, usd_per_hour)
    return out


def _covers(cfg, where: str) -> str:
    s = cfg.serve
    load = {"concurrency": f"concurrency sweep {s.concurrency}",
            "poisson": f"gamma arrivals (burstiness {s.burstiness:g}) at {s.rates} requests/s",
            "offline": "all requests at once"}[s.load]
    return (f"{where}, streamed /v1/completions, {s.n_requests} measured held-out prompts per load point "
            f"({s.warmup_requests} warm-up excluded), {load}; cost basis = highest output-token throughput "
            f"whose p99 TTFT <= {s.slo['ttft_p99_ms']:g} ms and p99 TPOT <= {s.slo['tpot_p99_ms']:g} ms "
            "(else the lightest load point)")


def _server(cfg, model_dir: str, log_dir: Path | None, log_name: str, **kwargs) -> VllmServer:
    return VllmServer(cfg.serve.vllm_python, model_dir,
                      max_model_len=cfg.data.max_length + config_mod.output_tokens(cfg) + AGREEMENT_TOKENS,
                      log_path=(log_dir / log_name) if log_dir else None, **kwargs)


def serve_vllm(cfg, model, tokenizer, formatter, splits, method: str, *, usd_per_hour: float, devices: int,
               log_dir: Path | None = None) -> dict:
    """The run's serve section (its own adapter) plus one section per other variant."""
    prompts = [formatter.prompt_text(t) for t in prompt_set(splits.test_texts, cfg.serve.n_requests)]
    wanted = list(cfg.serve.variants)
    if method in ("adalora", "full") and "unmerged" in wanted:
        wanted.remove("unmerged")  # vLLM loads LoRA adapters only; these are served merged
    sections, outputs, notes = {}, {}, {}

    def measure(variant: str, server: VllmServer, name: str) -> None:
        points = load_points(server.base_url, name, prompts, cfg, ignore_eos=True)
        sections[variant] = section("vllm", variant, points, cfg, usd_per_hour, devices, server.ready_s)

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        paths = save_variants(cfg, model, tokenizer, method, Path(tmp))
        lora = {"adapter": {"path": str(paths["adapter"]), "rank": cfg.method.r}} if "unmerged" in wanted else None
        if "base" in wanted or "unmerged" in wanted:
            with _server(cfg, str(paths["base"]), log_dir, "vllm-base.log", lora=lora) as server:
                if "base" in wanted:
                    measure("base", server, "model")
                if "unmerged" in wanted:
                    measure("unmerged", server, "adapter")
                    outputs["unmerged"] = _greedy(server.base_url, "adapter", prompts[:AGREEMENT_PROMPTS])
        if "merged" in wanted:
            with _server(cfg, str(paths["merged"]), log_dir, "vllm-merged.log") as server:
                measure("merged", server, "model")
                outputs["merged"] = _greedy(server.base_url, "model", prompts[:AGREEMENT_PROMPTS])
        if "quantized" in wanted:
            try:
                with _server(cfg, str(paths["base"]), log_dir, "vllm-quantized.log",
                             extra_args=["--quantization", cfg.serve.quantization]) as server:
                    measure("quantized", server, "model")
                sections["quantized"]["quantization"] = cfg.serve.quantization
            except ServerError as exc:  # e.g. FP8 kernels absent from a CPU build: the other variants stand
                notes["quantized"] = (f"not measured: vLLM could not serve the base with --quantization "
                                      f"{cfg.serve.quantization} on this device ({exc})")
    # The run's own serving figures: its adapter as a team would deploy it, the variant that carried
    # the most requests/s within the SLO (ties: unmerged, one base for many adapters).
    own = max((v for v in ("unmerged", "merged") if v in sections),
              key=lambda v: (sections[v]["cost_basis_meets_slo"], sections[v].get("capacity_requests_s") or 0.0))
    result = dict(sections[own])
    result["variants"] = sections
    result["variant_choice"] = "the run's adapter variant (unmerged or merged) with the most requests/s within the SLO"
    if notes:
        result["variant_notes"] = notes
    if "unmerged" in outputs and "merged" in outputs:
        same = [a == b for a, b in zip(outputs["unmerged"], outputs["merged"])]
        result["merge_agreement"] = {"prompts": len(same), "identical_greedy_outputs": sum(same),
                                     "fraction": sum(same) / len(same), "max_tokens": AGREEMENT_TOKENS}
    result["covers"] = _covers(cfg, "vLLM OpenAI-compatible server on the training host") + (
        f"; {config_mod.output_tokens(cfg)} output tokens per request (ignore_eos)")
    return result


def endpoint_root(base_url: str) -> str:
    """The server root: ``http://host:8000/v1`` (the OpenAI clients' convention) and ``http://host:8000``
    both mean the same endpoint; requests go to ``<root>/v1/completions``."""
    root = base_url.rstrip("/")
    return root[:-3] if root.endswith("/v1") else root


def serve_openai(cfg, formatter, splits, *, usd_per_hour: float, devices: int) -> dict:
    """An OpenAI-compatible endpoint that is already running, measured with the same client."""
    s = cfg.serve
    key = os.environ.get(s.api_key_env) if s.api_key_env else None
    if s.api_key_env and not key:
        raise config_mod.ConfigError(f"serve.api_key_env: environment variable {s.api_key_env} is not set")
    headers = {"Authorization": f"Bearer {key}"} if key else None
    prompts = [formatter.prompt_text(t) for t in prompt_set(splits.test_texts, s.n_requests)]
    base_url = endpoint_root(s.base_url)
    points = load_points(base_url, s.model_name, prompts, cfg, ignore_eos=False, headers=headers)
    result = section("openai", "endpoint", points, cfg, usd_per_hour, devices)
    result.update(base_url=s.base_url, model_name=s.model_name,
                  covers=_covers(cfg, f"endpoint {s.base_url} (model {s.model_name}; the weights it serves are "
                                      "the endpoint's, not necessarily this run's)")
                  + f"; at most {config_mod.output_tokens(cfg)} output tokens per request, counted from usage")
    return result
