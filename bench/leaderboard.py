"""Run records -> cost-per-quality leaderboard (markdown, CSV, plot). Never imports torch.

Runs are grouped into boards: one per task, metric and held-out set (data id and test-split
hash), since scores on different data or metrics do not compare; each board is ranked on its
own. For each ok run:
  quality      = the run's primary metric (accuracy where answers are labels)
  baseline     = the majority-class score (seq_cls) or the un-tuned base model's score on the
                 same held-out prompts (causal_lm), same metric
  gain_points  = (quality - baseline) x 100
  serve_usd    = usd_per_1k_requests x requests / 1000    (requests: the stated volume)
  total_usd    = train_usd + serve_usd
  usd_per_point = total_usd / gain_points                 (lower is better; n/a when gain <= 0)
Rows are sorted by usd_per_point; a row is Pareto-optimal when no other row of its board has
both higher-or-equal quality and lower-or-equal total $ (one of them strictly). Each causal_lm
group also lists its un-tuned base models as reference rows (quality only, nothing trained).

Runs that differ only in ``train.seed`` form a recipe: the recipe table gives the mean,
standard deviation, 95% confidence interval (Student t) and n of each figure, and
recipes whose $/gain-point intervals overlap share a rank (a tie). Where a directory
holds several records of one run id, the newest is used.
"""

from __future__ import annotations

import csv
import io
import sys
from collections import Counter
from pathlib import Path

from bench import record as record_mod

COLUMNS = [
    ("rank", "rank"), ("pareto", "pareto"), ("method", "method"), ("task", "task"), ("model", "model"),
    ("metric", "metric"), ("quality", "quality"), ("accuracy", "accuracy"), ("f1_macro", "macro-F1"),
    ("unparseable_rate", "unparseable"), ("baseline", "baseline"), ("baseline_quality", "baseline quality"), ("majority_accuracy", "majority acc"),
    ("gain_points", "gain (pts)"), ("train_wall_s", "train s"), ("train_device_hours", "device-h"),
    ("train_energy_kwh", "train kWh"), ("train_co2_kg", "train CO2 kg"), ("train_usd", "train $"),
    ("peak_memory_mb", "peak MB"), ("trainable_params", "trainable params"), ("serve_p50_ms", "p50 ms"),
    ("serve_p99_ms", "p99 ms"), ("serve_usd_per_1k", "serve $/1K req"), ("serve_batch", "serve batch"),
    ("serve_meets_slo", "meets SLO"), ("serve_usd", "serve $"),
    ("total_usd", "total $"), ("usd_per_point", "$ / gain pt"), ("device", "device"), ("run_id", "run id"),
]


def primary_metric(rec: dict) -> str:
    return (rec.get("eval") or {}).get("primary_metric", "accuracy")


def baseline_of(rec: dict, metric: str) -> tuple[str | None, float | None]:
    """(which baseline, its score): the base model for causal_lm where scored, else the majority class."""
    baseline = rec.get("baseline") or {}
    base = baseline.get("base_model") or {}
    if rec["task"] == "causal_lm" and metric in base:
        return "base model", base[metric]
    majority = baseline.get("majority_class") or {}
    if metric in majority:
        return "majority class", majority[metric]
    return None, None


