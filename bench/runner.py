"""Execute run plans: each run in a fresh child process, train -> evaluate -> serve -> record.

The parent blocks on the child (``join``), never polls, so it takes no CPU from the
run it is measuring. Every run ends as exactly one new record, whatever happens:
failures (error, oom, nan_loss, timeout, budget_exceeded) say the stage and keep the
measurements gathered so far. Re-running a sweep into the same results directory
skips the runs this checkout already recorded (same resolved config and harness version).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import sys
import time
import traceback
import uuid
from dataclasses import asdict
from pathlib import Path

from bench import __version__
from bench import record as record_mod
from bench.budget import Allowance, BudgetExceeded, SweepBudget, project_from_history
from bench.config import ConfigError
from bench.plan import RunPlan


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


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
        "attempt_id": uuid.uuid4().hex,  # tells this attempt's record apart from concurrent ones
        "started_at": _now(),
        "config": cfg,
        "plan": {"index": plan.index, "total": plan.total, "overrides": plan.overrides,
                 "planned_steps": plan.planned_steps},
        "alerts": [],
        "provenance": record_mod.provenance(),
    }


def _say(plan: RunPlan, stage: str) -> None:
    print(f"[run {plan.index}/{plan.total}] {plan.run_id}: {stage}", file=sys.stderr, flush=True)


def execute(plan: RunPlan, results_dir: str | Path, allowance: Allowance | None = None,
            attempt_id: str | None = None) -> dict:
    """Run one plan in this process and write its record; returns the record."""
    from bench import pipeline

    rec = base_record(plan)
    rec["attempt_id"] = attempt_id or rec["attempt_id"]
    allowance = allowance or Allowance()
    state = pipeline.new_state(allowance, results_dir)
    stage = "setup"
    try:
        for stage in pipeline.stages_for(plan.cfg):
            _say(plan, stage)
            pipeline.run_stage(stage, plan, rec, state)
        rec["status"] = "ok"
    except BaseException as exc:  # every failure becomes a record
        rec.update(_failure(exc, stage))
        pipeline.account(rec, state)
        if isinstance(exc, KeyboardInterrupt):
            _finish(results_dir, rec, allowance)
            raise
    _finish(results_dir, rec, allowance)
    return rec


def _finish(results_dir, rec: dict, allowance: Allowance) -> None:
    """Write the record; one that fails validation is kept, as an error, with all it measured."""
    rec["alerts"] = list(allowance.alerts)
    rec["finished_at"] = _now()
    try:
        record_mod.write_new(results_dir, rec)
    except record_mod.RecordError as exc:
        rec.update({"status": "error", "failed_stage": "record",
                    "error": {"type": "RecordError", "message": f"record failed validation: {exc}"}})
        record_mod.write_new(results_dir, rec)


def _status(exc: BaseException) -> str:
    from bench.train import NanLossError, RunTimeout

    if isinstance(exc, NanLossError):
        return "nan_loss"
    if isinstance(exc, RunTimeout):
        return "timeout"
    if isinstance(exc, BudgetExceeded):
        return "budget_exceeded"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        return "oom"
    return "error"


def _failure(exc: BaseException, stage: str) -> dict:
    status = _status(exc)
    message = str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
    if isinstance(exc, KeyboardInterrupt):
        message = "interrupted (Ctrl-C / SIGINT); a plain re-run measures it again"
    out = {"status": status, "failed_stage": stage, "error": {"type": type(exc).__name__, "message": message}}
    if status == "error" and not isinstance(exc, ConfigError):
        out["error"]["traceback"] = traceback.format_exc(limit=8)
    return out


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


def _child(plan_dict: dict, results_dir: str, allowance: dict, attempt_id: str) -> None:
    quiet_libraries()
    try:
        rec = execute(RunPlan(**plan_dict), results_dir, Allowance(**allowance), attempt_id)
    except KeyboardInterrupt:  # recorded as interrupted; the parent reports it
        sys.exit(130)
    sys.exit(0 if rec["status"] == "ok" else 3)


def _record_of_attempt(results_dir, run_id: str, attempt_id: str) -> dict | None:
    token = record_mod.checkout_token(results_dir)
    for path in reversed(record_mod.own_records(results_dir, run_id, token)):
        try:
            rec = record_mod.read(path)
        except record_mod.RecordError:
            continue
        if rec.get("attempt_id") == attempt_id:
            return rec
    return None


def run_isolated(plan: RunPlan, results_dir: str | Path, allowance: Allowance) -> dict:
    """Run a plan in a fresh (spawned) process and return the record it wrote."""
    attempt_id = uuid.uuid4().hex
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_child, args=(plan.to_dict(), str(results_dir), asdict(allowance), attempt_id),
                       name=f"run-{plan.run_id}")
    proc.start()
    try:
        proc.join()  # blocks without spinning
    except KeyboardInterrupt:
        proc.join()  # the child got the same SIGINT: let it write its interrupted record
        raise
    rec = _record_of_attempt(results_dir, plan.run_id, attempt_id)
    if rec is not None:
        return rec
    rec = base_record(plan)  # the child died before writing (killed, segfault, ...)
    rec["attempt_id"] = attempt_id
    rec.update({"status": "oom" if proc.exitcode == -9 else "error", "failed_stage": "process",
                "error": {"type": "ChildExit", "message": f"run process exited with code {proc.exitcode}"
                          + (" (SIGKILL: often the kernel's out-of-memory killer)" if proc.exitcode == -9 else "")}})
    _finish(results_dir, rec, allowance)
    return rec


def previous(plan: RunPlan, results_dir: str | Path) -> dict | None:
    """This checkout's latest record of the same run (same resolved config and harness version)."""
    token = record_mod.checkout_token(results_dir)
    for path in reversed(record_mod.own_records(results_dir, plan.run_id, token)):
        try:
            rec = record_mod.read(path)
        except record_mod.RecordError:
            continue
        if rec["config"] == plan.config and rec["provenance"].get("harness_version") == __version__:
            return rec
    return None


