"""Leaderboard arithmetic, ranking and Pareto marking on hand-made records."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from bench import leaderboard, record
from tests.test_record import ok_record


def rec(run_id, method, acc, train_usd, per_1k, majority=0.6, status="ok", seed=0):
    r = ok_record()
    r.update(run_id=run_id, method=method, status=status,
             config={"name": "x", "model": {"id": "m"}, "method": {"name": method}, "train": {"seed": seed},
                     "cost": {"leaderboard_requests": 1000}})
    r["quality"] = {"accuracy": acc, "f1": acc - 0.01}
    r["baseline"]["majority_class"]["accuracy"] = majority
    r["cost"]["train_usd"] = train_usd
    r["serve"]["usd_per_1k_requests"] = per_1k
    return r


RECORDS = [
    rec("a-lora-1", "lora", 0.80, 1.0, 1.0),     # total 1 + 1 = 2.0, gain 20 -> 0.10 $/pt
    rec("b-full-1", "full", 0.85, 4.0, 1.0),     # total 5.0, gain 25 -> 0.20 $/pt
    rec("c-qlora-1", "qlora", 0.78, 1.5, 1.0),   # total 2.5, gain 18 -> 0.139; dominated by a
    rec("d-adalora-1", "adalora", 0.55, 0.5, 0.5),  # total 1.0, gain -5 -> n/a, but cheapest: Pareto
]


def test_row_arithmetic():
    row = leaderboard.row_for(RECORDS[0], requests=1000)
    assert row["serve_usd"] == pytest.approx(1.0)
    assert row["total_usd"] == pytest.approx(2.0)
    assert row["gain_points"] == pytest.approx(20.0)
    assert row["usd_per_point"] == pytest.approx(0.1)
    assert leaderboard.row_for(RECORDS[0], requests=3000)["total_usd"] == pytest.approx(4.0)


def test_ranking_and_pareto():
    rows = leaderboard.table_rows(RECORDS, requests=1000)
    assert [r["run_id"] for r in rows] == ["a-lora-1", "c-qlora-1", "b-full-1", "d-adalora-1"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    pareto = {r["run_id"]: r["pareto"] for r in rows}
    assert pareto == {"a-lora-1": True, "b-full-1": True, "c-qlora-1": False, "d-adalora-1": True}
    assert rows[-1]["usd_per_point"] is None


def test_build_writes_md_csv_and_failed_section(tmp_path):
    for r in RECORDS + [rec("e-lora-x", "lora", 0, 0, 0, status="oom")]:
        if r["status"] != "ok":
            r = {k: v for k, v in r.items() if k not in ("quality",)}
            r["failed_stage"], r["error"] = "train", {"message": "CUDA out of memory"}
        record.write_new(tmp_path, r)
    paths = leaderboard.build(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "1,000 requests" in md and "## Failed runs" in md and "CUDA out of memory" in md
    assert md.index("a-lora-1") < md.index("c-qlora-1") < md.index("b-full-1")
    with open(tmp_path / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and rows[0]["run_id"] == "a-lora-1" and float(rows[0]["total_usd"]) == 2.0
    assert (tmp_path / "leaderboard.png").stat().st_size > 1000 and len(paths) == 4


def test_leaderboard_never_imports_torch():
    code = "import sys, bench.leaderboard, bench.plan, bench.config; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_interval_hand_computed():
    stat = leaderboard.interval([0.80, 0.82, 0.84])
    # mean 0.82, sample std 0.02, t(0.975, df=2) = 4.302653: half-width = 4.302653 x 0.02 / sqrt(3)
    assert stat["mean"] == pytest.approx(0.82) and stat["std"] == pytest.approx(0.02)
    assert stat["ci95"] == pytest.approx(0.0496827, rel=1e-5) and stat["n"] == 3
    assert leaderboard.interval([0.5])["ci95"] is None


def seeded(method, accs, train_usd):
    return [rec(f"{method}-{s}", method, a, train_usd, 1.0, seed=s) for s, a in enumerate(accs)]


def test_seeds_aggregate_and_overlapping_intervals_tie():
    records = (seeded("lora", [0.80, 0.82, 0.78], 1.0) + seeded("qlora", [0.79, 0.83, 0.77], 1.0)
               + seeded("full", [0.85, 0.85, 0.85], 40.0))
    recipes = leaderboard.recipe_rows(leaderboard.table_rows(records, requests=1000))
    by_method = {r["method"]: r for r in recipes}
    assert {r["n"] for r in recipes} == {3} and by_method["lora"]["seeds"] == [0, 1, 2]
    assert by_method["lora"]["accuracy"]["mean"] == pytest.approx(0.80)
    # lora and qlora: same mean $ (2.0) and overlapping $/pt intervals -> tied at rank 1
    assert by_method["lora"]["rank"] == by_method["qlora"]["rank"] == 1
    assert by_method["lora"]["tie"] and by_method["qlora"]["tie"]
    # full: $41 total for 25 points, far outside: its own rank
    assert by_method["full"]["rank"] == 3 and not by_method["full"]["tie"]
    md = leaderboard.markdown([], [], 1000, recipes)
    assert "mean ± 95% CI" in md and "| =1 |" in md


def gen_rec(run_id, method, acc, base_acc, train_usd, per_1k, weights="dense"):
    r = rec(run_id, method, acc, train_usd, per_1k, majority=0.58)
    r["task"] = "causal_lm"
    r["eval"] = {"primary_metric": "accuracy", "unparseable_rate": 0.01}
    r["baseline"]["base_model"] = {"accuracy": base_acc, "f1": base_acc - 0.2, "weights": weights,
                                   "test_hash": "sha256:t", "unparseable_rate": 0.02, "n_examples": 300}
    return r


def test_tasks_are_ranked_apart_and_causal_gain_is_over_the_base_model(tmp_path):
    records = RECORDS[:2] + [
        gen_rec("g-lora-1", "lora", 0.80, 0.60, 2.0, 1.0),             # total 3.0, gain 20 -> 0.15 $/pt
        gen_rec("h-qlora-1", "qlora", 0.75, 0.55, 1.0, 1.0, "nf4"),    # total 2.0, gain 20 -> 0.10 $/pt
    ]
    rows = leaderboard.table_rows(records, requests=1000)
    assert [(r["task"], r["run_id"], r["rank"]) for r in rows] == [
        ("seq_cls", "a-lora-1", 1), ("seq_cls", "b-full-1", 2), ("causal_lm", "h-qlora-1", 1),
        ("causal_lm", "g-lora-1", 2)]
    g = next(r for r in rows if r["run_id"] == "g-lora-1")
    assert g["baseline"] == "base model" and g["baseline_quality"] == 0.60
    assert g["gain_points"] == pytest.approx(20.0) and g["usd_per_point"] == pytest.approx(0.15)
    # Pareto is within a task: the cheaper seq_cls lora does not dominate the causal runs.
    assert all(r["pareto"] for r in rows if r["task"] == "causal_lm")
    refs = leaderboard.reference_rows(records)
    assert {(r["weights"], r["accuracy"]) for r in refs} == {("dense", 0.60), ("nf4", 0.55)}
    for r in records:
        record.write_new(tmp_path, r)
    leaderboard.build(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    seq, gen = md.index("## Sequence classification"), md.index("## Generative")
    assert seq < md.index("a-lora-1") < gen < md.index("h-qlora-1")
    assert "Reference: the un-tuned base model" in md[gen:] and "| m | nf4 | accuracy | 0.5500 |" in md
