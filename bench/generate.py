"""Generative evaluation of a causal LM: greedy answers to held-out prompts, parsed and scored.

Generation is greedy (no sampling, one beam), bounded by ``eval.max_new_tokens``, and
stops at the end of turn. Prompts are batched by length and left-padded, so every
prompt's last token sits next to its first generated token. Label answers are parsed
by `parse_label`: the first whole label word in the output, case ignored; an output
with none is "unparseable", counted wrong, and its rate is reported.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import torch

from bench import metrics
from bench.train import autocast


def parse_label(output: str, words: list[str]) -> int:
    """Index in ``words`` of the first label word in ``output`` (whole word, any case); -1 if none.

    Where two label words match at the same place ("good" and "good day"), the longer wins.
    """
    best, best_key = -1, None
    for i, word in enumerate(words):
        match = re.search(r"(?<!\w)" + re.escape(word.strip().lower()) + r"(?!\w)", output.lower())
        key = (match.start(), -len(match.group())) if match else None
        if key is not None and (best_key is None or key < best_key):
            best, best_key = i, key
    return best


def stop_token_ids(tokenizer, model, formatter) -> list[int]:
    """Token ids that end an answer: EOS, the model's own EOS ids, the chat template's end of turn."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    end = formatter.end_of_turn_id()
    ids.add(end)
    return sorted(i for i in ids if i is not None)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[int]], *, batch_size: int, max_new_tokens: int,
             stop_ids: list[int], device: str, precision: str, progress=None) -> list[dict]:
    """Greedy outputs for token-id prompts, in input order: text, token count, whether it stopped."""
    from transformers import GenerationConfig

    gen_cfg = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                               eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id)
    model.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[dict | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = tokenizer.pad([{"input_ids": prompts[i]} for i in chunk], padding_side="left", return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, precision):
            out = model.generate(**batch, generation_config=gen_cfg)
        new = out[:, batch["input_ids"].shape[1]:].tolist()
        for i, tokens in zip(chunk, new):
            kept = []
            for token in tokens:
                if token in stop_ids:
                    break
                kept.append(token)
            results[i] = {"output": tokenizer.decode(kept, skip_special_tokens=True),
                          "output_tokens": len(kept), "stopped": len(kept) < len(tokens)}
        if progress is not None:
            progress.update(len(chunk))
    return results


def score(outputs: list[str], references: list, metric_names: list[str], label_words: list[str] | None) -> dict:
    """Metrics over outputs, plus per-example parsed labels and scores.

    ``references`` are label ids when ``label_words`` is given, else answer texts.
    """
    if label_words:
        parsed = [parse_label(o, label_words) for o in outputs]
        ref_text = [label_words[y] for y in references]
        quality = metrics.compute(metric_names, parsed, references, list(range(len(label_words))))
        quality.update(metrics.compute_text(metric_names, outputs, ref_text))
        unparseable = sum(p < 0 for p in parsed)
        extra = {"unparseable": unparseable, "unparseable_rate": unparseable / len(outputs) if outputs else 0.0,
                 "predicted_label_counts": {("unparseable" if p < 0 else label_words[p]): n
                                            for p, n in Counter(parsed).items()}}
        per_example = [{"parsed": label_words[p] if p >= 0 else None, "correct": p == y,
                        **({"exact_match": metrics.per_example_text("exact_match", o, label_words[y])}
                           if "exact_match" in metric_names else {})}
                       for p, y, o in zip(parsed, references, outputs)]
    else:
        quality = metrics.compute_text(metric_names, outputs, references)
        extra = {}
        per_example = [{name: metrics.per_example_text(name, o, r) for name in metric_names}
                       for o, r in zip(outputs, references)]
    return {"quality": quality, "extra": extra, "per_example": per_example}


def outputs_lines(prompts: list[str], references: list[str], generated: list[dict], per_example: list[dict]) -> str:
    """One JSON line per held-out example: prompt, reference, output and its score."""
    lines = []
    for i, (prompt, ref, gen, ex) in enumerate(zip(prompts, references, generated, per_example)):
        lines.append(json.dumps({"index": i, "prompt": prompt, "reference": ref, **gen, **ex}, ensure_ascii=False))
    return "\n".join(lines) + "\n"
