"""Sweep expansion, step counts and run ids."""

from __future__ import annotations

import pytest

from bench import plan
from bench.config import ConfigError


def test_grid_times_variants_in_order():
    raw = {"name": "s", "sweep": {"train.seed": [0, 1, 2],
                                  "variants": [{"method.name": "lora"}, {"method.name": "full", "train.lr": 5e-5}]}}
    plans = plan.expand(raw)
    assert len(plans) == 6
    assert [(p.config["method"]["name"], p.config["train"]["seed"]) for p in plans] == [
        ("lora", 0), ("lora", 1), ("lora", 2), ("full", 0), ("full", 1), ("full", 2)]
    assert [p.config["train"]["lr"] for p in plans[3:]] == [5e-5] * 3
    assert [p.index for p in plans] == [1, 2, 3, 4, 5, 6] and {p.total for p in plans} == {6}
    assert len({p.run_id for p in plans}) == 6


def test_run_id_stable_and_derived_from_the_resolved_config():
    a = plan.expand({"name": "Exp 1", "tags": {"team": "a"}})[0]
    a2 = plan.expand({"name": "Exp 1", "tags": {"team": "a"}, "train": {"lr": 5e-4}})[0]  # the default, spelled out
    b = plan.expand({"name": "Exp 1", "tags": {"team": "b"}})[0]  # another team's spend is another run
    c = plan.expand({"name": "Exp 1", "tags": {"team": "a"}, "train": {"lr": 1e-3}})[0]
    assert a.run_id == a2.run_id and len({a.run_id, b.run_id, c.run_id}) == 3
    assert a.run_id.startswith("exp-1-lora-") and len(a.run_id.rsplit("-", 1)[1]) == 10


def test_duplicate_points_collapse():
    plans = plan.expand({"sweep": {"method.name": ["lora", "lora"]}})
    assert len(plans) == 1


def test_planned_steps():
    p = plan.expand({"data": {"train_size": 100}, "train": {"batch_size": 8, "grad_accum": 2, "epochs": 3}})[0]
    assert p.planned_steps == 3 * 7  # ceil(100 / 16) = 7 per epoch
    assert plan.total_steps(100, 8, 1, 1.5, None) == 20  # ceil(1.5 x 13) = ceil(19.5)
    assert plan.total_steps(100, 8, 1, 2, 5) == 5


@pytest.mark.parametrize("sweep,msg", [
    ({"train.lrr": [1]}, "sweep.train.lrr: unknown key"),
    ({"train.lr": []}, "sweep.train.lr: empty list"),
    ({"train.lr": 0.1}, "sweep.train.lr: must be a list"),
    ({"train.lr": [-1]}, "train.lr: must be > 0"),
    ({"variants": []}, "sweep.variants: must be a non-empty list"),
])
def test_bad_sweeps(sweep, msg):
    with pytest.raises(ConfigError, match=msg.replace(".", r"\.")):
        plan.expand({"sweep": sweep})
