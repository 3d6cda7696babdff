"""Leaderboard arithmetic, ranking and Pareto marking on hand-made records."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from bench import leaderboard, record, tco
from tests.test_record import ok_record


# 86,400 requests/day = 1 request/s on average, peak 2/s; $1/h on one device: $730 a month per replica.
TRAFFIC = {"requests_per_day": 86_400, "input_tokens": 100, "output_tokens": 10, "cached_input_fraction": 0.0,
           "peak_to_average": 2.0, "months": 1.0}


def rec(run_id, method, acc, train_usd, capacity, majority=0.6, status="ok", seed=0):
    r = ok_record()
    r.update(run_id=run_id, method=method, status=status,
             config={"name": "x", "model": {"id": "m"}, "method": {"name": method}, "train": {"seed": seed},
                     "traffic": dict(TRAFFIC)})
    r["quality"] = {"accuracy": acc, "f1": acc - 0.01}
    r["baseline"]["majority_class"]["accuracy"] = majority
    r["cost"].update(train_usd=train_usd, usd_per_hour=1.0, devices=1)
    r["serve"]["capacity_requests_s"] = capacity
    if capacity:
        r["tco"] = tco.self_hosted(TRAFFIC, capacity, 1.0, 1, train_usd)
    return r


RECORDS = [
    rec("a-lora-1", "lora", 0.80, 10.0, 2.0),      # 1 replica: TCO 10 + 730 = 740, gain 20 -> 0.02703 pts/$
    rec("b-full-1", "full", 0.85, 40.0, 2.0),      # TCO 770, gain 25 -> 0.03247 pts/$ (first)
    rec("c-qlora-1", "qlora", 0.78, 15.0, 1.0),    # peak 2/s at 1/s: 2 replicas, TCO 1,475, gain 18; dominated by a
    rec("d-adalora-1", "adalora", 0.55, 5.0, 2.0),  # TCO 735, gain -5 -> n/a, but cheapest: Pareto
]


def test_row_arithmetic():
    row = leaderboard.row_for(RECORDS[0], TRAFFIC)
    assert row["replicas"] == 1 and row["utilization"] == pytest.approx(0.5)  # 1/s used of 2/s provisioned
    assert row["serve_usd_per_month"] == pytest.approx(730.0)
    assert row["tco_usd"] == pytest.approx(740.0)
    assert row["gain_points"] == pytest.approx(20.0)
    assert row["points_per_tco_usd"] == pytest.approx(20.0 / 740.0)
    assert row["usd_per_point"] == pytest.approx(37.0)
    busy = leaderboard.row_for(RECORDS[0], {**TRAFFIC, "requests_per_day": 4 * 86_400, "months": 2.0})
    assert busy["replicas"] == 4 and busy["tco_usd"] == pytest.approx(10.0 + 4 * 730.0 * 2)  # peak 8/s at 2/s each
    assert leaderboard.row_for(RECORDS[2], TRAFFIC)["replicas"] == 2


def test_ranking_and_pareto():
    rows = leaderboard.table_rows(RECORDS, TRAFFIC)
    assert [r["run_id"] for r in rows] == ["b-full-1", "a-lora-1", "c-qlora-1", "d-adalora-1"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    pareto = {r["run_id"]: r["pareto"] for r in rows}
    assert pareto == {"a-lora-1": True, "b-full-1": True, "c-qlora-1": False, "d-adalora-1": True}
    assert rows[-1]["points_per_tco_usd"] is None
    by_id = {r["run_id"]: r for r in rows}
    assert by_id["b-full-1"]["break_even_vs_first"] is None  # itself
    assert by_id["a-lora-1"]["break_even_vs_first"] is None  # same $730/month: 10 + 730 m never meets 40 + 730 m
    # c: 15 + 1,460 m against b's 40 + 730 m: equal at m = 25 / 730; after that b is the cheaper
    assert by_id["c-qlora-1"]["break_even_vs_first"] == pytest.approx(25 / 730)


def test_build_writes_md_csv_and_failed_section(tmp_path):
    for r in RECORDS + [rec("e-lora-x", "lora", 0, 0, 0, status="oom")]:
        if r["status"] != "ok":
            r = {k: v for k, v in r.items() if k not in ("quality",)}
            r["failed_stage"], r["error"] = "train", {"message": "CUDA out of memory"}
        record.write_new(tmp_path, r)
    paths = leaderboard.build(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "86,400 requests/day" in md and "## Failed runs" in md and "CUDA out of memory" in md
    assert md.index("b-full-1") < md.index("a-lora-1") < md.index("c-qlora-1")
    with open(tmp_path / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and rows[0]["run_id"] == "b-full-1" and float(rows[0]["tco_usd"]) == 770.0
    assert (tmp_path / "leaderboard.png").stat().st_size > 1000 and len(paths) == 4
    # --traffic overrides the records' own: 4x the requests needs 4 replicas for a (8/s peak at 2/s)
    leaderboard.build(tmp_path, traffic={"requests_per_day": 4 * 86_400})
    with open(tmp_path / "leaderboard.csv") as f:
        a = next(r for r in csv.DictReader(f) if r["run_id"] == "a-lora-1")
    assert int(a["replicas"]) == 4 and float(a["tco_usd"]) == pytest.approx(10 + 4 * 730)
    assert float(a["traffic_requests_per_day"]) == 4 * 86_400 and float(a["traffic_months"]) == 1.0


def test_api_models_priced_at_the_same_traffic(tmp_path):
    card = tmp_path / "api.yaml"
    card.write_text("models:\n  cheap-api: {usd_per_1m_input: 1.0, usd_per_1m_output: 4.0}\n"
                    "  dear-api: {usd_per_1m_input: 10.0, usd_per_1m_cached_input: 1.0, usd_per_1m_output: 40.0}\n")
    rows = leaderboard.table_rows(RECORDS, TRAFFIC)
    apis = {r["model"]: r for r in leaderboard.api_rows(leaderboard.api_card_for([], str(card)), TRAFFIC, rows)}
    # (100 x $1 + 10 x $4) / 1M = $0.00014 a request; x 86,400 a day x 365/12 days
    assert apis["cheap-api"]["usd_per_request"] == pytest.approx(1.4e-4)
    assert apis["cheap-api"]["usd"] == pytest.approx(1.4e-4 * 86_400 * 365 / 12)
    assert apis["cheap-api"]["break_even"] is None  # $367.92/month beats b's $730: the run never catches up
    # dear: $0.0014 a request, $3,679.20 a month; b (40 + 730 m) is cheaper from 40 / 2,949.2 months on
    assert apis["dear-api"]["break_even"] == pytest.approx(40 / (1.4e-3 * 86_400 * 365 / 12 - 730))
    assert apis["dear-api"]["vs"] == "full: $770.00 (lower over 1 months)"
    assert "higher" in apis["cheap-api"]["vs"]


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
    return [rec(f"{method}-{s}", method, a, train_usd, 2.0, seed=s) for s, a in enumerate(accs)]


def test_seeds_aggregate_and_overlapping_intervals_tie():
    records = (seeded("lora", [0.80, 0.82, 0.78], 1.0) + seeded("qlora", [0.79, 0.83, 0.77], 1.0)
               + seeded("full", [0.85, 0.85, 0.85], 4000.0))
    recipes = leaderboard.recipe_rows(leaderboard.table_rows(records, TRAFFIC))
    by_method = {r["method"]: r for r in recipes}
    assert {r["n"] for r in recipes} == {3} and by_method["lora"]["seeds"] == [0, 1, 2]
    assert by_method["lora"]["accuracy"]["mean"] == pytest.approx(0.80)
    # lora and qlora: same TCO ($731) and overlapping pts/$ intervals -> tied at rank 1
    assert by_method["lora"]["tco_usd"]["mean"] == pytest.approx(731.0)
    assert by_method["lora"]["rank"] == by_method["qlora"]["rank"] == 1
    assert by_method["lora"]["tie"] and by_method["qlora"]["tie"]
    # full: $4,730 TCO for 25 points (0.0053 pts/$), far below lora's interval: its own rank
    assert by_method["full"]["rank"] == 3 and not by_method["full"]["tie"]
    md = leaderboard.markdown([], [], recipes)
    assert "mean ± 95% CI" in md and "| =1 |" in md


def gen_rec(run_id, method, acc, base_acc, train_usd, capacity, weights="dense"):
    r = rec(run_id, method, acc, train_usd, capacity, majority=0.58)
    r["task"] = "causal_lm"
    r["eval"] = {"primary_metric": "accuracy", "unparseable_rate": 0.01}
    r["baseline"]["base_model"] = {"accuracy": base_acc, "f1": base_acc - 0.2, "weights": weights,
                                   "test_hash": "sha256:t", "unparseable_rate": 0.02, "n_examples": 300}
    return r


def test_tasks_are_ranked_apart_and_causal_gain_is_over_the_base_model(tmp_path):
    records = RECORDS[:2] + [
        gen_rec("g-lora-1", "lora", 0.80, 0.60, 2.0, 2.0),             # TCO 732, gain 20 -> $36.6 a point
        gen_rec("h-qlora-1", "qlora", 0.75, 0.55, 1.0, 2.0, "nf4"),    # TCO 731, gain 20 -> ranked first
    ]
    rows = leaderboard.table_rows(records, TRAFFIC)
    assert [(r["task"], r["run_id"], r["rank"]) for r in rows] == [
        ("seq_cls", "b-full-1", 1), ("seq_cls", "a-lora-1", 2), ("causal_lm", "h-qlora-1", 1),
        ("causal_lm", "g-lora-1", 2)]
    g = next(r for r in rows if r["run_id"] == "g-lora-1")
    assert g["baseline"] == "base model" and g["baseline_quality"] == 0.60
    assert g["gain_points"] == pytest.approx(20.0) and g["usd_per_point"] == pytest.approx(36.6)
    # Each board is priced at its own runs' traffic: 2 months for the causal runs here, 1 for seq_cls.
    longer = [dict(r, config={**r["config"], "traffic": {**TRAFFIC, "months": 2.0}}) for r in records[2:]]
    mixed = {r["run_id"]: r for r in leaderboard.table_rows(records[:2] + longer)}
    assert mixed["g-lora-1"]["tco_usd"] == pytest.approx(2.0 + 730 * 2) and mixed["g-lora-1"]["traffic"]["months"] == 2
    assert mixed["a-lora-1"]["tco_usd"] == pytest.approx(740.0)
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
