"""The run record: one self-describing JSON file per run, written atomically.

A record is written to a temporary file in the same directory, flushed to disk,
then renamed into place, so a reader sees a whole file or none. Records are never
overwritten: each results directory has a checkout token (``.checkout-id``, not
committed), and a record's file is ``runs/<run_id>.<token>.<attempt>.json``. Resume
looks only at this token's records, so records published from another checkout are
kept and shown but never make a fresh checkout skip its own measurement.
Secrets found in the environment (tokens, keys, passwords) are masked before writing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

SCHEMA_VERSION = 1
STATUSES = ("ok", "error", "oom", "nan_loss", "timeout", "budget_exceeded", "interrupted")
REQUIRED_KEYS = ("schema_version", "run_id", "status", "task", "method", "config", "plan", "provenance")
# Keys an ok record must have, as dotted paths.
OK_KEYS = (
    "quality.accuracy", "baseline.majority_class.accuracy", "train.wall_s", "train.device_hours",
    "train.energy_kwh", "train.peak_memory_mb", "train.trainable_params", "train.total_params",
    "cost.train_usd", "serve.latency_ms.p50", "serve.latency_ms.p99",
)
PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "datasets", "evaluate", "codecarbon",
            "accelerate", "tokenizers")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


STREAMED_KEYS = ("serve.ttft_ms.p50", "serve.ttft_ms.p99", "serve.tpot_ms.p50", "serve.tpot_ms.p99",
                 "serve.throughput_output_tokens_s", "serve.usd_per_1m_output_tokens")


def ok_keys(record: dict) -> list[str]:
    """Keys an ok record must hold: a causal LM's quality is its primary metric, base model included;
    streamed serving (vllm, openai) its TTFT/TPOT percentiles, throughput and $/1M output tokens;
    a run whose serving capacity was measured, its TCO."""
    keys = list(OK_KEYS) + ["serve.n_requests"]
    if record.get("task") == "causal_lm":
        primary = (record.get("eval") or {}).get("primary_metric", "accuracy")
        keys = [f"quality.{primary}"] + [k for k in keys if not k.startswith(("quality.", "baseline."))]
        if ((record.get("config") or {}).get("eval") or {}).get("base_model", True):
            keys.append(f"baseline.base_model.{primary}")
    serve = record.get("serve") or {}
    if serve.get("engine") in ("vllm", "openai"):
        keys += STREAMED_KEYS
    if serve.get("capacity_requests_s"):
        keys.append("tco.usd")
    return keys


class RecordError(ValueError):
    """A file that is not a valid run record."""


def get_path(record: dict, dotted: str):
    node = record
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(dotted)
        node = node[key]
    return node


def validate(record: dict) -> dict:
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise RecordError(f"missing keys: {', '.join(missing)}")
    for key, kind in (("run_id", str), ("status", str), ("task", str), ("method", str), ("config", dict),
                      ("plan", dict), ("provenance", dict), ("tags", dict)):
        if key in record and not isinstance(record[key], kind):
            raise RecordError(f"{key} must be a {kind.__name__}")
    if record["schema_version"] != SCHEMA_VERSION:
        raise RecordError(f"schema_version {record['schema_version']} (this harness reads {SCHEMA_VERSION})")
    if record["status"] not in STATUSES:
        raise RecordError(f"status {record['status']!r} not one of {', '.join(STATUSES)}")
    if record["status"] == "ok":
        serving = bool(((record["config"].get("serve") or {}).get("enabled", True)))
        absent = []
        for key in ok_keys(record):
            if key.startswith("serve.") and not serving:
                continue
            try:
                value = get_path(record, key)
            except KeyError:
                absent.append(key)
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise RecordError(f"{key} must be a number (got {value!r})")
        if absent:
            raise RecordError(f"ok record lacks: {', '.join(absent)}")
    return record


_TOKEN_FILE = ".checkout-id"
_SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)


def checkout_token(results_dir: str | Path) -> str:
    """This results directory's token for records made from this checkout (created once)."""
    path = Path(results_dir) / _TOKEN_FILE
    if path.is_file():
        token = path.read_text().strip()
        if re.fullmatch(r"[0-9a-f]{8}", token):
            return token
    token = os.urandom(4).hex()
    atomic_write_text(path, token + "\n")
    return token


