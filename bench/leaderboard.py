"""Run records -> cost-per-quality leaderboard (markdown, CSV, plot). Never imports torch.

For each ok run:
  gain_points  = (accuracy - majority-class accuracy) x 100
  serve_usd    = usd_per_1k_requests x requests / 1000    (requests: the stated volume)
  total_usd    = train_usd + serve_usd
  usd_per_point = total_usd / gain_points                 (lower is better; n/a when gain <= 0)
Rows are sorted by usd_per_point; a row is Pareto-optimal when no other row has both
higher-or-equal accuracy and lower-or-equal total $ (one of them strictly).

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
    ("accuracy", "accuracy"), ("f1_macro", "macro-F1"), ("majority_accuracy", "majority acc"),
    ("gain_points", "gain (pts)"), ("train_wall_s", "train s"), ("train_device_hours", "device-h"),
    ("train_energy_kwh", "train kWh"), ("train_co2_kg", "train CO2 kg"), ("train_usd", "train $"),
    ("peak_memory_mb", "peak MB"), ("trainable_params", "trainable params"), ("serve_p50_ms", "p50 ms"),
    ("serve_p99_ms", "p99 ms"), ("serve_usd_per_1k", "serve $/1K req"), ("serve_batch", "serve batch"),
    ("serve_meets_slo", "meets SLO"), ("serve_usd", "serve $"),
    ("total_usd", "total $"), ("usd_per_point", "$ / gain pt"), ("device", "device"), ("run_id", "run id"),
]


def row_for(rec: dict, requests: int) -> dict:
    acc = rec["quality"]["accuracy"]
    majority = rec["baseline"]["majority_class"]["accuracy"]
    gain = (acc - majority) * 100.0
    serve = rec.get("serve") or {}
    per_1k = serve.get("usd_per_1k_requests")
    serve_usd = per_1k * requests / 1000.0 if per_1k is not None else 0.0
    latency = serve.get("latency_ms") or {}
    total = rec["cost"]["train_usd"] + serve_usd
    train = rec["train"]
    return {
        "method": rec["method"], "task": rec["task"], "model": rec["config"]["model"]["id"],
        "accuracy": acc, "f1_macro": rec["quality"].get("f1"), "majority_accuracy": majority,
        "gain_points": gain, "train_wall_s": train["wall_s"], "train_device_hours": train["device_hours"],
        "train_energy_kwh": train["energy_kwh"], "train_co2_kg": train.get("co2_kg"),
        "train_usd": rec["cost"]["train_usd"], "peak_memory_mb": train["peak_memory_mb"],
        "trainable_params": train["trainable_params"], "serve_p50_ms": latency.get("p50"),
        "serve_p99_ms": latency.get("p99"), "serve_usd_per_1k": per_1k, "serve_usd": serve_usd,
        "serve_batch": serve.get("cost_basis_batch_size"), "serve_meets_slo": serve.get("cost_basis_meets_slo"),
        "total_usd": total, "usd_per_point": total / gain if gain > 0 else None,
        "device": rec.get("device", {}).get("name", ""), "run_id": rec["run_id"],
    }


def mark_pareto(rows: list[dict]) -> None:
    """Pareto-optimal on (accuracy up, total_usd down)."""
    for row in rows:
        row["pareto"] = not any(
            other is not row
            and other["accuracy"] >= row["accuracy"] and other["total_usd"] <= row["total_usd"]
            and (other["accuracy"] > row["accuracy"] or other["total_usd"] < row["total_usd"])
            for other in rows
        )


def rank(rows: list[dict]) -> list[dict]:
    """Best quality per dollar first; runs with no gain over the baseline last."""
    ordered = sorted(rows, key=lambda r: (r["usd_per_point"] is None, r["usd_per_point"] or 0.0, -r["accuracy"]))
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


AGGREGATED = ("accuracy", "f1_macro", "gain_points", "train_usd", "serve_usd", "total_usd", "train_wall_s",
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
               "seeds": sorted(m["seed"] for m in members), "n": len(members)}
        for name in AGGREGATED:
            values = [m[name] for m in members if m[name] is not None]
            agg[name] = interval(values) if len(values) == len(members) else None
        out.append(agg)
    for agg in out:
        agg["pareto"] = not any(
            o is not agg and o["accuracy"]["mean"] >= agg["accuracy"]["mean"]
            and o["total_usd"]["mean"] <= agg["total_usd"]["mean"]
            and (o["accuracy"]["mean"] > agg["accuracy"]["mean"] or o["total_usd"]["mean"] < agg["total_usd"]["mean"])
            for o in out)
    return rank_with_ties(out)


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
        if key in ("accuracy", "f1_macro", "majority_accuracy"):
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


RECIPE_COLUMNS = [("accuracy", "accuracy"), ("f1_macro", "macro-F1"), ("gain_points", "gain (pts)"),
                  ("train_usd", "train $"), ("serve_usd", "serve $"), ("total_usd", "total $"),
                  ("usd_per_point", "$ / gain pt"), ("train_wall_s", "train s"), ("serve_p99_ms", "p99 ms")]


def recipe_markdown(recipes: list[dict]) -> str:
    out = io.StringIO()
    out.write("## Recipes (mean ± 95% CI over seeds)\n\n")
    out.write("Runs that differ only in `train.seed`; ± is the Student-t 95% confidence half-width "
              "(none with one seed). Recipes whose $ / gain pt intervals overlap share a rank (`=`).\n\n")
    heads = ["rank", "pareto", "method", "model", "n", "seeds"] + [h for _, h in RECIPE_COLUMNS]
    out.write("| " + " | ".join(heads) + " |\n|" + "---|" * len(heads) + "\n")
    for r in recipes:
        cells = [("=" if r["tie"] else "") + str(r["rank"]), "yes" if r["pareto"] else "", r["method"], r["model"],
                 str(r["n"]), ",".join(map(str, r["seeds"]))]
        cells += [_fmt_stat(r[k], k) for k, _ in RECIPE_COLUMNS]
        out.write("| " + " | ".join(cells) + " |\n")
    return out.getvalue() + "\n"


def markdown(rows: list[dict], failed: list[dict], requests: int, recipes: list[dict] | None = None) -> str:
    out = io.StringIO()
    out.write("# Cost-per-quality leaderboard\n\n")
    out.write(f"Total $ = training $ + serving $ for **{requests:,} requests**. "
              "$ / gain pt = total $ / (accuracy - majority-class accuracy) x 100; lower is better. "
              "Pareto: no other run is both at least as accurate and at least as cheap. "
              "Training $ = training-phase device-hours x the price card's hourly price; serving $ uses the "
              "measured throughput at the fastest batch size meeting the p99 latency target (`serve batch`; "
              "when none meets it, batch 1 and `meets SLO` says **no**). Energy and CO2 "
              "cover the training phase (see each record's `train.energy_method`). Latency p50/p99 are "
              "one request at a time, warm-up excluded.\n\n")
    if recipes and any(r["n"] > 1 for r in recipes):
        out.write(recipe_markdown(recipes))
        out.write("## Runs\n\n")
    headers = [h for _, h in COLUMNS]
    out.write("| " + " | ".join(headers) + " |\n")
    out.write("|" + "---|" * len(headers) + "\n")
    for row in rows:
        out.write("| " + " | ".join(_fmt(row.get(k), k) for k, _ in COLUMNS) + " |\n")
    if failed:
        out.write("\n## Failed runs\n\n| run id | method | status | stage | message |\n|---|---|---|---|---|\n")
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
    fields = ["rank", "tie", "pareto", "method", "model", "n", "seeds", "recipe"]
    for key, _ in RECIPE_COLUMNS:
        fields += [f"{key}_mean", f"{key}_std", f"{key}_ci95"]
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    for r in recipes:
        row = {k: r[k] for k in ("rank", "tie", "pareto", "method", "model", "n", "recipe")}
        row["seeds"] = " ".join(map(str, r["seeds"]))
        for key, _ in RECIPE_COLUMNS:
            stat = r[key] or {}
            row.update({f"{key}_mean": stat.get("mean"), f"{key}_std": stat.get("std"), f"{key}_ci95": stat.get("ci95")})
        writer.writerow(row)
    return out.getvalue()


def plot(rows: list[dict], path: Path, requests: int) -> Path | None:
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        ax.scatter(row["total_usd"], row["accuracy"], s=60, marker="o" if row["pareto"] else "x")
        ax.annotate(row["method"], (row["total_usd"], row["accuracy"]), textcoords="offset points", xytext=(6, 4))
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["total_usd"])
    ax.plot([r["total_usd"] for r in front], [r["accuracy"] for r in front], "--", lw=1, label="Pareto front")
    majority = sorted({round(r["majority_accuracy"], 4) for r in rows})
    for m in majority:
        ax.axhline(m, color="grey", lw=0.8, ls=":", label=f"majority class {m:.3f}")
    ax.set_xlabel(f"total $ (training + serving {requests:,} requests)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("Quality vs total cost")
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
    md, csv_path = results_dir / "leaderboard.md", results_dir / "leaderboard.csv"
    record_mod.atomic_write_text(md, markdown(rows, failed, n, recipes))
    record_mod.atomic_write_text(csv_path, csv_text(rows))
    recipes_csv = results_dir / "leaderboard_recipes.csv"
    record_mod.atomic_write_text(recipes_csv, recipe_csv_text(recipes))
    paths = [md, csv_path, recipes_csv]
    png = plot(rows, results_dir / "leaderboard.png", n)
    return paths + ([png] if png else [])
