"""Run-record schema, atomic writes and reading back."""

from __future__ import annotations

import json

import pytest

from bench import record


def minimal(status="error", **extra) -> dict:
    rec = {"schema_version": record.SCHEMA_VERSION, "run_id": "r-lora-0123456789", "status": status,
           "task": "seq_cls", "method": "lora", "config": {}, "plan": {}, "provenance": {}}
    rec.update(extra)
    return rec


def ok_record() -> dict:
    return minimal("ok", quality={"accuracy": 0.8}, baseline={"majority_class": {"accuracy": 0.58}},
                   train={"wall_s": 1.0, "device_hours": 1 / 3600, "energy_kwh": 1e-5, "peak_memory_mb": 900.0,
                          "trainable_params": 10, "total_params": 100},
                   cost={"train_usd": 0.0001}, serve={"latency_ms": {"p50": 5.0, "p99": 9.0}, "n_requests": 100})


def write(results, rec):
    return record.write_new(results, rec)


def test_write_and_read_round_trip(tmp_path):
    path = write(tmp_path, ok_record())
    token = (tmp_path / ".checkout-id").read_text().strip()
    assert path == tmp_path / "runs" / f"r-lora-0123456789.{token}.1.json"
    assert record.read(path)["quality"]["accuracy"] == 0.8
    assert not list((tmp_path / "runs").glob(".*.tmp"))  # no temp file left behind


def test_records_are_never_overwritten(tmp_path):
    first = write(tmp_path, ok_record())
    second = write(tmp_path, ok_record())
    assert first != second and second.name.endswith(".2.json") and first.exists()
    token = record.checkout_token(tmp_path)
    assert record.own_records(tmp_path, "r-lora-0123456789", token) == [first, second]
    assert record.own_records(tmp_path, "r-lora-0123456789", "00000000") == []


def test_latest_per_run():
    a, b = ok_record(), ok_record()
    a["finished_at"], b["finished_at"] = "2026-01-01T00:00:00", "2026-02-01T00:00:00"
    b["quality"] = {"accuracy": 0.9}
    assert record.latest_per_run([b, a]) == [b] and record.latest_per_run([a, b]) == [b]


def test_secrets_are_masked(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_verysecretvalue")
    rec = ok_record()
    rec["error"] = {"message": "401 for token hf_verysecretvalue"}
    text = write(tmp_path, rec).read_text()
    assert "hf_verysecretvalue" not in text and "401 for token ***" in text


def test_ok_record_needs_its_measurements(tmp_path):
    rec = ok_record()
    del rec["train"]["peak_memory_mb"]
    with pytest.raises(record.RecordError, match="train.peak_memory_mb"):
        write(tmp_path, rec)
    assert not list((tmp_path / "runs").glob("*.json"))


def test_failed_write_keeps_old_record(tmp_path):
    path = write(tmp_path, ok_record())
    bad = ok_record()
    bad["status"] = "weird"
    with pytest.raises(record.RecordError):
        write(tmp_path, bad)
    assert record.read(path)["status"] == "ok" and len(list((tmp_path / "runs").glob("*.json"))) == 1


@pytest.mark.parametrize("run_id", ["../x", "a/b", "", ".hidden", "a..b"])
def test_unsafe_run_ids(tmp_path, run_id):
    with pytest.raises(ValueError):
        record.record_path(tmp_path, run_id, "abcd0123", 1)


def test_read_all_skips_corrupt_files(tmp_path):
    write(tmp_path, ok_record())
    (tmp_path / "runs" / "broken.json").write_text("{not json")
    (tmp_path / "runs" / "other.json").write_text(json.dumps({"schema_version": 99}))
    records, problems = record.read_all(tmp_path)
    assert [r["run_id"] for r in records] == ["r-lora-0123456789"]
    assert len(problems) == 2 and any("broken.json" in p for p in problems)


def test_provenance_has_versions():
    prov = record.provenance()
    assert prov["packages"]["torch"] and prov["packages"]["peft"] and prov["harness_version"]
