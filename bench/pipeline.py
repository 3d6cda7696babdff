"""The stages of one run, in order; each reads what earlier stages left in the record.

data -> model -> (base model) -> train -> evaluate -> (base model) -> serve -> cost.
Heavy objects (splits, model, tokenizer) live in a per-run state dict, never in the
record. The base-model stages score the un-tuned causal LM on the held-out prompts, before
training for a full fine-tune and after it, adapters off, for adapter methods (seq_cls
needs no model for its majority-class baseline). `account` prices the
device time a run has held so far, for finished and failed runs alike.
"""

from __future__ import annotations

import dataclasses
import functools
import time

from bench import device as device_mod
from bench import sources, tco
from bench.measure import cost as cost_mod
from bench.measure.clock import PhaseClock



def new_state(allowance, results_dir=None) -> dict:
    return {"allowance": allowance, "run_start": time.perf_counter(), "results_dir": results_dir}


def _outputs_path(rec: dict, state: dict, kind: str):
    """Per-example outputs file beside the record: runs/<run_id>.<attempt_id>.<kind>.jsonl."""
    from pathlib import Path

    if state.get("results_dir") is None:
        return None
    return Path(state["results_dir"]) / "runs" / f"{rec['run_id']}.{rec['attempt_id']}.{kind}.jsonl"


def run_stage(stage: str, plan, rec: dict, state: dict) -> None:
    STAGE_FUNCTIONS[stage](plan, rec, state)


def account(rec: dict, state: dict) -> None:
    """Price the run's device time so far: wall seconds since it started x devices x price."""
    if "price" not in state:
        return  # failed before a device was priced: nothing was spent on it
    wall_s = time.perf_counter() - state["run_start"]
    devices = state["devinfo"]["count"]
    cost = rec.setdefault("cost", {})
    cost.update({
        "run_wall_s": wall_s,
        "run_device_hours": cost_mod.device_hours(wall_s, devices),
        "run_usd": cost_mod.device_time_usd(wall_s, devices, state["price"]["usd_per_hour"]),
        "run_usd_covers": "all phases of the run process (load, train, evaluate, serve) x hourly device price",
        "usd_per_hour": state["price"]["usd_per_hour"],
        "price_device": state["price_key"],
    })


def _budget_guard(state: dict):
    """Called after every training step: project the run's spend and check the allowance."""
    from bench.budget import REFINE_AFTER_STEPS

    allowance, price, devices = state["allowance"], state["price"]["usd_per_hour"], state["devinfo"]["count"]
    if allowance.max_usd is None and allowance.max_device_hours is None:
        return None

    def guard(done: int, total: int, train_s: float) -> None:
        if done < min(REFINE_AFTER_STEPS, total):
            return
        elapsed_s = time.perf_counter() - state["run_start"]
        projected_s = elapsed_s + train_s / done * (total - done)
        hours = cost_mod.device_hours(projected_s, devices)
        allowance.check(hours * price, hours, f"at step {done}/{total}")

    return guard


def _stage_data(plan, rec, state) -> None:
    cfg = plan.cfg
    # Price card first: a run that cannot be priced fails before it spends anything.
    state["card"] = cost_mod.load_price_card(cfg.cost.price_card)
    start = time.perf_counter()
    from bench.prompts import split_options

    state["splits"] = splits = sources.build_splits(cfg.data, **split_options(cfg))
    rec["data"] = {"source": cfg.data.source, "id": cfg.data.id, **splits.info,
                   "load_wall_s": time.perf_counter() - start}


