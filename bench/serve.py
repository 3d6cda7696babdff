"""Serving-cost test of the trained model, in-process (engine ``hf``).

Requests are held-out examples drawn with a fixed seed. For each batch size, batches of
that many requests are sent one after another; each batch's latency is from the
request to the answer on the host (a classifier: tokenize + forward + argmax; a causal
LM: greedy generation of the whole answer). Warm-up batches are excluded. Batch size
1 is the one-request-at-a-time case and is always measured.
"""

from __future__ import annotations

import math
import random
import time

import torch

from bench.config import MIN_MEASURED_REQUESTS, ServeConfig
from bench.measure import cost as cost_mod
from bench.measure.stats import summarize
from bench.train import autocast


def prompt_set(texts: list[str], n: int, seed: int = 0) -> list[str]:
    """``n`` texts drawn without replacement (cycling if there are fewer), fixed seed."""
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    return [texts[order[i % len(order)]] for i in range(n)]


@torch.no_grad()
def _answer(model, tokenizer, texts: list[str], max_length: int, device: str, precision: str) -> list[int]:
    batch = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    batch = {k: v.to(device) for k, v in batch.items()}
    with autocast(device, precision):
        logits = model(**batch).logits
    return logits.argmax(-1).tolist()  # .tolist() waits for the device


def measure_batch_size(answer, prompts: list, batch_size: int, warmup_batches: int) -> dict:
    """Latency per batch and throughput at one batch size; ``answer(chunk)`` serves one batch."""
    n_batches = math.ceil(len(prompts) / batch_size)
    for i in range(warmup_batches):
        answer(prompts[:batch_size])
    latencies_ms, answered, output_tokens = [], 0, 0
    window_start = time.perf_counter()
    for i in range(n_batches):
        chunk = prompts[i * batch_size:(i + 1) * batch_size]
        start = time.perf_counter()
        answers = answer(chunk)
        latencies_ms.append((time.perf_counter() - start) * 1000.0)
        answered += len(answers)
        output_tokens += sum(a["output_tokens"] for a in answers if isinstance(a, dict))
    window_s = time.perf_counter() - window_start
    row = {
        "batch_size": batch_size,
        "n_requests": answered,
        "n_batches": n_batches,
        "latency_ms": summarize(latencies_ms),  # per batch: every request in it waits this long
        "window_s": window_s,
        "requests_per_s": answered / window_s,
    }
    if output_tokens:
        row.update(output_tokens=output_tokens, output_tokens_per_s=output_tokens / window_s)
    return row


def _sweep(answer, prompts: list, cfg: ServeConfig, usd_per_hour: float, n_devices: int) -> dict:
    sizes = sorted(set([1, *cfg.batch_sizes]))
    by_size = {}
    for size in sizes:
        warmup = math.ceil(cfg.warmup_requests / size)
        row = measure_batch_size(answer, prompts, size, warmup)
        row["usd_per_1k_requests"] = cost_mod.usd_per_1k_requests(row["requests_per_s"], n_devices, usd_per_hour)
        row["meets_slo"] = row["latency_ms"]["p99"] <= cfg.slo_p99_ms
        by_size[str(size)] = row
    meeting = [r for r in by_size.values() if r["meets_slo"]]
    basis = max(meeting, key=lambda r: r["requests_per_s"]) if meeting else by_size["1"]
    single = by_size["1"]
    return {
        "engine": cfg.engine,
        "latency_ms": single["latency_ms"],  # one request at a time, warm-up excluded
        "requests_per_s": single["requests_per_s"],
        "n_requests": single["n_requests"],
        "warmup_requests": cfg.warmup_requests,
        "by_batch_size": by_size,
        "slo_p99_ms": cfg.slo_p99_ms,
        "cost_basis_batch_size": basis["batch_size"],
        "cost_basis": f"batch_size={basis['batch_size']}",
        "cost_basis_meets_slo": basis["meets_slo"],
        "capacity_requests_s": basis["requests_per_s"],  # one replica, at the cost basis (sizes TCO replicas)
        "usd_per_1k_requests": basis["usd_per_1k_requests"],
        "few_requests": single["n_requests"] < MIN_MEASURED_REQUESTS,
    }


def serve_test(model, tokenizer, test_texts: list[str], cfg: ServeConfig, *, max_length: int, device: str,
               precision: str, usd_per_hour: float, n_devices: int, variant: str) -> dict:
    """Classifier serving: latency and requests/s at each batch size."""
    model.eval()

    def answer(chunk):
        return _answer(model, tokenizer, chunk, max_length, device, precision)

    result = _sweep(answer, prompt_set(test_texts, cfg.n_requests), cfg, usd_per_hour, n_devices)
    # A classifier's answer (the label) is its first and only output: TTFT = E2E, no TPOT.
    result.update(ttft_ms=result["latency_ms"], e2e_ms=result["latency_ms"], tpot_ms=None)
    return {**result, "variant": variant, "task": "seq_cls",
            "covers": "in-process inference on the training device: tokenize + forward + argmax; no network; "
                      "TTFT = E2E = one request at a time (a label is the only output)"}


def serve_generative(model, tokenizer, prompts: list[list[int]], cfg: ServeConfig, *, max_new_tokens: int,
                     stop_ids: list[int], device: str, precision: str, usd_per_hour: float, n_devices: int,
                     variant: str) -> dict:
    """Causal LM serving: each request is a held-out prompt answered by greedy generation."""
    from bench.generate import generate

    model.eval()

    def answer(chunk):
        return generate(model, tokenizer, chunk, batch_size=len(chunk), max_new_tokens=max_new_tokens,
                        stop_ids=stop_ids, device=device, precision=precision)

    result = _sweep(answer, prompt_set(prompts, cfg.n_requests), cfg, usd_per_hour, n_devices)
    basis = result["by_batch_size"][str(result["cost_basis_batch_size"])]
    if basis.get("output_tokens_per_s"):
        result["throughput_output_tokens_s"] = basis["output_tokens_per_s"]
    result["e2e_ms"] = result["latency_ms"]  # not streamed: no TTFT or TPOT in-process
    return {**result, "variant": variant, "task": "causal_lm", "max_new_tokens": max_new_tokens,
            "covers": "in-process greedy generation on the training device: prompt token ids in, "
                      "answer text out (left-padded batches); no network, no tokenization of the request"}
