"""Quality metrics as `evaluate.Metric` modules that work offline.

``evaluate.load("accuracy")`` fetches its script from the hub and fails without a
network; these modules subclass `evaluate.Metric` directly, so they keep evaluate's
interface (``compute``, ``add_batch``, ``evaluate.combine``) with no download.

Generated text: ``exact_match`` compares normalized strings (case, surrounding
whitespace and punctuation ignored); ``rouge_l`` is the ROUGE-L F-measure of the
`rouge_score` package (longest common subsequence of tokens), averaged over examples.
"""

from __future__ import annotations

import string

import datasets
import evaluate
from sklearn.metrics import accuracy_score, f1_score

from bench.config import LABEL_METRICS, TEXT_METRICS

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


_TEXT_FEATURES = datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")})


def normalize(text: str) -> str:
    """Lower case, inner whitespace collapsed, surrounding whitespace and punctuation removed."""
    return " ".join(text.lower().split()).strip(string.punctuation + " ")


class ExactMatch(evaluate.Metric):
    """Fraction of outputs equal to the reference after `normalize`."""

    def _info(self):
        return evaluate.MetricInfo(description="exact match after lower-casing and stripping punctuation",
                                   citation="", inputs_description="predictions and references: strings",
                                   features=_TEXT_FEATURES)

    def _compute(self, predictions, references):
        hits = [normalize(p) == normalize(r) for p, r in zip(predictions, references)]
        return {"exact_match": sum(hits) / len(hits) if hits else 0.0}


class RougeL(evaluate.Metric):
    """Mean ROUGE-L F-measure (rouge_score's tokenizer: lower case, alphanumeric tokens)."""

    def _info(self):
        return evaluate.MetricInfo(description="ROUGE-L F-measure, mean over examples", citation="",
                                   inputs_description="predictions and references: strings",
                                   features=_TEXT_FEATURES)

    def _compute(self, predictions, references):
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"])
        scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]
        return {"rouge_l": sum(scores) / len(scores) if scores else 0.0}


METRICS = {"accuracy": Accuracy, "f1": F1, "exact_match": ExactMatch, "rouge_l": RougeL}


def compute(names: list[str], predictions: list[int], references: list[int], label_ids: list[int]) -> dict:
    """{metric name: value} for label ids; F1 is macro over all known labels (a never-predicted label counts 0).

    A prediction of -1 (an unparseable output) is wrong for every label.
    """
    out = {}
    for name in names:
        if name not in LABEL_METRICS:
            continue
        kwargs = {"labels": label_ids} if name == "f1" else {}
        out.update(METRICS[name]().compute(predictions=predictions, references=references, **kwargs))
    return out


def compute_text(names: list[str], outputs: list[str], references: list[str]) -> dict:
    """{metric name: value} for the text metrics among ``names``."""
    return {k: v for name in names if name in TEXT_METRICS
            for k, v in METRICS[name]().compute(predictions=outputs, references=references).items()}


def per_example_text(name: str, output: str, reference: str) -> float:
    """One example's score, as stored in the outputs file."""
    if name == "exact_match":
        return float(normalize(output) == normalize(reference))
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"]).score(reference, output)["rougeL"].fmeasure
