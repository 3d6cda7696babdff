"""The `bench` command through its real entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from bench import record


def bench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_validate_default_config():
    out = bench("validate", "configs/default.yaml")
    assert out.returncode == 0, out.stderr
    assert "4 run(s)" in out.stdout and "method.name=qlora" in out.stdout and "(256 steps)" in out.stdout


def test_bad_input_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: -1\n")
    out = bench("validate", str(bad))
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "train.lr: must be > 0" in out.stderr and "Traceback" not in out.stderr
    out = bench("run", "configs/default.yaml", "--set", "method.name=lorra", "--results", str(tmp_path / "r"))
    assert out.returncode == 2 and "did you mean 'lora'" in out.stderr
    assert not (tmp_path / "r").exists()  # nothing written for a rejected config


def test_leaderboard_on_missing_dir(tmp_path):
    out = bench("leaderboard", "--results", str(tmp_path / "none"))
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_run_end_to_end_in_child_processes(make_config, tmp_path):
    cfg = make_config(sweep={"method.name": ["lora", "full"]}, train={"max_steps": 2})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    results = tmp_path / "results"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = bench("run", str(path), "--results", str(results), cwd=cwd)
    assert out.returncode == 0, out.stderr[-2000:]
    assert not list(cwd.iterdir())  # nothing written to the current directory (codecarbon, caches, ...)
    records, problems = record.read_all(results)
    assert not problems and sorted(r["method"] for r in records) == ["full", "lora"]
    assert all(r["status"] == "ok" and r["tags"] == {"team": "t"} for r in records)
    assert "leaderboard.md" in out.stdout and (results / "leaderboard.csv").exists()
    # The config in the record is the resolved one and reproduces the run id.
    from bench.plan import run_id_for

    for r in records:
        assert run_id_for(r["config"]) == r["run_id"]
        assert json.loads(json.dumps(r))["provenance"]["packages"]["peft"]