def _stage_model(plan, rec, state) -> None:
    import torch
    from transformers import set_seed

    from bench import models
    from bench.methods import get_method
    from bench.methods.base import MethodContext
    from bench.plan import steps_for

    cfg = plan.cfg
    device_mod.set_threads(cfg.train.threads)
    device = device_mod.pick_device(cfg.train.device)
    precision, reason = device_mod.pick_precision(cfg.train.precision, device)
    devinfo = device_mod.describe(device)
    key, price = cost_mod.select_device(state["card"], cfg.cost.device, devinfo["name"])
    state.update(device=device, precision=precision, devinfo=devinfo, price_key=key, price=price,
                 clock=PhaseClock(device))
    rec["device"] = {**devinfo, "precision": precision, "precision_reason": reason}
    splits = state["splits"]
    steps = steps_for(cfg, len(splits.train_texts))
    rec["plan"]["total_steps"] = steps
    set_seed(cfg.train.seed)
    with state["clock"].phase("load"):
        tokenizer = models.load_tokenizer(cfg)
        config = models.model_config(cfg, splits.label_names, tokenizer)
        ctx = MethodContext(total_steps=steps, device=device, precision=precision,
                            head_names=models.head_names(config, cfg), task=cfg.task)
        method = get_method(cfg.method.name)(cfg.method, ctx)
        model = models.load_model(cfg, config, method.load_kwargs(), device)
        torch.manual_seed(cfg.train.seed)  # adapter initialization
        model = method.wrap(model)
    state.update(tokenizer=tokenizer, model=model, method=method, steps=steps)
    location, gguf = sources.gguf_parts(cfg.model)
    rec["model"] = {"location": location, "gguf_file": gguf, "architecture": type(config).__name__,
                    "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
                    "tokenizer_pad_token": tokenizer.pad_token, "tokenizer_padding_side": tokenizer.padding_side}
    if gguf:
        rec["model"]["gguf_loading"] = "dequantized by transformers to a dense model (GgufConfig(dequantize=True))"
    if cfg.task == "causal_lm":
        from bench.prompts import Formatter

        state["formatter"] = Formatter(tokenizer, cfg.prompt, splits.label_names, cfg.data.max_length)
        rec["data"]["formatting"] = state["formatter"].describe()


def _base_weights(plan) -> str:
    if plan.cfg.method.name == "qlora":
        return f"{plan.cfg.method.quant_type} 4-bit base (as QLoRA trains on it)"
    return "the base as loaded"


def _stage_baseline(plan, rec, state, when: str) -> None:
    """causal_lm: score the un-tuned model with the same prompts, template, decoding and parser.

    A full fine-tune changes the base, so its base is scored before training. Adapter methods
    leave the base frozen and score it after training with the adapters switched off: an
    inference pass before training would let bitsandbytes repack a 4-bit base for its CPU
    inference kernel, after which QLoRA's adapters get no gradient.
    """
    import contextlib

    from bench.evaluation import evaluate_generative

    cfg = plan.cfg
    if ("base_model" if when == "before_train" else "base_model_after") not in stages_for(cfg):
        return
    model = state["model"]
    off = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    with state["clock"].phase("baseline"), off:
        result = evaluate_generative(model, state["tokenizer"], state["formatter"], state["splits"], cfg,
                                     device=state["device"], precision=state["precision"],
                                     outputs_path=_outputs_path(rec, state, "base_outputs"), desc="base model")
    rec.setdefault("baseline", {})["base_model"] = {
        **result["quality"], "model": cfg.model.id, "weights": _base_weights(plan),
        "scored": "before training" if when == "before_train" else "after training, adapters off (base frozen)",
        **{k: v for k, v in result["eval"].items() if k in ("unparseable", "unparseable_rate", "n_examples",
                                                            "test_hash", "outputs_file", "generate_wall_s",
                                                            "predicted_label_counts", "mean_output_tokens",
                                                            "stopped_fraction", "truncated_prompts")},
    }