def row_for(rec: dict, requests: int) -> dict:
    metric = primary_metric(rec)
    quality = rec["quality"][metric]
    kind, base_quality = baseline_of(rec, metric)
    gain = (quality - base_quality) * 100.0 if base_quality is not None else None
    serve = rec.get("serve") or {}
    per_1k = serve.get("usd_per_1k_requests")
    serve_usd = per_1k * requests / 1000.0 if per_1k is not None else 0.0
    latency = serve.get("latency_ms") or {}
    total = rec["cost"]["train_usd"] + serve_usd
    train = rec["train"]
    return {
        "method": rec["method"], "task": rec["task"], "model": rec["config"]["model"]["id"],
        "data": (rec["config"].get("data") or {}).get("id"), "test_hash": (rec.get("data") or {}).get("test_hash"),
        "n_test": (rec.get("data") or {}).get("test_examples"), "metric": metric, "quality": quality, "accuracy": rec["quality"].get("accuracy"),
        "f1_macro": rec["quality"].get("f1"), "unparseable_rate": (rec.get("eval") or {}).get("unparseable_rate"),
        "baseline": kind, "baseline_quality": base_quality,
        "majority_accuracy": ((rec.get("baseline") or {}).get("majority_class") or {}).get("accuracy"),
        "gain_points": gain, "train_wall_s": train["wall_s"], "train_device_hours": train["device_hours"],
        "train_energy_kwh": train["energy_kwh"], "train_co2_kg": train.get("co2_kg"),
        "train_usd": rec["cost"]["train_usd"], "peak_memory_mb": train["peak_memory_mb"],
        "trainable_params": train["trainable_params"], "serve_p50_ms": latency.get("p50"),
        "serve_p99_ms": latency.get("p99"), "serve_usd_per_1k": per_1k, "serve_usd": serve_usd,
        "serve_batch": serve.get("cost_basis_batch_size"), "serve_meets_slo": serve.get("cost_basis_meets_slo"),
        "total_usd": total, "usd_per_point": total / gain if gain is not None and gain > 0 else None,
        "device": rec.get("device", {}).get("name", ""), "run_id": rec["run_id"],
    }


def reference_rows(records: list[dict]) -> list[dict]:
    """causal_lm: one row per distinct un-tuned base model scored (model, weights, held-out set)."""
    seen: dict[tuple, dict] = {}
    for rec in records:
        base = (rec.get("baseline") or {}).get("base_model")
        if rec.get("status") != "ok" or rec.get("task") != "causal_lm" or not base:
            continue
        metric = primary_metric(rec)
        key = (rec["config"]["model"]["id"], base.get("weights"), base.get("test_hash"), metric)
        seen.setdefault(key, {
            "task": "causal_lm", "model": key[0], "weights": key[1], "metric": metric,
            "data": (rec["config"].get("data") or {}).get("id"), "test_hash": (rec.get("data") or {}).get("test_hash"),
            "quality": base.get(metric), "accuracy": base.get("accuracy"), "f1_macro": base.get("f1"),
            "unparseable_rate": base.get("unparseable_rate"), "n_examples": base.get("n_examples"),
            "run_id": rec["run_id"],
        })
    return list(seen.values())


def mark_pareto(rows: list[dict]) -> None:
    """Pareto-optimal on (quality up, total_usd down), within each task."""
    for row in rows:
        row["pareto"] = not any(
            other is not row and board(other) == board(row)
            and other["quality"] >= row["quality"] and other["total_usd"] <= row["total_usd"]
            and (other["quality"] > row["quality"] or other["total_usd"] < row["total_usd"])
            for other in rows
        )


def rank(rows: list[dict]) -> list[dict]:
    """Per task: best quality per dollar first; runs with no gain over the baseline last."""
    out = []
    for key in boards(rows):
        out += _rank_one([r for r in rows if board(r) == key])
    return out


TASK_ORDER = ["seq_cls", "causal_lm"]
TASK_TITLES = {"seq_cls": "Sequence classification (`seq_cls`)", "causal_lm": "Generative (`causal_lm`)"}


def board(row: dict) -> tuple:
    """Rows on one board compare: same task, metric and held-out set."""
    return (row["task"], row["metric"], row.get("data"), row.get("test_hash"))


def boards(rows: list[dict]) -> list[tuple]:
    keys = {board(r) for r in rows}
    return sorted(keys, key=lambda k: (TASK_ORDER.index(k[0]) if k[0] in TASK_ORDER else 99, str(k[1:])))


def board_title(key: tuple, rows: list[dict]) -> str:
    task, metric, data, test_hash = key
    n = next((r.get("n_test") for r in rows if board(r) == key and r.get("n_test")), None)
    held = f", {n:,} held out" if n else ""
    return f"{TASK_TITLES.get(task, task)}: {metric} on `{data}`{held} (test {str(test_hash)[7:15]})"


def _rank_one(rows: list[dict]) -> list[dict]:
    ordered = sorted(rows, key=lambda r: (r["usd_per_point"] is None, r["usd_per_point"] or 0.0, -r["quality"]))
    for i, row in enumerate(ordered, 1):
        row["rank"] = i
    return ordered


