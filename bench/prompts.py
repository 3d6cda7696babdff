"""causal_lm data formatting: a row becomes prompt tokens and response tokens.

The prompt is ``prompt.template`` filled from the row (``{text}`` and other columns),
wrapped in the tokenizer's chat template as a user turn (with the generation prompt)
where there is one. The response is ``prompt.response_template`` filled with the
row's answer, followed by the end-of-turn text the chat template adds (or the EOS
token without a chat template), so the model learns to stop.

Prompt and response are tokenized separately and concatenated: generation sees
exactly the prompt tokens the model was trained on. Labels are -100 on every prompt
token, so the loss covers the response only. A row longer than ``data.max_length``
has its ``{text}`` field shortened (never the instruction or the answer), and is counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.config import Config, ConfigError, PromptConfig, template_fields

IGNORE_INDEX = -100  # label of a position that carries no loss


def split_options(cfg: Config) -> dict:
    """What `sources.build_splits` must keep for this task: template columns, free-text answers."""
    if cfg.task != "causal_lm":
        return {}
    fields = tuple(dict.fromkeys(f for f in template_fields(cfg.prompt.template) if f != "text"))
    return {"fields": fields, "free_text": not cfg.prompt.label_words}


@dataclass
class Encoded:
    input_ids: list
    labels: list  # IGNORE_INDEX on prompt positions
    prompt_len: int
    truncated: bool

    @property
    def prompt_ids(self) -> list:
        """The prompt alone: what generation starts from."""
        return self.input_ids[: self.prompt_len]

    def feature(self) -> dict:
        return {"input_ids": self.input_ids, "attention_mask": [1] * len(self.input_ids), "labels": self.labels}


class Formatter:
    """Renders and tokenizes rows for one tokenizer and prompt config."""

    def __init__(self, tokenizer, cfg: PromptConfig, label_names: list, max_length: int):
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.label_names = list(label_names)
        self.max_length = max_length
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if cfg.chat_template is True and not has_template:
            raise ConfigError("prompt.chat_template: true but the tokenizer has no chat template")
        self.use_chat = cfg.chat_template is True or (cfg.chat_template == "auto" and has_template)
        if not self.use_chat and tokenizer.eos_token_id is None:
            raise ConfigError("model.id: the tokenizer has no EOS token to end responses with (not a causal LM?)")

    # ----------------------------------------------------------------- text

    def answer(self, label) -> str:
        """The answer text of a row: its label's word, or the free-text label itself."""
        if self.cfg.label_words:
            return str(self.cfg.label_words[self.label_names[label]])
        return str(label)

    def user_text(self, text: str, fields: dict | None = None) -> str:
        return self.cfg.template.format_map({**(fields or {}), "text": text})

    def _messages(self, user: str) -> list[dict]:
        messages = [{"role": "system", "content": self.cfg.system}] if self.cfg.system is not None else []
        return messages + [{"role": "user", "content": user}]

    def prompt_text(self, text: str, fields: dict | None = None) -> str:
        user = self.user_text(text, fields)
        if not self.use_chat:
            return user
        return self.tokenizer.apply_chat_template(self._messages(user), tokenize=False, add_generation_prompt=True)

    def response_text(self, answer: str, prompt: str | None = None, user: str = "x") -> str:
        """The response as trained: the filled template plus the chat template's end of turn."""
        response = self.cfg.response_template.format_map({"answer": answer})
        if not self.use_chat:
            return response  # the EOS token id is appended after tokenization
        messages = self._messages(user)
        prompt = prompt if prompt is not None else self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True)
        full = self.tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": response}],
                                                  tokenize=False)
        if not full.startswith(prompt):
            raise ConfigError("prompt.chat_template: the tokenizer's chat template does not extend the prompt "
                              "with the response; set prompt.chat_template: false")
        return full[len(prompt):].rstrip()

    def end_of_turn_id(self) -> int | None:
        """The token that closes a response: EOS, or the chat template's end-of-turn special token."""
        if not self.use_chat:
            return self.tokenizer.eos_token_id
        ids = self._ids(self.response_text("x"), special=False)
        return ids[-1] if ids and ids[-1] in set(self.tokenizer.all_special_ids) else None

    # ----------------------------------------------------------------- tokens

    def _ids(self, text: str, special: bool) -> list:
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def _encode_once(self, text: str, fields: dict | None, answer: str) -> tuple[list, list]:
        user = self.user_text(text, fields)
        prompt = self.prompt_text(text, fields)
        # A chat template writes its own special tokens; a plain prompt gets the tokenizer's (e.g. BOS).
        prompt_ids = self._ids(prompt, special=not self.use_chat)
        response_ids = self._ids(self.response_text(answer, prompt, user), special=False)
        if not self.use_chat:
            response_ids = response_ids + [self.tokenizer.eos_token_id]
        return prompt_ids, response_ids

    def encode(self, text: str, label, fields: dict | None = None) -> Encoded:
        """Prompt + response ids, labels masked on the prompt, fitted into ``max_length``."""
        answer = self.answer(label)
        truncated = False
        for _ in range(8):
            prompt_ids, response_ids = self._encode_once(text, fields, answer)
            over = len(prompt_ids) + len(response_ids) - self.max_length
            if over <= 0:
                ids = prompt_ids + response_ids
                labels = [IGNORE_INDEX] * len(prompt_ids) + response_ids
                return Encoded(ids, labels, len(prompt_ids), truncated)
            text_ids = self._ids(text, special=False)
            if len(text_ids) <= 1:
                break
            text = self.tokenizer.decode(text_ids[: max(1, len(text_ids) - over - 1)])
            truncated = True
        raise ConfigError(
            f"data.max_length: {self.max_length} tokens cannot hold the prompt template and the answer "
            f"(needs {len(prompt_ids) + len(response_ids) - len(self._ids(text, special=False))} without the text)"
        )

    def encode_many(self, texts: list, labels: list, fields: list | None = None) -> list[Encoded]:
        fields = fields or [{}] * len(texts)
        return [self.encode(t, y, f) for t, y, f in zip(texts, labels, fields)]

    def encode_all(self, texts: list, labels: list, fields: list | None = None) -> tuple[list, dict]:
        """Encoded rows and counts: examples, truncated, prompt and response tokens."""
        rows = self.encode_many(texts, labels, fields)
        counts = {
            "examples": len(rows),
            "truncated_examples": sum(r.truncated for r in rows),
            "prompt_tokens": sum(r.prompt_len for r in rows),
            "response_tokens": sum(len(r.input_ids) - r.prompt_len for r in rows),
        }
        return rows, counts

    def describe(self) -> dict:
        """What the record keeps about formatting: enough to re-render any example."""
        example = self.prompt_text("<text>", {name: f"<{name}>" for name in template_fields(self.cfg.template)})
        return {
            "chat_template": self.use_chat,
            "system": self.cfg.system,
            "template": self.cfg.template,
            "response_template": self.cfg.response_template,
            "label_words": dict(self.cfg.label_words),
            "rendered_prompt_example": example,
            "loss_on": "response tokens only (prompt positions are labelled -100)",
        }