def _check_id(run_id: str) -> None:
    if not _SAFE_ID.match(run_id) or ".." in run_id:
        raise ValueError(f"unsafe run id {run_id!r}")


def record_path(results_dir: str | Path, run_id: str, token: str, attempt: int) -> Path:
    """The record's file; the run id can never name a path outside the results directory."""
    _check_id(run_id)
    return Path(results_dir) / "runs" / f"{run_id}.{token}.{attempt}.json"


def own_records(results_dir: str | Path, run_id: str, token: str) -> list[Path]:
    """This checkout's record files for a run, oldest attempt first."""
    _check_id(run_id)
    paths = (Path(results_dir) / "runs").glob(f"{run_id}.{token}.*.json")
    attempts = []
    for path in paths:
        tail = path.name[len(run_id) + len(token) + 2:-len(".json")]
        if tail.isdigit():
            attempts.append((int(tail), path))
    return [p for _, p in sorted(attempts)]


def _attempt(path: Path) -> int:
    return int(path.name.rsplit(".", 2)[-2])


def secret_values(environ=None) -> list[str]:
    environ = os.environ if environ is None else environ
    return sorted({v for k, v in environ.items() if _SECRET_NAME.search(k) and v and len(v) >= 4}, key=len,
                  reverse=True)


def mask_secrets(value, secrets: list[str] | None = None):
    """Replace secret values inside the strings of ``value`` (keys and structure untouched)."""
    secrets = secret_values() if secrets is None else secrets
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {k: mask_secrets(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, secrets) for v in value]
    return value


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_temp(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # as a plainly created file would be
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` atomically (derived files: leaderboards, reports)."""
    tmp = _write_temp(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def create_new(path: Path, text: str) -> bool:
    """Create ``path`` atomically only if it does not exist (a hard link cannot overwrite)."""
    tmp = _write_temp(path, text)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def write_new(results_dir: str | Path, record: dict) -> Path:
    """Validate and write a record as this checkout's next attempt of its run; never overwrites.

    Concurrent writers of the same run each get their own attempt number.
    """
    validate(record)
    token = checkout_token(results_dir)
    existing = own_records(results_dir, record["run_id"], token)
    attempt = _attempt(existing[-1]) + 1 if existing else 1
    while True:
        record.update(checkout_token=token, attempt=attempt)
        text = json.dumps(mask_secrets(record), indent=2, default=str) + "\n"
        path = record_path(results_dir, record["run_id"], token, attempt)
        if create_new(path, text):
            return path
        attempt += 1


def read(path: str | Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as exc:  # ValueError covers bad JSON and bad UTF-8
        raise RecordError(f"{path}: not readable JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: not a JSON object")
    try:
        return validate(data)
    except RecordError as exc:
        raise RecordError(f"{path}: {exc}") from None


def read_all(results_dir: str | Path) -> tuple[list[dict], list[str]]:
    """(valid records sorted by file name, problems with other files)."""
    records, problems = [], []
    for path in sorted((Path(results_dir) / "runs").glob("*.json")):
        try:
            records.append(read(path))
        except RecordError as exc:
            problems.append(str(exc))
    return records, problems


def latest_per_run(records: list[dict]) -> list[dict]:
    """The newest record of each run id (by finish time); older ones stay on disk as history."""
    newest: dict[str, dict] = {}
    for rec in records:
        old = newest.get(rec["run_id"])
        if old is None or str(rec.get("finished_at", "")) >= str(old.get("finished_at", "")):
            newest[rec["run_id"]] = rec
    return sorted(newest.values(), key=lambda r: r["run_id"])


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance() -> dict:
    """Library versions, Python, and the harness's git commit with a dirty flag (tracked files)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    repo = Path(__file__).resolve().parent.parent
    commit = _git(["rev-parse", "HEAD"], repo)
    # Code only: results/ (records, the leaderboard a sweep rewrites as it goes) is output, not code.
    status = _git(["status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"], repo) \
        if commit else None
    from bench import __version__

    return {
        "harness_version": __version__,
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "packages": versions,
    }