def table_rows(records: list[dict], requests: int) -> list[dict]:
    rows = []
    for rec in records:
        if rec["status"] != "ok":
            continue
        try:
            row = row_for(rec, requests)
            row["recipe"] = recipe_key(rec["config"])
            row["seed"] = rec["config"]["train"]["seed"]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            print(f"bench: skipped record {rec.get('run_id')}: incomplete ({type(exc).__name__}: {exc})",
                  file=sys.stderr)
            continue
        rows.append(row)
    mark_pareto(rows)
    return rank(rows)


def recipe_key(config: dict) -> str:
    """The run id of the config with its seed removed: runs that differ only by seed share it."""
    from bench.plan import run_id_for

    unseeded = {**config, "train": {k: v for k, v in config["train"].items() if k != "seed"}}
    return run_id_for(unseeded)


def interval(values: list[float]) -> dict:
    """mean, std (n-1), 95% CI half-width (Student t) and n; CI is None for n < 2."""
    from statistics import mean, stdev

    n = len(values)
    m = mean(values)
    if n < 2:
        return {"mean": m, "std": None, "ci95": None, "n": n}
    from scipy.stats import t

    sd = stdev(values)
    return {"mean": m, "std": sd, "ci95": float(t.ppf(0.975, n - 1)) * sd / n ** 0.5, "n": n}


AGGREGATED = ("quality", "accuracy", "f1_macro", "gain_points", "train_usd", "serve_usd", "total_usd", "train_wall_s",
              "train_energy_kwh", "serve_p99_ms", "usd_per_point")


def recipe_rows(rows: list[dict]) -> list[dict]:
    """One row per recipe with intervals over its seeds, ranked with ties."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["recipe"], []).append(row)
    out = []
    for key, members in groups.items():
        first = members[0]
        agg = {"recipe": key, "method": first["method"], "task": first["task"], "model": first["model"],
               "data": first.get("data"), "test_hash": first.get("test_hash"),
               "metric": first["metric"], "seeds": sorted(m["seed"] for m in members), "n": len(members)}
        for name in AGGREGATED:
            values = [m[name] for m in members if m[name] is not None]
            agg[name] = interval(values) if len(values) == len(members) else None
        out.append(agg)
    for agg in out:
        agg["pareto"] = not any(
            o is not agg and board(o) == board(agg) and o["quality"]["mean"] >= agg["quality"]["mean"]
            and o["total_usd"]["mean"] <= agg["total_usd"]["mean"]
            and (o["quality"]["mean"] > agg["quality"]["mean"] or o["total_usd"]["mean"] < agg["total_usd"]["mean"])
            for o in out)
    ranked = []
    for key in boards(out):
        ranked += rank_with_ties([r for r in out if board(r) == key])
    return ranked


def _bounds(stat: dict) -> tuple[float, float]:
    half = stat["ci95"] or 0.0
    return stat["mean"] - half, stat["mean"] + half


def rank_with_ties(recipes: list[dict]) -> list[dict]:
    """Sort by mean $/gain point; a recipe whose interval overlaps its tie group's leader shares its rank."""
    ordered = sorted(recipes, key=lambda r: (r["usd_per_point"] is None,
                                             r["usd_per_point"]["mean"] if r["usd_per_point"] else 0.0))
    leader = None
    for i, rec in enumerate(ordered, 1):
        stat = rec["usd_per_point"]
        if stat is None:
            rec["rank"], rec["tie"] = i, False
            continue
        if leader is not None and _bounds(leader["usd_per_point"])[1] >= _bounds(stat)[0]:
            rec["rank"], rec["tie"], leader["tie"] = leader["rank"], True, True
        else:
            rec["rank"], rec["tie"], leader = i, False, rec
    return ordered


