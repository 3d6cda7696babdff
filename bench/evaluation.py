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