def _skip_reason(plan, results_dir, rerun: bool, rerun_failed: bool) -> str | None:
    if rerun:
        return None
    prev = previous(plan, results_dir)
    if prev is None or prev["status"] == "interrupted" or (rerun_failed and prev["status"] != "ok"):
        return None
    return f"already recorded ({prev['status']}); --rerun to measure again" + \
        ("" if prev["status"] == "ok" else " or --rerun-failed")


def _not_launched(plan: RunPlan, results_dir, message: str) -> dict:
    rec = base_record(plan)
    rec.update({"status": "budget_exceeded", "failed_stage": "launch", "error": {"type": "BudgetExceeded",
                                                                                 "message": message}})
    rec["cost"] = {"run_usd": 0.0, "run_device_hours": 0.0}
    _finish(results_dir, rec, Allowance(alerts=[message]))
    return rec


def _launch_check(allowance: Allowance, projected: tuple[float, float] | None) -> None:
    """Before launch: nothing left to spend, or a projection from history over the limit."""
    used_up = [f"{what} already used up" for what, left in (("$ budget", allowance.max_usd),
                                                          ("device-hour budget", allowance.max_device_hours))
               if left is not None and left <= 0]
    if used_up and allowance.on_breach == "stop":
        raise BudgetExceeded("; ".join(used_up))
    if projected is not None:
        allowance.check(projected[0], projected[1], "before launch")


def _own_records(plans: list[RunPlan], results_dir) -> list[dict]:
    """Every record this checkout made for these runs (each attempt was real spend)."""
    token = record_mod.checkout_token(results_dir)
    out = []
    for plan in plans:
        for path in record_mod.own_records(results_dir, plan.run_id, token):
            try:
                out.append(record_mod.read(path))
            except record_mod.RecordError:
                pass
    return out


def run_all(plans: list[RunPlan], results_dir: str | Path, isolate: bool = True, rerun: bool = False,
            rerun_failed: bool = False) -> list[dict]:
    """Run every plan (skipping recorded ones); returns the records of this sweep, new or reused."""
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    prior_all, _ = record_mod.read_all(results_dir)
    budget = SweepBudget(plans[0].cfg.budget, _own_records(plans, results_dir))
    records, sweep_start, measured = [], time.monotonic(), 0
    for plan in plans:
        reason = _skip_reason(plan, results_dir, rerun, rerun_failed)
        if reason:
            print(f"[run {plan.index}/{plan.total}] {plan.run_id}: skipped, {reason}", file=sys.stderr)
            records.append(previous(plan, results_dir))
            continue
        allowance = budget.allowance()
        try:
            _launch_check(allowance, project_from_history(prior_all + records, plan.config, plan.planned_steps))
        except BudgetExceeded as exc:
            rec = _not_launched(plan, results_dir, f"not launched: {exc}")
            print(f"[run {plan.index}/{plan.total}] {plan.run_id}: budget_exceeded ({exc})", file=sys.stderr)
            records.append(rec)
            continue
        start = time.monotonic()
        if not isolate:
            quiet_libraries()
        rec = run_isolated(plan, results_dir, allowance) if isolate else execute(plan, results_dir, allowance)
        budget.add(rec)
        measured += 1
        records.append(rec)
        _report(plan, rec, time.monotonic() - start, (time.monotonic() - sweep_start) / measured)
    return records


def _report(plan: RunPlan, rec: dict, took_s: float, mean_s: float) -> None:
    left = plan.total - plan.index
    extra = f" ({rec.get('failed_stage')}: {rec.get('error', {}).get('message')})" if rec["status"] != "ok" else ""
    print(f"[run {plan.index}/{plan.total}] {plan.run_id}: {rec['status']}{extra} in {took_s:.0f} s; "
          f"{left} left, ETA {mean_s * left:.0f} s", file=sys.stderr, flush=True)