def _fmt(value, key: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        if key == "serve_meets_slo":
            return "yes" if value else "**no**"
        return "yes" if value else ""
    if key == "trainable_params":
        return f"{value:,}"
    if isinstance(value, float):
        if key in ("quality", "accuracy", "f1_macro", "majority_accuracy", "baseline_quality", "unparseable_rate"):
            return f"{value:.4f}"
        if key in ("gain_points", "train_wall_s", "peak_memory_mb", "serve_p50_ms", "serve_p99_ms"):
            return f"{value:.1f}"
        return f"{value:.3g}"
    return str(value)


def volume(records: list[dict], requests: int | None) -> int:
    if requests is not None:
        return requests
    values = Counter((r["config"].get("cost") or {}).get("leaderboard_requests") for r in records)
    values.pop(None, None)
    return values.most_common(1)[0][0] if values else 1_000_000


def _fmt_stat(stat: dict | None, key: str) -> str:
    if stat is None:
        return "n/a"
    text = _fmt(stat["mean"], key)
    return text if stat["ci95"] is None else f"{text} ± {_fmt(stat['ci95'], key)}"


RECIPE_COLUMNS = [("quality", "quality"), ("accuracy", "accuracy"), ("f1_macro", "macro-F1"), ("gain_points", "gain (pts)"),
                  ("train_usd", "train $"), ("serve_usd", "serve $"), ("total_usd", "total $"),
                  ("usd_per_point", "$ / gain pt"), ("train_wall_s", "train s"), ("serve_p99_ms", "p99 ms")]


def recipe_markdown(recipes: list[dict]) -> str:
    out = io.StringIO()
    out.write("## Recipes (mean ± 95% CI over seeds)\n\n")
    out.write("Runs that differ only in `train.seed`; ± is the Student-t 95% confidence half-width "
              "(none with one seed). Recipes whose $ / gain pt intervals overlap share a rank (`=`).\n\n")
    heads = ["rank", "pareto", "method", "task", "model", "metric", "n", "seeds"] + [h for _, h in RECIPE_COLUMNS]
    out.write("| " + " | ".join(heads) + " |\n|" + "---|" * len(heads) + "\n")
    for r in recipes:
        cells = [("=" if r["tie"] else "") + str(r["rank"]), "yes" if r["pareto"] else "", r["method"], r["task"],
                 r["model"], r["metric"], str(r["n"]), ",".join(map(str, r["seeds"]))]
        cells += [_fmt_stat(r[k], k) for k, _ in RECIPE_COLUMNS]
        out.write("| " + " | ".join(cells) + " |\n")
    return out.getvalue() + "\n"


REFERENCE_COLUMNS = [("model", "model"), ("weights", "weights"), ("metric", "metric"), ("quality", "quality"),
                     ("accuracy", "accuracy"), ("f1_macro", "macro-F1"), ("unparseable_rate", "unparseable"),
                     ("n_examples", "n"), ("run_id", "scored in run")]


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    heads = [h for _, h in columns]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(_fmt(row.get(k), k) for k, _ in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict], failed: list[dict], requests: int, recipes: list[dict] | None = None,
             references: list[dict] | None = None) -> str:
    out = io.StringIO()
    out.write("# Cost-per-quality leaderboard\n\n")
    out.write(f"Total $ = training $ + serving $ for **{requests:,} requests**. "
              "$ / gain pt = total $ / (quality - baseline quality) x 100; lower is better. Quality is the "
              "run's primary metric (`metric`); the baseline is the majority class for `seq_cls` and the "
              "un-tuned base model, scored on the same held-out prompts with the same template, greedy "
              "decoding and answer parser, for `causal_lm`. Each board (task, metric, held-out set) is "
              "ranked on its own. Pareto: no other run of the board is both at least as good and at least "
              "as cheap. "
              "Training $ = training-phase device-hours x the price card's hourly price; serving $ uses the "
              "measured throughput at the fastest batch size meeting the p99 latency target (`serve batch`; "
              "when none meets it, batch 1 and `meets SLO` says **no**). Energy and CO2 "
              "cover the training phase (see each record's `train.energy_method`). Latency p50/p99 are "
              "one request at a time, warm-up excluded.\n\n")
    if recipes and any(r["n"] > 1 for r in recipes):
        out.write(recipe_markdown(recipes))
    for key in boards(rows):
        out.write(f"## {board_title(key, rows)}\n\n")
        out.write(_table([r for r in rows if board(r) == key], COLUMNS))
        refs = [r for r in references or [] if board(r) == key]
        if refs:
            out.write("\nReference: the un-tuned base model on the same held-out set (nothing trained; "
                      "`unparseable` = share of outputs holding no label word, counted wrong).\n\n")
            out.write(_table(refs, REFERENCE_COLUMNS))
        out.write("\n")
    if failed:
        out.write("## Failed runs\n\n| run id | method | status | stage | message |\n|---|---|---|---|---|\n")
        for rec in failed:
            msg = str(rec.get("error", {}).get("message", "")).replace("|", "\\|")[:200]
            out.write(f"| {rec['run_id']} | {rec['method']} | {rec['status']} | {rec.get('failed_stage', '')} "
                      f"| {msg} |\n")
    return out.getvalue()


