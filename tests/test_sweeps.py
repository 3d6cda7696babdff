"""Sweeps you can trust: resume, kill -9 and resume, failures as records, budgets, spend, bad input."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench import plan, record, runner
from bench.budget import Allowance, BudgetExceeded, SweepBudget


def write_config(tmp_path, cfg: dict) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def bench(*args, **kw):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=900, **kw)


def files(results: Path) -> list[Path]:
    return sorted((results / "runs").glob("*.json"))


def test_resume_skips_recorded_runs_and_rerun_keeps_old_records(make_config, tmp_path):
    cfg = write_config(tmp_path, make_config(sweep={"train.seed": [0, 1]}, train={"max_steps": 2}))
    results = tmp_path / "r"
    assert bench("run", str(cfg), "--results", str(results)).returncode == 0
    first = {p: p.read_bytes() for p in files(results)}
    assert len(first) == 2
    again = bench("run", str(cfg), "--results", str(results))
    assert again.returncode == 0 and again.stderr.count("skipped, already recorded (ok)") == 2
    assert {p: p.read_bytes() for p in files(results)} == first  # nothing rewritten
    rerun = bench("run", str(cfg), "--results", str(results), "--rerun")
    assert rerun.returncode == 0 and len(files(results)) == 4
    assert all(p.read_bytes() == b for p, b in first.items())  # older records never overwritten


def test_records_from_another_checkout_never_cause_a_skip(make_config, tmp_path):
    cfg = write_config(tmp_path, make_config(train={"max_steps": 2}))
    results = tmp_path / "r"
    assert bench("run", str(cfg), "--results", str(results)).returncode == 0
    (results / ".checkout-id").unlink()  # as in a fresh clone: the published record is someone else's
    out = bench("run", str(cfg), "--results", str(results))
    assert out.returncode == 0 and "skipped" not in out.stderr and len(files(results)) == 2


@pytest.mark.parametrize("kill_after_records", [0, 1])
def test_sigkill_then_resume_records_every_run_exactly_once(make_config, tmp_path, kill_after_records):
    cfg = write_config(tmp_path, make_config(sweep={"train.seed": [0, 1, 2]}, train={"max_steps": 3}))
    results = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", str(cfg), "--results", str(results)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    # Kill mid-run: after the given number of records exist and the next run is under way.
    while time.monotonic() < deadline and proc.poll() is None:
        if len(files(results)) >= kill_after_records and (results / ".checkout-id").exists():
            time.sleep(4.0)
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its run process, with no chance to clean up
    proc.wait()
    out = bench("run", str(cfg), "--results", str(results))
    assert out.returncode == 0, out.stderr[-2000:]
    records, problems = record.read_all(results)
    assert not problems
    ids = [r["run_id"] for r in records if r["status"] == "ok"]
    assert len(ids) == 3 and len(set(ids)) == 3  # every run recorded exactly once
    assert all(r["status"] == "ok" for r in records)


def test_timeout_is_a_record_with_partial_measurements(make_config, tmp_path):
    raw = make_config(data={"train_size": 400}, train={"max_wall_s": 0.05, "batch_size": 8})
    rec = runner.execute(plan.expand(raw)[0], tmp_path)
    assert rec["status"] == "timeout" and rec["failed_stage"] == "train"
    assert "train.max_wall_s" in rec["error"]["message"]
    assert 0 < rec["train"]["optimizer_steps"] < 50 and rec["train"]["wall_s"] > 0.05
    assert rec["cost"]["run_usd"] > 0  # the spend so far is accounted for


def test_nan_loss_is_a_record(make_config, tmp_path):
    rec = runner.execute(plan.expand(make_config(train={"lr": 1e30, "precision": "fp32"}))[0], tmp_path)
    assert rec["status"] == "nan_loss" and rec["failed_stage"] == "train"


def test_errors_are_records_and_the_sweep_goes_on(make_config, tmp_path):
    cfg = make_config(sweep={"variants": [{"method.target_modules": ["q_proj"]}, {"method.name": "lora"}]},
                      train={"max_steps": 2})
    records = runner.run_all(plan.expand(cfg), tmp_path, isolate=False)
    assert [r["status"] for r in records] == ["error", "ok"]
    assert records[0]["failed_stage"] == "model" and "q_proj" in records[0]["error"]["message"]


def test_budget_stops_a_run_from_its_measured_speed(make_config, tmp_path):
    raw = make_config(data={"train_size": 400}, budget={"max_usd_per_run": 1e-9})
    rec = runner.execute(plan.expand(raw)[0], tmp_path, allowance=Allowance(max_usd=1e-9))
    assert rec["status"] == "budget_exceeded" and rec["failed_stage"] == "train"
    assert rec["train"]["optimizer_steps"] == 5  # projection refined after the first 5 steps
    assert "projected $" in rec["error"]["message"] and rec["cost"]["run_usd"] > 0


def test_budget_warn_keeps_going_with_an_alert(make_config, tmp_path):
    rec = runner.execute(plan.expand(make_config())[0], tmp_path,
                         allowance=Allowance(max_usd=1e-9, on_breach="warn"))
    assert rec["status"] == "ok" and len(rec["alerts"]) == 1 and "projected $" in rec["alerts"][0]


def test_sweep_total_budget_launches_nothing_over_it(make_config, tmp_path):
    cfg = make_config(sweep={"train.seed": [0, 1, 2]}, train={"max_steps": 6},
                      budget={"max_usd_total": 1e-12})
    records = runner.run_all(plan.expand(cfg), tmp_path, isolate=False)
    statuses = [r["status"] for r in records]
    assert statuses[0] == "budget_exceeded" and records[0]["failed_stage"] == "train"
    # With a measured record of the same model and method, later runs are projected and not launched.
    assert statuses[1:] == ["budget_exceeded", "budget_exceeded"]
    assert all(r["failed_stage"] == "launch" and r["cost"]["run_usd"] == 0.0 for r in records[1:])


def test_sweep_budget_arithmetic():
    from bench.config import BudgetConfig

    prior = [{"cost": {"run_usd": 0.4, "run_device_hours": 1.0}}, {"cost": {"run_usd": 0.1, "run_device_hours": 0.5}}]
    budget = SweepBudget(BudgetConfig(max_usd_per_run=0.3, max_usd_total=0.6, max_device_hours_total=2.0), prior)
    a = budget.allowance()
    assert a.max_usd == pytest.approx(0.1) and a.max_device_hours == pytest.approx(0.5)  # 0.6 - 0.5; 2 - 1.5
    with pytest.raises(BudgetExceeded, match="projected 0.6 device-h"):
        a.check(0.05, 0.6, "before launch")


def test_spend_report_groups_by_tags(make_config, tmp_path):
    cfg = make_config(sweep={"variants": [{"tags.team": "search", "tags.env": "dev"},
                                          {"tags.team": "search", "tags.env": "prod", "train.seed": 1},
                                          {"tags.team": "ads", "tags.env": "dev", "train.seed": 2}]},
                      train={"max_steps": 2})
    records = runner.run_all(plan.expand(cfg), tmp_path, isolate=False)
    out = bench("report", "spend", "--by", "team", "--results", str(tmp_path), "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = {line.split(",")[0]: line.split(",") for line in out.stdout.strip().splitlines()[1:]}
    assert set(rows) == {"search", "ads"} and rows["search"][1] == "2" and rows["ads"][1] == "1"
    usd = {r["tags"]["team"]: 0.0 for r in records}
    for r in records:
        usd[r["tags"]["team"]] += r["cost"]["run_usd"]
    assert float(rows["search"][3]) == pytest.approx(usd["search"])
    table = bench("report", "spend", "--by", "team,env", "--results", str(tmp_path))
    assert "| search | prod |" in table.stdout and "TOTAL" in table.stdout
    by_method = bench("report", "spend", "--by", "team,method", "--results", str(tmp_path))
    assert "| search | lora | 2 |" in by_method.stdout  # not a tag: the record's own field


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing touched


BAD = [
    ("invalid YAML", None, "invalid YAML"),
    ("alias bomb", "alias bomb", "YAML aliases"),
    ("binary config", "binary", "not a UTF-8 text file"),
    ("empty data file", "garbage data", "data.id: cannot read"),
    ("unknown key", {"train": {"lrr": 0.1}}, "train.lrr: unknown key (did you mean 'lr'?)"),
    ("wrong type", {"train": {"batch_size": "big"}}, "train.batch_size: expected an integer"),
    ("unknown method", {"method": {"name": "dora"}}, "method.name: must be one of"),
    ("zero lr", {"train": {"lr": 0}}, "train.lr: must be > 0"),
    ("negative batch", {"train": {"batch_size": -8}}, "train.batch_size: must be > 0"),
    ("zero epochs", {"train": {"epochs": 0}}, "train.epochs: must be > 0"),
    ("adalora no budgeting", {"method": {"name": "adalora", "tinit": 5, "tfinal": 3}}, "no budgeting phase"),
    ("sweep key", {"sweep": {"train.sead": [1, 2]}}, "sweep.train.sead: unknown key"),
    ("empty sweep", {"sweep": {"train.seed": []}}, "sweep.train.seed: empty list"),
    ("missing column", {"data": {"text_column": "body"}}, "data.text_column: column 'body' not in split"),
    ("model path", {"model": {"id": "/no/such/model"}}, "model.id: local model path '/no/such/model' does not exist"),
    ("data path", {"data": {"id": "/no/such.csv"}}, "data.id: local data file '/no/such.csv' does not exist"),
    ("no price", {"cost": {"device": "tpu-v9"}}, "has no price for device 'tpu-v9'"),
    ("negative budget", {"budget": {"max_usd_total": -1}}, "budget.max_usd_total: must be >= 0"),
    ("nan lr", {"train": {"lr": float("nan")}}, "train.lr: must be a finite number"),
    ("inf epochs", {"train": {"epochs": float("inf")}}, "train.epochs: must be a finite number"),
    ("huge threads", {"train": {"threads": 10**8}}, "train.threads: must be <= 4,096"),
    ("no accuracy", {"eval": {"metrics": ["f1"]}}, "eval.metrics: must include accuracy"),
    ("bogus peft option", {"method": {"peft_options": {"bogus": 1}}}, "method.peft_options.bogus: not an option"),
    ("unmatched target", {"method": {"target_modules": ["nosuch"]}}, "'nosuch' matches no linear module"),
    ("test too big", {"data": {"test_size": 5000}}, "data.test_size: 5000 leaves no training rows"),
    ("sweep key type", {"sweep": {1: [2]}}, "sweep: keys must be dotted key names"),
]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, tiny_model_dir, rt_csv):
    """A results directory holding one real record, made once for the bad-input tests."""
    import copy

    from tests.conftest import BASE

    cfg = copy.deepcopy(BASE)
    cfg["model"]["id"], cfg["data"]["id"], cfg["train"]["max_steps"] = tiny_model_dir, rt_csv, 2
    tmp = tmp_path_factory.mktemp("recorded")
    assert bench("run", str(write_config(tmp, cfg)), "--results", str(tmp / "r")).returncode == 0
    return tmp / "r"


@pytest.mark.parametrize("name,change,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_one_line_exit_2_records_untouched(make_config, tmp_path, recorded, name, change, message):
    import shutil

    results = tmp_path / "r"
    shutil.copytree(recorded, results)
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in results.rglob("*") if p.is_file()}
    bad_path = tmp_path / "bad.yaml"
    if change is None:
        bad_path.write_text("train:\n  lr: [0.1\n")
    elif change == "alias bomb":
        bad_path.write_text("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(20)))
    elif change == "binary":
        bad_path.write_bytes(bytes(range(256)) * 4)
    elif change == "garbage data":
        garbage = tmp_path / "garbage.csv"
        garbage.write_bytes(b"")
        cfg = make_config(train={"max_steps": 2})
        cfg["data"]["id"] = str(garbage)
        bad_path.write_text(yaml.safe_dump(cfg))
    else:
        cfg = make_config(train={"max_steps": 2})
        for section, values in change.items():
            cfg.setdefault(section, {}).update(values)
        bad_path.write_text(yaml.safe_dump(cfg))
    out = bench("run", str(bad_path), "--results", str(results))
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr and str(bad_path) in lines[0]
    assert message in lines[0]
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in results.rglob("*") if p.is_file()}
    assert after == before


def test_run_ids_cannot_escape_the_results_directory(make_config, tmp_path):
    p = plan.expand(make_config(name="../../etc/passwd"))[0]
    assert "/" not in p.run_id and ".." not in p.run_id
    assert record.record_path(tmp_path, p.run_id, "0123abcd", 1).parent == tmp_path / "runs"


def test_trust_remote_code_is_off_by_default():
    from bench import sources
    from bench.config import ModelConfig

    assert sources.pretrained_kwargs(ModelConfig(source="hub", id="x"))["trust_remote_code"] is False


def test_secrets_never_reach_records_or_logs(make_config, tmp_path):
    secret = "hf_abcdefghijklmnop_secret"
    cfg = write_config(tmp_path, make_config(train={"max_steps": 2}))
    out = bench("run", str(cfg), "--results", str(tmp_path / "r"), env={**os.environ, "HF_TOKEN": secret})
    assert out.returncode == 0
    assert secret not in out.stdout + out.stderr
    assert all(secret not in p.read_text() for p in (tmp_path / "r").rglob("*") if p.is_file()
               and p.suffix in (".json", ".md", ".csv"))


def test_unwritable_results_dir_is_one_line(make_config, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    cfg = write_config(tmp_path, make_config(train={"max_steps": 2}))
    out = bench("run", str(cfg), "--results", str(target / "sub"))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "--results" in out.stderr


def test_usage_errors_are_one_line():
    out = bench("leaderboard", "--traffic")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def test_concurrent_writers_never_overwrite(tmp_path):
    from tests.test_record import ok_record

    a, b = ok_record(), ok_record()
    b["quality"] = {"accuracy": 0.9}
    pa, pb = record.write_new(tmp_path, a), record.write_new(tmp_path, b)
    assert pa != pb and record.read(pa)["quality"]["accuracy"] == 0.8 and record.read(pb)["quality"]["accuracy"] == 0.9
    path = record.record_path(tmp_path, "r-lora-0123456789", record.checkout_token(tmp_path), 3)
    assert record.create_new(path, "{}") and not record.create_new(path, "other")
    assert path.read_text() == "{}"


def test_secret_equal_to_a_key_name_does_not_corrupt_records(tmp_path, monkeypatch):
    from tests.test_record import ok_record

    monkeypatch.setenv("HF_TOKEN", "config")
    path = record.write_new(tmp_path, ok_record())
    assert "config" in record.read(path)  # keys untouched


def test_serving_disabled_still_gives_an_ok_record(make_config, tmp_path):
    rec = runner.execute(plan.expand(make_config(serve={"enabled": False}, train={"max_steps": 2}))[0], tmp_path)
    assert rec["status"] == "ok" and rec["serve"] == {"enabled": False}
    from bench import leaderboard

    row = leaderboard.table_rows([rec], leaderboard.traffic_for([rec]))[0]
    assert row["tco_usd"] is None and row["points_per_tco_usd"] is None and "tco" in rec


def test_interrupted_runs_are_recorded_and_measured_again(make_config, tmp_path, monkeypatch):
    from bench import pipeline

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setitem(pipeline.STAGE_FUNCTIONS, "evaluate", interrupt)
    plans = plan.expand(make_config(train={"max_steps": 2}))
    with pytest.raises(KeyboardInterrupt):
        runner.run_all(plans, tmp_path, isolate=False)
    (rec,), _ = record.read_all(tmp_path)
    assert rec["status"] == "interrupted" and rec["failed_stage"] == "evaluate" and rec["train"]["optimizer_steps"] == 2
    monkeypatch.undo()
    assert [r["status"] for r in runner.run_all(plans, tmp_path, isolate=False)] == ["ok"]
