"""Config loading and validation: every error names the dotted key."""

from __future__ import annotations

import pytest

from bench import config
from bench.config import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def load_error(tmp_path, text: str, overrides=None) -> str:
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, text), overrides)
    return str(info.value)


def test_defaults_load(tmp_path):
    _, cfg = config.load(write(tmp_path, "name: x\n"))
    assert cfg.method.name == "lora" and cfg.train.lr == 5e-4 and cfg.data.test_size == 1200


def test_unknown_key_did_you_mean(tmp_path):
    msg = load_error(tmp_path, "train:\n  lrate: 0.1\n")
    assert "train.lrate: unknown key" in msg and "did you mean 'lr'" in msg


def test_unknown_section(tmp_path):
    assert "trian: unknown key (did you mean 'train'?)" in load_error(tmp_path, "trian: {}\n")


def test_wrong_type_names_key(tmp_path):
    msg = load_error(tmp_path, "train:\n  batch_size: eight\n")
    assert "train.batch_size: expected an integer" in msg
    assert "train.epochs: expected a number" in load_error(tmp_path, "train:\n  epochs: true\n")


def test_unknown_method(tmp_path):
    msg = load_error(tmp_path, "method:\n  name: qlorra\n")
    assert "method.name: must be one of lora, qlora, adalora, full" in msg and "did you mean 'qlora'" in msg


@pytest.mark.parametrize("key,value", [("train.lr", -0.1), ("train.lr", 0), ("train.batch_size", 0),
                                       ("train.epochs", -1)])
def test_non_positive_rejected(tmp_path, key, value):
    section, name = key.split(".")
    msg = load_error(tmp_path, f"{section}:\n  {name}: {value}\n")
    assert f"{key}: must be > 0" in msg


def test_invalid_yaml_names_file_and_line(tmp_path):
    msg = load_error(tmp_path, "train:\n  lr: [1, 2\n")
    assert "c.yaml: invalid YAML at line" in msg


def test_missing_file():
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        config.load("nope.yaml")


def test_set_overrides_parse_yaml_values(tmp_path):
    _, cfg = config.load(write(tmp_path, "name: x\n"), ["train.lr=1e-4", "serve.batch_sizes=[1, 2]",
                                                         "tags.team=search", "method.target_modules=all-linear"])
    assert cfg.train.lr == 1e-4 and cfg.serve.batch_sizes == [1, 2]
    assert cfg.tags == {"team": "search"} and cfg.method.target_modules == "all-linear"


def test_set_unknown_key(tmp_path):
    msg = load_error(tmp_path, "name: x\n", ["train.lrr=1"])
    assert "--set train.lrr: unknown key (did you mean 'lr'?)" in msg


def test_yaml_cannot_construct_objects(tmp_path):
    msg = load_error(tmp_path, "name: !!python/object/apply:os.system ['echo hi']\n")
    assert "invalid YAML" in msg


def test_target_modules_string_must_be_known(tmp_path):
    assert "method.target_modules" in load_error(tmp_path, "method:\n  target_modules: query\n")