def csv_text(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[k for k, _ in COLUMNS], extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return out.getvalue()


def recipe_csv_text(recipes: list[dict]) -> str:
    out = io.StringIO()
    fields = ["rank", "tie", "pareto", "method", "task", "model", "metric", "n", "seeds", "recipe"]
    for key, _ in RECIPE_COLUMNS:
        fields += [f"{key}_mean", f"{key}_std", f"{key}_ci95"]
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for r in recipes:
        row = {k: r[k] for k in ("rank", "tie", "pareto", "method", "task", "model", "metric", "n", "recipe")}
        row["seeds"] = " ".join(map(str, r["seeds"]))
        for key, _ in RECIPE_COLUMNS:
            stat = r[key] or {}
            row.update({f"{key}_mean": stat.get("mean"), f"{key}_std": stat.get("std"), f"{key}_ci95": stat.get("ci95")})
        writer.writerow(row)
    return out.getvalue()


def plot(rows: list[dict], path: Path, requests: int) -> Path | None:
    """Quality vs total $, one panel per task, with the baselines as dotted lines."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = boards(rows)
    fig, axes = plt.subplots(1, len(keys), figsize=(7 * len(keys), 4.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        group = [r for r in rows if board(r) == key]
        task = key[0]
        for row in group:
            ax.scatter(row["total_usd"], row["quality"], s=60, marker="o" if row["pareto"] else "x")
            ax.annotate(row["method"], (row["total_usd"], row["quality"]), textcoords="offset points", xytext=(6, 4))
        front = sorted((r for r in group if r["pareto"]), key=lambda r: r["total_usd"])
        ax.plot([r["total_usd"] for r in front], [r["quality"] for r in front], "--", lw=1, label="Pareto front")
        lines = {(r["baseline"], round(r["baseline_quality"], 4)) for r in group if r["baseline_quality"] is not None}
        for kind, value in sorted(lines, key=str):
            ax.axhline(value, color="grey", lw=0.8, ls=":", label=f"{kind} {value:.3f}")
        ax.set_xlabel(f"total $ (training + serving {requests:,} requests)")
        ax.set_ylabel(f"held-out {key[1]}")
        ax.set_title(f"{task}: {key[1]} vs total cost ({key[2]})", fontsize=9)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


def build(results_dir: str | Path, requests: int | None = None) -> list[Path]:
    """Write leaderboard.md, leaderboard.csv and leaderboard.png into ``results_dir``."""
    results_dir = Path(results_dir)
    records, problems = record_mod.read_all(results_dir)
    for problem in problems:
        print(f"bench: skipped {problem}", file=sys.stderr)
    records = record_mod.latest_per_run(records)
    n = volume(records, requests)
    rows = table_rows(records, n)
    recipes = recipe_rows(rows)
    failed = [r for r in records if r["status"] != "ok"]
    references = reference_rows(records)
    md, csv_path = results_dir / "leaderboard.md", results_dir / "leaderboard.csv"
    record_mod.atomic_write_text(md, markdown(rows, failed, n, recipes, references))
    record_mod.atomic_write_text(csv_path, csv_text(rows))
    recipes_csv = results_dir / "leaderboard_recipes.csv"
    record_mod.atomic_write_text(recipes_csv, recipe_csv_text(recipes))
    paths = [md, csv_path, recipes_csv]
    png = plot(rows, results_dir / "leaderboard.png", n)
    return paths + ([png] if png else [])