def _stage_train(plan, rec, state) -> None:
    from tqdm.auto import tqdm

    from bench.measure.energy import EnergyMeter
    from bench.measure.memory import reset_peak
    from bench.methods.base import count_params
    from bench.train import TrainResult, tokenize, train

    cfg, splits, clock = plan.cfg, state["splits"], state["clock"]
    trainable, total = count_params(state["model"])
    labels = splits.train_labels
    with clock.phase("tokenize"):
        if cfg.task == "causal_lm":
            rows, counts = state["formatter"].encode_all(splits.train_texts, splits.train_labels, splits.train_fields)
            features, labels = [r.feature() for r in rows], None
            rec["data"]["formatting"]["train"] = counts
        else:
            features = tokenize(state["tokenizer"], splits.train_texts, cfg.data.max_length)
    reset_peak(state["device"])
    gpu_ids = [0] if state["device"].startswith("cuda") else []
    meter = EnergyMeter(cfg.cost.country_iso_code, cfg.cost.energy_measure_s, gpu_ids, phase="train")
    meter.start()
    result = TrainResult()
    try:
        with tqdm(total=state["steps"], desc=f"train {cfg.method.name}", unit="step", leave=False) as bar:
            train(state["model"], state["tokenizer"], features, labels, cfg.train,
                  method=state["method"], total_steps=state["steps"], device=state["device"],
                  precision=state["precision"], clock=clock, progress=bar, result=result,
                  guard=_budget_guard(state))
    finally:  # on failure too: the record keeps what was measured so far
        rec["train"] = _train_summary(state, result, meter.stop(), trainable, total)
    rec["method_report"] = state["method"].report(state["model"])


def _train_summary(state: dict, result, energy: dict, trainable: int, total: int) -> dict:
    from bench.measure.memory import peak_memory

    n_devices = state["devinfo"]["count"]
    return {
        **result.summary(),
        "wall_s_covers": "training loop only (optimizer steps incl. batch padding); loading, tokenization, "
                         "evaluation excluded; device synchronized before each clock read",
        "device_hours": cost_mod.device_hours(result.wall_s, n_devices),
        "devices": n_devices,
        **peak_memory(state["device"]),
        **energy,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_fraction": trainable / total,
        "losses": [round(x, 6) for x in result.losses],
    }


def _stage_evaluate(plan, rec, state) -> None:
    from bench.evaluation import evaluate_generative, evaluate_model, majority_baseline

    cfg, splits = plan.cfg, state["splits"]
    with state["clock"].phase("evaluate"):
        if cfg.task != "causal_lm":
            rec.update(evaluate_model(state["model"], state["tokenizer"], splits, cfg,
                                      device=state["device"], precision=state["precision"]))
            return
        result = evaluate_generative(state["model"], state["tokenizer"], state["formatter"], splits, cfg,
                                     device=state["device"], precision=state["precision"],
                                     outputs_path=_outputs_path(rec, state, "outputs"))
    from bench.config import primary_metric

    result["eval"]["primary_metric"] = primary_metric(cfg)
    rec["quality"], rec["eval"] = result["quality"], result["eval"]
    baseline = rec.setdefault("baseline", {})
    if splits.label_names:
        label_ids = list(range(len(splits.label_names)))
        baseline["majority_class"] = majority_baseline(splits.train_labels, splits.test_labels,
                                                       [m for m in cfg.eval.metrics if m != "exact_match"], label_ids)


def _stage_serve(plan, rec, state) -> None:
    from bench.serve import serve_test

    cfg = plan.cfg
    if not cfg.serve.enabled:
        rec["serve"] = {"enabled": False}
        return
    variant = "full" if cfg.method.name == "full" else "unmerged"
    if cfg.serve.engine == "vllm":
        from pathlib import Path

        from bench.serve_vllm import serve_vllm

        log_dir = Path(state["results_dir"]) / "logs" / rec["run_id"] if state.get("results_dir") else None
        if log_dir:
            log_dir.mkdir(parents=True, exist_ok=True)
        with state["clock"].phase("serve"):
            rec["serve"] = serve_vllm(cfg, state["model"], state["tokenizer"], state["formatter"], state["splits"],
                                      cfg.method.name,
                                      usd_per_hour=state["price"]["usd_per_hour"],
                                      devices=state["devinfo"]["count"], log_dir=log_dir)
        return
    if cfg.serve.engine == "openai":
        from bench.serve_vllm import serve_openai

        with state["clock"].phase("serve"):
            rec["serve"] = serve_openai(cfg, state["formatter"], state["splits"],
                                        usd_per_hour=state["price"]["usd_per_hour"], devices=state["devinfo"]["count"])
        return
    if cfg.task == "causal_lm":
        _serve_generative(plan, rec, state, variant)
        return
    with state["clock"].phase("serve"):
        rec["serve"] = serve_test(state["model"], state["tokenizer"], state["splits"].test_texts, cfg.serve,
                                  max_length=cfg.data.max_length, device=state["device"],
                                  precision=state["precision"], usd_per_hour=state["price"]["usd_per_hour"],
                                  n_devices=state["devinfo"]["count"], variant=variant)


