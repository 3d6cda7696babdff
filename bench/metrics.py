"""Quality metrics as `evaluate.Metric` modules that work offline.

``evaluate.load("accuracy")`` fetches its script from the hub and fails without a
network; these modules subclass `evaluate.Metric` directly, so they keep evaluate's
interface (``compute``, ``add_batch``, ``evaluate.combine``) with no download.
"""

from __future__ import annotations

import datasets
import evaluate
from sklearn.metrics import accuracy_score, f1_score

_LABEL_FEATURES = datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")})


class Accuracy(evaluate.Metric):
    """Fraction of predictions equal to the reference label."""

    def _info(self):
        return evaluate.MetricInfo(description="accuracy = correct / total", citation="",
                                   inputs_description="predictions and references: label ids",
                                   features=_LABEL_FEATURES)

    def _compute(self, predictions, references):
        return {"accuracy": float(accuracy_score(references, predictions))}


class F1(evaluate.Metric):
    """F1 score; macro-averaged over labels by default (each label weighs the same)."""

    def _info(self):
        return evaluate.MetricInfo(description="F1 = 2PR/(P+R), macro-averaged over labels", citation="",
                                   inputs_description="predictions and references: label ids",
                                   features=_LABEL_FEATURES)

    def _compute(self, predictions, references, average="macro", labels=None):
        return {"f1": float(f1_score(references, predictions, average=average, labels=labels, zero_division=0))}


METRICS = {"accuracy": Accuracy, "f1": F1}


def compute(names: list[str], predictions: list[int], references: list[int], label_ids: list[int]) -> dict:
    """{metric name: value}; F1 is macro over all known labels (a never-predicted label counts as 0)."""
    out = {}
    for name in names:
        kwargs = {"labels": label_ids} if name == "f1" else {}
        out.update(METRICS[name]().compute(predictions=predictions, references=references, **kwargs))
    return out
