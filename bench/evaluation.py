"""Quality on the held-out split (an untimed phase), and the majority-class baseline."""

from __future__ import annotations

from collections import Counter

import torch

from bench import metrics
from bench.train import autocast, collate, tokenize


@torch.no_grad()
def predict(model, tokenizer, texts: list[str], *, batch_size: int, max_length: int, device: str,
            precision: str) -> list[int]:
    model.eval()
    features = tokenize(tokenizer, texts, max_length)
    preds: list[int] = []
    for start in range(0, len(features), batch_size):
        batch = collate(tokenizer, features[start:start + batch_size], None, device)
        with autocast(device, precision):
            logits = model(**batch).logits
        preds.extend(logits.argmax(-1).tolist())
    return preds


def majority_baseline(train_labels: list[int], test_labels: list[int], metric_names: list[str],
                      label_ids: list[int]) -> dict:
    """Scores of always predicting the most frequent training label."""
    label = Counter(train_labels).most_common(1)[0][0]
    scores = metrics.compute(metric_names, [label] * len(test_labels), test_labels, label_ids)
    return {"label_id": label, **scores}


def evaluate_model(model, tokenizer, splits, cfg, *, device: str, precision: str) -> dict:
    preds = predict(model, tokenizer, splits.test_texts, batch_size=cfg.eval.batch_size,
                    max_length=cfg.data.max_length, device=device, precision=precision)
    label_ids = list(range(len(splits.label_names)))
    quality = metrics.compute(cfg.eval.metrics, preds, splits.test_labels, label_ids)
    return {
        "quality": quality,
        "baseline": {"majority_class": majority_baseline(splits.train_labels, splits.test_labels,
                                                         cfg.eval.metrics, label_ids)},
        "eval": {
            "split": "test (held out)", "n_examples": len(preds), "test_hash": splits.info["test_hash"],
            "predicted_label_counts": dict(Counter(preds)), "f1_average": "macro",
        },
    }


def evaluate_generative(model, tokenizer, formatter, splits, cfg, *, device: str, precision: str,
                        outputs_path=None, desc: str = "generate") -> dict:
    """Greedy answers to every held-out prompt, scored; per-example rows written to ``outputs_path``.

    Returns {"quality": {...}, "eval": {...}}; the same prompts, chat template, greedy settings
    and parser serve the fine-tuned and the base model.
    """
    import time

    from tqdm.auto import tqdm

    from bench import generate as gen
    from bench import record as record_mod

    encoded = formatter.encode_many(splits.test_texts, splits.test_labels, splits.test_fields)
    prompts = [e.prompt_ids for e in encoded]
    stop_ids = gen.stop_token_ids(tokenizer, model, formatter)
    start = time.perf_counter()
    with tqdm(total=len(prompts), desc=desc, unit="ex", leave=False) as bar:
        generated = gen.generate(model, tokenizer, prompts, batch_size=cfg.eval.batch_size,
                                 max_new_tokens=cfg.eval.max_new_tokens, stop_ids=stop_ids, device=device,
                                 precision=precision, progress=bar)
    wall_s = time.perf_counter() - start
    words = [formatter.cfg.label_words[n] for n in splits.label_names] if formatter.cfg.label_words else None
    outputs = [g["output"] for g in generated]
    scored = gen.score(outputs, splits.test_labels, cfg.eval.metrics, words)
    references = [formatter.answer(y) for y in splits.test_labels]
    info = {
        "split": "test (held out)", "n_examples": len(outputs), "test_hash": splits.info["test_hash"],
        "decoding": {"strategy": "greedy", "max_new_tokens": cfg.eval.max_new_tokens, "stop_token_ids": stop_ids,
                     "padding_side": "left", "batch_size": cfg.eval.batch_size},
        "truncated_prompts": sum(e.truncated for e in encoded),
        "mean_output_tokens": sum(g["output_tokens"] for g in generated) / len(generated),
        "stopped_fraction": sum(g["stopped"] for g in generated) / len(generated),
        "generate_wall_s": wall_s,
        **scored["extra"],
    }
    if words:
        info["parser"] = "first whole label word in the output, case-insensitive; none = unparseable (wrong)"
    if outputs_path is not None:
        text = gen.outputs_lines([tokenizer.decode(p) for p in prompts], references, generated, scored["per_example"])
        record_mod.create_new(outputs_path, text)
        info["outputs_file"] = outputs_path.name
    return {"quality": scored["quality"], "eval": info}
