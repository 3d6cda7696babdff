"""Execute run plans: each run in a fresh child process, train -> evaluate -> serve -> record.

The parent blocks on the child (``join``), never polls, so it takes no CPU from the
run it is measuring. A failing run still produces a record saying which stage failed.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import sys
import time
import traceback
from pathlib import Path

from bench import record as record_mod
from bench.config import ConfigError
from bench.plan import RunPlan, total_steps


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def base_record(plan: RunPlan) -> dict:
    cfg = plan.config
    return {
        "schema_version": record_mod.SCHEMA_VERSION,
        "run_id": plan.run_id,
        "name": cfg["name"],
        "status": "error",
        "task": cfg["task"],
        "method": cfg["method"]["name"],
        "tags": cfg["tags"],
        "started_at": _now(),
        "config": cfg,
        "plan": {"index": plan.index, "total": plan.total, "overrides": plan.overrides,
                 "planned_steps": plan.planned_steps},
        "provenance": record_mod.provenance(),
    }


def _say(plan: RunPlan, stage: str) -> None:
    print(f"[run {plan.index}/{plan.total}] {plan.run_id}: {stage}", file=sys.stderr, flush=True)


def execute(plan: RunPlan, results_dir: str | Path) -> dict:
    """Run one plan in this process and write its record; returns the record."""
    rec = base_record(plan)
    stage = "setup"
    try:
        from bench import pipeline

        for stage in pipeline.STAGES:
            _say(plan, stage)
            pipeline.run_stage(stage, plan, rec)
        rec["status"] = "ok"
    except BaseException as exc:  # every failure becomes a record
        rec.update(_failure(exc, stage))
        if isinstance(exc, KeyboardInterrupt):
            rec["finished_at"] = _now()
            record_mod.write(results_dir, rec)
            raise
    rec["finished_at"] = _now()
    record_mod.write(results_dir, rec)
    return rec


def _failure(exc: BaseException, stage: str) -> dict:
    from bench.train import NanLossError

    status = "error"
    if isinstance(exc, NanLossError):
        status = "nan_loss"
    elif type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        status = "oom"
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    out = {"status": status, "failed_stage": stage, "error": {"type": type(exc).__name__, "message": message}}
    if not isinstance(exc, (ConfigError, NanLossError)):
        out["error"]["traceback"] = traceback.format_exc(limit=8)
    return out


def _child(plan_dict: dict, results_dir: str) -> None:
    quiet_libraries()
    plan = RunPlan(**plan_dict)
    rec = execute(plan, results_dir)
    sys.exit(0 if rec["status"] == "ok" else 3)


def quiet_libraries() -> None:
    """Silence library notices that are expected here and would bury the progress lines."""
    import logging
    import warnings

    # bitsandbytes: an optional hub kernel is unavailable offline; it uses its bundled CPU kernels.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    # codecarbon logs its own start-up at INFO/WARNING before honouring log_level.
    logging.getLogger("codecarbon").addFilter(lambda r: r.levelno >= logging.ERROR)
    # peft calls a transformers API that is deprecated in favour of a renamed one.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def run_isolated(plan: RunPlan, results_dir: str | Path) -> dict:
    """Run a plan in a fresh (spawned) process and return the record it wrote."""
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_child, args=(plan.to_dict(), str(results_dir)), name=f"run-{plan.run_id}")
    path = record_mod.record_path(results_dir, plan.run_id)
    launched_at = time.time()
    proc.start()
    proc.join()  # blocks without spinning
    if path.exists() and path.stat().st_mtime >= launched_at:
        try:
            return record_mod.read(path)
        except record_mod.RecordError:
            pass
    rec = base_record(plan)  # the child died before writing (killed, segfault, ...)
    rec.update({"status": "error", "failed_stage": "process",
                "error": {"type": "ChildExit", "message": f"run process exited with code {proc.exitcode}"}})
    rec["finished_at"] = _now()
    record_mod.write(results_dir, rec)
    return rec


def run_all(plans: list[RunPlan], results_dir: str | Path, isolate: bool = True) -> list[dict]:
    records = []
    sweep_start = time.monotonic()
    for plan in plans:
        start = time.monotonic()
        if not isolate:
            quiet_libraries()
        rec = run_isolated(plan, results_dir) if isolate else execute(plan, results_dir)
        took = time.monotonic() - start
        done = plan.index
        eta = (time.monotonic() - sweep_start) / done * (plan.total - done)
        extra = f" ({rec.get('failed_stage')}: {rec.get('error', {}).get('message')})" if rec["status"] != "ok" else ""
        print(f"[run {plan.index}/{plan.total}] {plan.run_id}: {rec['status']}{extra} in {took:.0f} s; "
              f"sweep ETA {eta:.0f} s", file=sys.stderr, flush=True)
        records.append(rec)
    return records


def steps_for(cfg, n_train: int) -> int:
    t = cfg.train
    return total_steps(n_train, t.batch_size, t.grad_accum, t.epochs, t.max_steps)


def set_threads(threads: int | None) -> None:
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)
