"""GPU-only checks: skipped cleanly where no CUDA device exists."""

from __future__ import annotations

import pytest
import torch

from bench import plan, runner

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_cuda_run_records_cuda_memory_and_bf16(make_config, tmp_path, method):
    raw = make_config(method={"name": method}, train={"device": "cuda", "precision": "auto"})
    rec = runner.execute(plan.expand(raw)[0], tmp_path)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["device"]["kind"] == "cuda" and rec["device"]["precision"] in ("bf16", "fp16")
    assert rec["train"]["peak_memory_kind"].startswith("cuda_max_allocated")
    assert rec["train"]["peak_memory_mb"] > 0
