"""Load test of an OpenAI-compatible completions endpoint (vLLM's server, or any other).

Each request streams ``/v1/completions`` with ``stream_options.include_usage`` so the
server reports its own output token count; the arrival time of every non-empty chunk is
kept (see `bench.measure.streaming` for the definitions). Arrival patterns:

  offline      every request sent at once
  concurrency  at most N requests in flight; a new one starts when one finishes
  poisson      requests arrive at ``rate`` per second, gaps drawn from a gamma
               distribution with shape ``burstiness`` (1 = Poisson; < 1 burstier)

Warm-up requests run first and are not measured. Failed requests are counted apart.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench.measure.streaming import RequestTiming, summarize_requests


def _lines_as_they_arrive(resp):
    """Lines of a streamed body as soon as each arrives (``iter_lines`` waits to fill 512 bytes)."""
    buffer = b""
    for chunk in resp.iter_content(chunk_size=None):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        yield from (line.strip() for line in lines if line.strip())
    if buffer.strip():
        yield buffer.strip()


def stream_completion(session, base_url: str, model: str, prompt: str, max_tokens: int, *,
                      ignore_eos: bool = False, timeout_s: float = 600.0, extra: dict | None = None,
                      headers: dict | None = None) -> RequestTiming:
    """One streamed greedy completion, timed on the client's monotonic clock."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True}, **({"ignore_eos": True} if ignore_eos else {}),
            **(extra or {})}
    timing = RequestTiming(send_s=time.perf_counter())
    try:
        with session.post(f"{base_url.rstrip('/')}/v1/completions", json=body, stream=True, timeout=timeout_s,
                          headers=headers) as resp:
            if resp.status_code != 200:
                timing.error = f"HTTP {resp.status_code}: {resp.text[:200]}"
                return timing
            for line in _lines_as_they_arrive(resp):
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                event = json.loads(data)
                if event.get("choices") and event["choices"][0].get("text"):
                    timing.chunk_s.append(time.perf_counter())
                if event.get("usage"):
                    timing.output_tokens = int(event["usage"].get("completion_tokens") or 0)
        timing.end_s = time.perf_counter()
        if not timing.output_tokens:  # a server that reports no usage: one token per chunk, estimated
            timing.output_tokens, timing.tokens_from_usage = len(timing.chunk_s), False
    except Exception as exc:  # network errors, timeouts, bad JSON: a failed request, counted apart
        timing.error = f"{type(exc).__name__}: {str(exc)[:200]}"
    return timing


def arrival_offsets(n: int, rate: float, burstiness: float = 1.0, seed: int = 0) -> list[float]:
    """Send times (s from the start) of ``n`` requests at ``rate``/s, gamma-distributed gaps."""
    if rate <= 0 or burstiness <= 0:
        raise ValueError("rate and burstiness must be > 0")
    rng = random.Random(seed)
    theta = 1.0 / (rate * burstiness)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.gammavariate(burstiness, theta)
    return out


def run_load(base_url: str, model: str, prompts: list[str], max_tokens: int, *, mode: str = "concurrency",
             concurrency: int = 1, rate: float | None = None, burstiness: float = 1.0, warmup: int = 2,
             ignore_eos: bool = False, seed: int = 0, extra: dict | None = None,
             headers: dict | None = None) -> dict:
    """Send ``prompts`` with the given arrival pattern; return the summary and the raw timings."""
    import requests

    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=max(len(prompts), 16)))

    def one(prompt: str) -> RequestTiming:
        return stream_completion(session, base_url, model, prompt, max_tokens, ignore_eos=ignore_eos, extra=extra,
                                 headers=headers)

    for prompt in prompts[:warmup]:
        one(prompt)
    workers = {"offline": len(prompts), "concurrency": concurrency, "poisson": len(prompts)}[mode]
    offsets = arrival_offsets(len(prompts), rate, burstiness, seed) if mode == "poisson" else None
    start = time.perf_counter()
    lock = threading.Lock()
    timings: list[RequestTiming] = []

    def scheduled(i: int) -> None:
        if offsets is not None:
            delay = start + offsets[i] - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        result = one(prompts[i])
        with lock:
            timings.append(result)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(scheduled, range(len(prompts))))
    window_s = time.perf_counter() - start
    summary = summarize_requests(timings, window_s)
    summary.update(mode=mode, concurrency=concurrency if mode == "concurrency" else None,
                   rate=rate if mode == "poisson" else None, burstiness=burstiness if mode == "poisson" else None,
                   warmup_requests=min(warmup, len(prompts)), max_tokens=max_tokens, ignore_eos=ignore_eos)
    return {"summary": summary, "timings": timings}

