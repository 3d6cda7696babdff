"""The training loop: a plain PyTorch loop so every optimizer step is visible.

Returns what happened, with counts: optimizer steps, samples, real (non-pad) and
padded tokens, per-step losses, and the labelled wall time of the training phase
(tokenization happens before, untimed). Throughput = counted work / that wall time.

Causal LM examples carry their own token labels (-100 on prompt positions); their
batches are padded on the right with -100 labels, and the tokens that carry loss
are counted apart. ``train.group_by_length`` batches examples of similar length.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from transformers import get_scheduler

from bench.config import TrainConfig
from bench.measure.clock import PhaseClock


class NanLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class RunTimeout(RuntimeError):
    """Training ran past ``train.max_wall_s``."""


@dataclass
class TrainResult:
    optimizer_steps: int = 0
    samples: int = 0
    tokens_real: int = 0
    tokens_padded: int = 0  # positions processed, padding included
    tokens_loss: int = 0  # positions whose label carries loss (causal LM: response tokens)
    losses: list = field(default_factory=list)  # mean loss per optimizer step
    wall_s: float = 0.0

    def summary(self) -> dict:
        wall = self.wall_s
        return {
            "wall_s": wall,
            "optimizer_steps": self.optimizer_steps,
            "samples": self.samples,
            "tokens_real": self.tokens_real,
            "tokens_padded": self.tokens_padded,
            "tokens_loss": self.tokens_loss,
            "pad_fraction": 1 - self.tokens_real / self.tokens_padded if self.tokens_padded else 0.0,
            "samples_per_s": self.samples / wall if wall else 0.0,
            "tokens_real_per_s": self.tokens_real / wall if wall else 0.0,
            "loss_first": self.losses[0] if self.losses else None,
            "loss_last": self.losses[-1] if self.losses else None,
            "loss_last10_mean": sum(self.losses[-10:]) / len(self.losses[-10:]) if self.losses else None,
        }


def tokenize(tokenizer, texts: list[str], max_length: int) -> list[dict]:
    """One dict of unpadded token ids per example (padding happens per batch)."""
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))]


def collate(tokenizer, examples: list[dict], labels: list[int] | None, device: str) -> dict:
    """Pad a batch; class ``labels`` become a tensor, token labels in the examples are padded with -100."""
    if "labels" in examples[0]:
        from transformers import DataCollatorForSeq2Seq

        batch = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, return_tensors="pt")(examples)
        return {k: v.to(device) for k, v in batch.items()}
    batch = tokenizer.pad(examples, return_tensors="pt")
    if labels is not None:
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
    return {k: v.to(device) for k, v in batch.items()}


def autocast(device: str, precision: str):
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


GROUP_BATCHES = 50  # length grouping sorts within shuffled groups of this many batches


def _micro_batches(n: int, cfg: TrainConfig, epoch: int, lengths: list[int] | None = None):
    rng = random.Random(cfg.seed * 1000 + epoch)
    order = list(range(n))
    rng.shuffle(order)
    batches = [order[start:start + cfg.batch_size] for start in range(0, n, cfg.batch_size)]
    if cfg.group_by_length and lengths is not None:
        span = GROUP_BATCHES * cfg.batch_size
        batches = []
        for start in range(0, n, span):
            group = sorted(order[start:start + span], key=lambda i: lengths[i], reverse=True)
            batches.extend(group[b:b + cfg.batch_size] for b in range(0, len(group), cfg.batch_size))
        rng.shuffle(batches)
    yield from batches


def _steps(n: int, cfg: TrainConfig, lengths: list[int] | None = None):
    """Yield lists of micro-batches (index lists), one list per optimizer step, across epochs."""
    epoch = 0
    while True:
        group = []
        for micro in _micro_batches(n, cfg, epoch, lengths):
            group.append(micro)
            if len(group) == cfg.grad_accum:
                yield group
                group = []
        if group:
            yield group
        epoch += 1


def train(model, tokenizer, features: list[dict], labels: list[int], cfg: TrainConfig, *, method,
          total_steps: int, device: str, precision: str, clock: PhaseClock, progress=None,
          result: TrainResult | None = None, guard=None) -> TrainResult:
    """Train for exactly ``total_steps`` optimizer steps, filling ``result`` as it goes.

    Raises NanLossError on a non-finite loss and RunTimeout past ``cfg.max_wall_s``;
    ``guard(steps_done, total_steps, train_s)`` runs after every step and may raise to stop
    (budgets). On any exception ``result`` holds the work done so far.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=math.ceil(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" and device.startswith("cuda") else None
    result = result if result is not None else TrainResult()
    model.train()
    start = time.perf_counter()
    with clock.phase("train"):
        lengths = [len(f["input_ids"]) for f in features]
        loss_tokens = [sum(t != -100 for t in f["labels"]) for f in features] if "labels" in features[0] else None

        def weight(micro):
            return len(micro) if loss_tokens is None else sum(loss_tokens[i] for i in micro)

        for global_step, group in enumerate(_steps(len(features), cfg, lengths)):
            if global_step >= total_steps:
                break
            n_step = sum(weight(micro) for micro in group)
            step_loss = 0.0
            for micro in group:
                batch = collate(tokenizer, [features[i] for i in micro],
                                None if labels is None else [labels[i] for i in micro], device)
                with autocast(device, precision):
                    loss = model(**batch).loss
                # Weight each micro-batch by what its mean loss averages over (samples, or loss
                # tokens for a causal LM): 8x1 and 4x2 give the same step loss.
                scaled = loss * (weight(micro) / n_step)
                (scaler.scale(scaled) if scaler else scaled).backward()
                step_loss += scaled.item()
                result.samples += len(micro)
                result.tokens_real += int(batch["attention_mask"].sum())
                result.tokens_padded += batch["attention_mask"].numel()
                token_labels = batch["labels"] if batch["labels"].dim() == 2 else None
                result.tokens_loss += int((token_labels != -100).sum()) if token_labels is not None else 0
            if not math.isfinite(step_loss):
                raise NanLossError(f"loss became {step_loss} at optimizer step {global_step}")
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            method.after_optimizer_step(model, global_step)
            optimizer.zero_grad(set_to_none=True)
            result.optimizer_steps += 1
            result.losses.append(step_loss)
            result.wall_s = time.perf_counter() - start
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{step_loss:.4f}", refresh=False)
            if cfg.max_wall_s and result.wall_s > cfg.max_wall_s and result.optimizer_steps < total_steps:
                raise RunTimeout(f"training passed train.max_wall_s={cfg.max_wall_s:g} s at step "
                                 f"{result.optimizer_steps}/{total_steps}")
            if guard is not None:
                guard(result.optimizer_steps, total_steps, result.wall_s)
    result.wall_s = clock.wall_s["train"]
    return result