def _serve_generative(plan, rec, state, variant: str) -> None:
    from bench.generate import stop_token_ids
    from bench.serve import serve_generative

    cfg, formatter, splits = plan.cfg, state["formatter"], state["splits"]
    prompts = [e.prompt_ids for e in formatter.encode_many(splits.test_texts, splits.test_labels, splits.test_fields)]
    with state["clock"].phase("serve"):
        rec["serve"] = serve_generative(
            state["model"], state["tokenizer"], prompts, cfg.serve, max_new_tokens=cfg.eval.max_new_tokens,
            stop_ids=stop_token_ids(state["tokenizer"], state["model"], formatter), device=state["device"],
            precision=state["precision"], usd_per_hour=state["price"]["usd_per_hour"],
            n_devices=state["devinfo"]["count"], variant=variant)


def _stage_cost(plan, rec, state) -> None:
    card, price = state["card"], state["price"]
    usd_per_kwh = (card.get("usd_per_kwh") or {}).get("value")
    train = rec["train"]
    rec["cost"] = {
        "train_usd": cost_mod.device_time_usd(train["wall_s"], train["devices"], price["usd_per_hour"]),
        "train_usd_covers": "training phase device-hours x hourly device price",
        "usd_per_hour": price["usd_per_hour"],
        "price_device": state["price_key"],
        "devices": train["devices"],
        "serve_usd_per_1k_requests": rec["serve"].get("usd_per_1k_requests"),
        "serve_usd_per_1m_output_tokens": rec["serve"].get("usd_per_1m_output_tokens"),
        "train_energy_usd": cost_mod.energy_usd(train["energy_kwh"], usd_per_kwh) if usd_per_kwh else None,
        "price_card": card,
    }
    rec["tco"] = run_tco(rec, dataclasses.asdict(plan.cfg.traffic))
    rec["phases_wall_s"] = dict(state["clock"].wall_s)
    account(rec, state)


def run_tco(rec: dict, traffic: dict) -> dict:
    """Training $ + serving $ over the traffic's months, replicas sized from the measured capacity."""
    out = tco.for_record(rec, traffic)
    if out is None:
        return {"usd": None, "traffic": traffic, "covers": "not computed: no serving capacity was measured"}
    return {**out, "traffic": traffic, "capacity_basis": rec["serve"].get("cost_basis"),
            "covers": "training-phase $ + replicas x devices x hourly price x 730 h/month x months; replicas carry "
                      "the peak at the capacity measured under the SLO (serve.capacity_requests_s)"}


STAGE_FUNCTIONS = {
    "data": _stage_data, "model": _stage_model,
    "base_model": functools.partial(_stage_baseline, when="before_train"),
    "train": _stage_train, "evaluate": _stage_evaluate,
    "base_model_after": functools.partial(_stage_baseline, when="after_train"),
    "serve": _stage_serve, "cost": _stage_cost,
}
STAGES = tuple(STAGE_FUNCTIONS)


def stages_for(cfg) -> list[str]:
    """The stages a run goes through: the base-model stage that applies, or none."""
    skip = {"base_model", "base_model_after"}
    if cfg.task == "causal_lm" and cfg.eval.base_model:
        skip.discard("base_model_after" if cfg.method.name != "full" else "base_model")
    return [s for s in STAGES if s not in skip]
