"""Run records -> cost-per-quality leaderboard (markdown, CSV, plot). Never imports torch.

Runs are grouped into boards: one per task, metric and held-out set (data id and test-split
hash), since scores on different data or metrics do not compare; each board is ranked on its
own. Each board is priced at one traffic: the most common ``traffic:`` of its records, with
``--traffic`` keys over it. For each ok run:
  quality        = the run's primary metric (accuracy where answers are labels)
  baseline       = the majority-class score (seq_cls) or the un-tuned base model's score on the
                   same held-out prompts (causal_lm), same metric
  gain_points    = (quality - baseline) x 100
  replicas       = ceil(peak requests/s / capacity), capacity = the requests/s one replica served
                   at its cost basis under the SLO (see `bench.tco`)
  tco_usd        = train_usd + replicas x devices x hourly price x 730 h x months
  points_per_tco_usd = gain_points / tco_usd                  (higher is better; n/a when gain <= 0)
Rows are sorted by points_per_tco_usd; a row is Pareto-optimal when no other row of its board has
both higher-or-equal quality and lower-or-equal TCO (one of them strictly). Each causal_lm
group also lists its un-tuned base models as reference rows (quality only, nothing trained),
every served variant (base, unmerged, merged, ...) of runs served on vLLM, and the API price
card's models at the same traffic (cost only).

Runs that differ only in ``train.seed`` form a recipe: the recipe table gives the mean,
standard deviation, 95% confidence interval (Student t) and n of each figure, and
recipes whose points-per-TCO-$ intervals overlap share a rank (a tie). Where a directory
holds several records of one run id, the newest is used.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from bench import record as record_mod
from bench import tco
from bench.config import ConfigError, TrafficConfig

COLUMNS = [
    ("rank", "rank"), ("pareto", "pareto"), ("method", "method"), ("task", "task"), ("model", "model"),
    ("metric", "metric"), ("quality", "quality"), ("accuracy", "accuracy"), ("f1_macro", "macro-F1"),
    ("unparseable_rate", "unparseable"), ("baseline", "baseline"), ("baseline_quality", "baseline quality"), ("majority_accuracy", "majority acc"),
    ("gain_points", "gain (pts)"), ("train_wall_s", "train s"), ("train_device_hours", "device-h"),
    ("train_energy_kwh", "train kWh"), ("train_co2_kg", "train CO2 kg"), ("train_usd", "train $"),
    ("peak_memory_mb", "peak MB"), ("trainable_params", "trainable params"), ("serve_engine", "engine"),
    ("serve_variant", "served as"), ("serve_ttft_p50_ms", "TTFT p50 ms"), ("serve_ttft_p99_ms", "TTFT p99 ms"),
    ("serve_tpot_p50_ms", "TPOT p50 ms"), ("serve_tpot_p99_ms", "TPOT p99 ms"), ("serve_basis", "serve basis"),
    ("serve_meets_slo", "meets SLO"), ("serve_capacity_rps", "req/s at SLO"),
    ("serve_tokens_s", "out tok/s at SLO"), ("serve_usd_per_1m_out", "$/1M out tok"), ("replicas", "replicas"),
    ("utilization", "utilization"), ("serve_usd_per_month", "serve $/month"), ("tco_usd", "TCO $"),
    ("points_per_tco_usd", "gain pts / TCO $"), ("break_even_vs_first", "TCO break-even vs #1 (months)"),
    ("device", "device"), ("run_id", "run id"),
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


def _pct(stats: dict | None, key: str):
    return (stats or {}).get(key)


def row_for(rec: dict, traffic: dict) -> dict:
    metric = primary_metric(rec)
    quality = rec["quality"][metric]
    kind, base_quality = baseline_of(rec, metric)
    gain = (quality - base_quality) * 100.0 if base_quality is not None else None
    serve = rec.get("serve") or {}
    owned = tco.for_record(rec, traffic)
    tco_usd = owned["usd"] if owned else None
    train = rec["train"]
    basis = serve.get("cost_basis") or (f"batch_size={serve['cost_basis_batch_size']}"
                                        if serve.get("cost_basis_batch_size") else None)
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
        "trainable_params": train["trainable_params"],
        "serve_engine": serve.get("engine"), "serve_variant": serve.get("variant"),
        "serve_ttft_p50_ms": _pct(serve.get("ttft_ms") or serve.get("latency_ms"), "p50"),
        "serve_ttft_p99_ms": _pct(serve.get("ttft_ms") or serve.get("latency_ms"), "p99"),
        "serve_tpot_p50_ms": _pct(serve.get("tpot_ms"), "p50"), "serve_tpot_p99_ms": _pct(serve.get("tpot_ms"), "p99"),
        "serve_basis": basis, "serve_meets_slo": serve.get("cost_basis_meets_slo"),
        "serve_few_requests": serve.get("few_requests"),
        "serve_capacity_rps": tco.capacity_of(serve), "serve_tokens_s": serve.get("throughput_output_tokens_s"),
        "serve_usd_per_1m_out": serve.get("usd_per_1m_output_tokens"),
        "serve_output_tokens": serve.get("output_tokens_per_request"),
        "replicas": owned["replicas"] if owned else None, "utilization": owned["utilization"] if owned else None,
        "serve_usd_per_month": owned["serve_usd_per_month"] if owned else None,
        "tco_usd": tco_usd,
        "points_per_tco_usd": gain / tco_usd if gain is not None and gain > 0 and tco_usd else None,
        "usd_per_point": tco_usd / gain if gain is not None and gain > 0 and tco_usd else None,
        "device": rec.get("device", {}).get("name", ""), "run_id": rec["run_id"],
        "variants": serve.get("variants"), "merge_agreement": serve.get("merge_agreement"),
        "cost_usd_per_hour": rec["cost"]["usd_per_hour"], "cost_devices": rec["cost"].get("devices", 1),
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
    """Pareto-optimal on (quality up, TCO down), within each board; rows without a TCO are not."""
    for row in rows:
        row["pareto"] = row["tco_usd"] is not None and not any(
            other is not row and board(other) == board(row) and other["tco_usd"] is not None
            and other["quality"] >= row["quality"] and other["tco_usd"] <= row["tco_usd"]
            and (other["quality"] > row["quality"] or other["tco_usd"] < row["tco_usd"])
            for other in rows
        )


def rank(rows: list[dict]) -> list[dict]:
    """Per board: most gain points per TCO $ first; runs with no gain (or no TCO) last. Each row
    also gets the months after which its TCO and the first row's cross (None: they never do)."""
    out = []
    for key in boards(rows):
        ranked = _rank_one([r for r in rows if board(r) == key])
        first = ranked[0]
        for row in ranked:
            row["break_even_vs_first"] = None if row is first or row["tco_usd"] is None or first["tco_usd"] is None \
                else tco.break_even_months(row, first)
        out += ranked
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
    ordered = sorted(rows, key=lambda r: (r["points_per_tco_usd"] is None, -(r["points_per_tco_usd"] or 0.0),
                                          -r["quality"]))
    for i, row in enumerate(ordered, 1):
        row["rank"] = i
    return ordered


def board_of(rec: dict) -> tuple:
    """The board a record's row goes on (see `board`), read from the record itself."""
    return (rec["task"], primary_metric(rec), (rec["config"].get("data") or {}).get("id"),
            (rec.get("data") or {}).get("test_hash"))


def _row_or_none(rec: dict, traffic: dict) -> dict | None:
    try:
        row = row_for(rec, traffic)
        row.update(recipe=recipe_key(rec["config"]), seed=rec["config"]["train"]["seed"], traffic=traffic)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        print(f"bench: skipped record {rec.get('run_id')}: incomplete ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return None
    return row


def table_rows(records: list[dict], traffic: dict | None = None) -> list[dict]:
    """Ranked rows; each board priced at its records' traffic with ``traffic`` keys over it."""
    by_board: dict[tuple, list[dict]] = {}
    for rec in records:
        if rec["status"] == "ok":
            by_board.setdefault(board_of(rec), []).append(rec)
    rows = []
    for members in by_board.values():
        at = traffic_for(members, traffic)
        rows += [row for row in (_row_or_none(rec, at) for rec in members) if row is not None]
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


AGGREGATED = ("quality", "accuracy", "f1_macro", "gain_points", "train_usd", "serve_usd_per_month", "tco_usd",
              "train_wall_s", "train_energy_kwh", "serve_ttft_p99_ms", "points_per_tco_usd")


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
            and o["tco_usd"] and agg["tco_usd"] and o["tco_usd"]["mean"] <= agg["tco_usd"]["mean"]
            and (o["quality"]["mean"] > agg["quality"]["mean"] or o["tco_usd"]["mean"] < agg["tco_usd"]["mean"])
            for o in out) and agg["tco_usd"] is not None
    ranked = []
    for key in boards(out):
        ranked += rank_with_ties([r for r in out if board(r) == key])
    return ranked


def _bounds(stat: dict) -> tuple[float, float]:
    half = stat["ci95"] or 0.0
    return stat["mean"] - half, stat["mean"] + half


def rank_with_ties(recipes: list[dict]) -> list[dict]:
    """Sort by mean gain points per TCO $ (high first); a recipe whose interval overlaps its tie
    group's leader shares its rank."""
    key = "points_per_tco_usd"
    ordered = sorted(recipes, key=lambda r: (r[key] is None, -(r[key]["mean"] if r[key] else 0.0)))
    leader = None
    for i, rec in enumerate(ordered, 1):
        stat = rec[key]
        if stat is None:
            rec["rank"], rec["tie"] = i, False
            continue
        if leader is not None and _bounds(leader[key])[0] <= _bounds(stat)[1]:
            rec["rank"], rec["tie"], leader["tie"] = leader["rank"], True, True
        else:
            rec["rank"], rec["tie"], leader = i, False, rec
    return ordered


PLAIN_FLOAT = {"quality": ".4f", "accuracy": ".4f", "f1_macro": ".4f", "majority_accuracy": ".4f",
               "baseline_quality": ".4f", "unparseable_rate": ".4f", "utilization": ".4f", "gain_points": ".1f",
               "train_wall_s": ".1f", "peak_memory_mb": ".1f", "serve_ttft_p50_ms": ".1f", "serve_ttft_p99_ms": ".1f",
               "serve_tpot_p50_ms": ".1f", "serve_tpot_p99_ms": ".1f", "serve_tokens_s": ".1f",
               "serve_capacity_rps": ".2f", "serve_usd_per_month": ",.2f", "tco_usd": ",.2f", "usd": ",.2f",
               "ttft_p50": ".1f", "ttft_p99": ".1f", "tpot_p50": ".1f", "tpot_p99": ".1f", "tokens_s": ".1f",
               "rps": ".2f", "ready_s": ".0f", "break_even": ".3g", "break_even_vs_first": ".3g"}


def _fmt(value, key: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        if key == "serve_meets_slo":
            return "yes" if value else "**no**"
        return "yes" if value else ""
    if key in ("trainable_params", "replicas"):
        return f"{value:,}"
    if isinstance(value, float):
        return format(value, PLAIN_FLOAT.get(key, ".3g"))
    return str(value)


def traffic_for(records: list[dict], override: dict | None = None) -> dict:
    """The traffic the board is priced at: the records' most common ``traffic:``, then ``override``."""
    seen = Counter(json.dumps(r["config"]["traffic"], sort_keys=True) for r in records
                   if isinstance((r.get("config") or {}).get("traffic"), dict))
    traffic = asdict(TrafficConfig())
    if seen:
        traffic.update(json.loads(seen.most_common(1)[0][0]))
    traffic.update(override or {})
    return traffic


def api_card_for(records: list[dict], path: str | None = None) -> dict | None:
    """The API price card named by ``path`` or by most records (None when none is set or readable)."""
    from bench.measure import cost as cost_mod

    if path is None:
        named = Counter(card for card in ((r["config"].get("cost") or {}).get("api_price_card") for r in records)
                        if isinstance(card, str) and card)
        if not named:
            return None
        path = named.most_common(1)[0][0]
    try:
        return cost_mod.load_api_price_card(path)
    except ConfigError as exc:
        print(f"bench: API comparison left out: {exc}", file=sys.stderr)
        return None


def _fmt_stat(stat: dict | None, key: str) -> str:
    if stat is None:
        return "n/a"
    text = _fmt(stat["mean"], key)
    return text if stat["ci95"] is None else f"{text} ± {_fmt(stat['ci95'], key)}"


RECIPE_COLUMNS = [("quality", "quality"), ("accuracy", "accuracy"), ("f1_macro", "macro-F1"), ("gain_points", "gain (pts)"),
                  ("train_usd", "train $"), ("serve_usd_per_month", "serve $/month"), ("tco_usd", "TCO $"),
                  ("points_per_tco_usd", "gain pts / TCO $"), ("train_wall_s", "train s"),
                  ("serve_ttft_p99_ms", "TTFT p99 ms")]


def recipe_markdown(recipes: list[dict]) -> str:
    out = io.StringIO()
    out.write("## Recipes (mean ± 95% CI over seeds)\n\n")
    out.write("Runs that differ only in `train.seed`; ± is the Student-t 95% confidence half-width "
              "(none with one seed). Recipes whose gain pts / TCO $ intervals overlap share a rank (`=`).\n\n")
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


VARIANT_COLUMNS = [("method", "run"), ("variant", "variant"), ("basis", "cost basis"), ("meets_slo", "meets SLO"),
                   ("n_requests", "n"), ("ttft_p50", "TTFT p50 ms"), ("ttft_p99", "TTFT p99 ms"),
                   ("tpot_p50", "TPOT p50 ms"), ("tpot_p99", "TPOT p99 ms"), ("tokens_s", "out tok/s"),
                   ("rps", "req/s"), ("usd_1m_1", "$/1M out @100%"), ("usd_1m_06", "@60%"), ("usd_1m_03", "@30%"),
                   ("replicas", "replicas"), ("serve_usd_per_month", "serve $/month"), ("ready_s", "server start s")]
API_COLUMNS = [("model", "API model"), ("provider", "provider"), ("usd_per_1m_input", "$/1M in"),
               ("usd_per_1m_cached_input", "$/1M cached in"), ("usd_per_1m_output", "$/1M out"),
               ("usd_per_request", "$/request"), ("serve_usd_per_month", "$/month"), ("usd", "TCO $"),
               ("vs", "vs best run"), ("break_even", "break-even (months)")]


def variant_rows(rows: list[dict], traffic: dict) -> list[dict]:
    """Every served variant of runs served over HTTP, priced at the same traffic."""
    out = []
    for row in rows:
        for name, v in (row.get("variants") or {}).items():
            capacity = v.get("capacity_requests_s")
            owned = tco.self_hosted(traffic, capacity, row["cost_usd_per_hour"], row["cost_devices"], 0.0) \
                if capacity else None
            at = v.get("usd_per_1m_output_tokens_at_utilization") or {}
            out.append({
                "method": f"{row['method']} ({row['run_id'][-10:]})", "variant": name, "basis": v.get("cost_basis"),
                "meets_slo": v.get("cost_basis_meets_slo"), "n_requests": v.get("n_requests"),
                "ttft_p50": _pct(v.get("ttft_ms"), "p50"), "ttft_p99": _pct(v.get("ttft_ms"), "p99"),
                "tpot_p50": _pct(v.get("tpot_ms"), "p50"), "tpot_p99": _pct(v.get("tpot_ms"), "p99"),
                "tokens_s": v.get("throughput_output_tokens_s"), "rps": capacity,
                "usd_1m_1": at.get("1.0"), "usd_1m_06": at.get("0.6"), "usd_1m_03": at.get("0.3"),
                "replicas": owned["replicas"] if owned else None,
                "serve_usd_per_month": owned["serve_usd_per_month"] if owned else None, "ready_s": v.get("server_ready_s"),
            })
    return out


def api_rows(card: dict | None, traffic: dict, rows: list[dict]) -> list[dict]:
    """The API card's models at the traffic, each against the board's best run (break-even on TCO)."""
    if not card:
        return []
    ranked = [r for r in rows if r.get("tco_usd") is not None]
    best = ranked[0] if ranked else None
    out = []
    for name, price in card["models"].items():
        bill = tco.api(traffic, price)
        row = {"model": name, "provider": price.get("provider"), **{k: price.get(k) for k in
               ("usd_per_1m_input", "usd_per_1m_cached_input", "usd_per_1m_output")}, **bill}
        if best:
            mine = {"train_usd": best["train_usd"], "serve_usd_per_month": best["serve_usd_per_month"]}
            row["vs"] = (f"{best['method']}: ${best['tco_usd']:,.2f} "
                         f"({'lower' if best['tco_usd'] < bill['usd'] else 'higher'} over {traffic['months']:g} months)")
            row["break_even"] = tco.break_even_months(mine, bill)
        out.append(row)
    return out


def _guarded(make, *args, what: str) -> list[dict]:
    """A side table of a board; a record too odd to tabulate leaves that table out, not the board."""
    try:
        return make(*args)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        print(f"bench: {what} left out: a record has an unexpected value ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return []


def token_note(rows: list[dict], traffic: dict) -> str | None:
    """Where the traffic's answer length differs from the length the capacity was measured at."""
    measured = sorted({r["serve_output_tokens"] for r in rows if r.get("serve_output_tokens")})
    if measured and measured != [traffic["output_tokens"]]:
        return (f"Note: capacity was measured with {', '.join(map(str, measured))} output tokens per request; "
                f"this traffic assumes {traffic['output_tokens']}. Replicas and TCO use the measured capacity "
                "as it is; the API rows use the traffic's tokens. Re-run with `--set serve.output_tokens=...` "
                "for a like-for-like comparison.")
    return None


def _traffic_text(traffic: dict) -> str:
    return (f"{traffic['requests_per_day']:,.0f} requests/day, {traffic['input_tokens']} input + "
            f"{traffic['output_tokens']} output tokens each, peak {traffic['peak_to_average']:g}x average, "
            f"{traffic['months']:g} months")


def markdown(rows: list[dict], failed: list[dict], recipes: list[dict] | None = None,
             references: list[dict] | None = None, api_card: dict | None = None) -> str:
    out = io.StringIO()
    out.write("# Cost-per-quality leaderboard\n\n")
    out.write("Each board is priced at its runs' traffic (`traffic:` in the config, or `bench leaderboard "
              "--traffic`). TCO $ = training $ + serving $ over the period; serving $ = replicas x devices x the price card's "
              "hourly price x 730 h/month, with enough replicas to carry the peak at the capacity one replica "
              "served under the SLO (`req/s at SLO`; when no load point met it, the lightest one and `meets SLO` "
              "says **no**). Utilization = average / provisioned requests/s. Ranked by gain pts / TCO $ = "
              "(quality - baseline quality) x 100 / TCO $; higher is better. Quality is the run's primary metric "
              "(`metric`); the baseline is the majority class for `seq_cls` and the un-tuned base model, scored on "
              "the same held-out prompts with the same template, greedy decoding and answer parser, for "
              "`causal_lm`. Each board (task, metric, held-out set) is ranked on its own. Pareto: no other run of "
              "the board is both at least as good and at least as cheap. Training $ = training-phase device-hours "
              "x hourly price. Energy and CO2 cover the training phase (see each record's `train.energy_method`). "
              "TTFT/TPOT are streamed percentiles at the cost basis for vLLM and endpoints; for in-process "
              "classifiers TTFT is one request's whole answer. $/1M out tok assumes 100% utilization.\n\n")
    if recipes and any(r["n"] > 1 for r in recipes):
        out.write(recipe_markdown(recipes))
    for key in boards(rows):
        board_rows = [r for r in rows if board(r) == key]
        traffic = board_rows[0]["traffic"]
        out.write(f"## {board_title(key, rows)}\n\n")
        out.write(f"Traffic: **{_traffic_text(traffic)}**.\n\n")
        note = token_note(board_rows, traffic)
        if note:
            out.write(note + "\n\n")
        out.write(_table(board_rows, COLUMNS))
        few = [r["run_id"] for r in board_rows if r.get("serve_few_requests")]
        if few:
            out.write(f"\nFlagged: fewer than 100 measured serving requests in {', '.join(few)}.\n")
        refs = [r for r in references or [] if board(r) == key]
        if refs:
            out.write("\nReference: the un-tuned base model on the same held-out set (nothing trained; "
                      "`unparseable` = share of outputs holding no label word, counted wrong).\n\n")
            out.write(_table(refs, REFERENCE_COLUMNS))
        variants = _guarded(variant_rows, board_rows, traffic, what="served variants")
        if variants:
            out.write("\nServed variants (streamed load test on the engine; `unmerged` = the run's adapter loaded "
                      "by the engine, `merged` = merged into the base; replicas and $/month at the same traffic).\n\n")
            out.write(_table(variants, VARIANT_COLUMNS))
            agree = [f"{r['method']}: {r['merge_agreement']['identical_greedy_outputs']}/"
                     f"{r['merge_agreement']['prompts']}" for r in board_rows if r.get("merge_agreement")]
            if agree:
                out.write(f"\nMerged vs unmerged greedy outputs identical ({AGREEMENT_NOTE}): {'; '.join(agree)}.\n")
        apis = _guarded(api_rows, api_card, traffic, board_rows, what="API comparison")
        if apis:
            out.write(f"\nAPI models at the same traffic (`{api_card['path']}`; cost only, their quality on this "
                      "task is not measured; break-even = months after which the best run's TCO is the lower).\n\n")
            out.write(_table(apis, API_COLUMNS))
        out.write("\n")
    if failed:
        out.write("## Failed runs\n\n| run id | method | status | stage | message |\n|---|---|---|---|---|\n")
        for rec in failed:
            msg = str(rec.get("error", {}).get("message", "")).replace("|", "\\|")[:200]
            out.write(f"| {rec['run_id']} | {rec['method']} | {rec['status']} | {rec.get('failed_stage', '')} "
                      f"| {msg} |\n")
    return out.getvalue()


AGREEMENT_NOTE = "greedy, 16 tokens, first held-out prompts"


TRAFFIC_KEYS = ("requests_per_day", "input_tokens", "output_tokens", "cached_input_fraction", "peak_to_average",
                "months")


def csv_text(rows: list[dict]) -> str:
    """One line per run, with the traffic its TCO was priced at (``traffic_*``)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[k for k, _ in COLUMNS] + [f"traffic_{k}" for k in TRAFFIC_KEYS],
                            extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, **{f"traffic_{k}": (row.get("traffic") or {}).get(k) for k in TRAFFIC_KEYS}})
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


def plot(rows: list[dict], path: Path) -> Path | None:
    """Quality vs TCO $, one panel per board, with the baselines as dotted lines."""
    rows = [r for r in rows if r["tco_usd"] is not None]
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
            ax.scatter(row["tco_usd"], row["quality"], s=60, marker="o" if row["pareto"] else "x")
            ax.annotate(row["method"], (row["tco_usd"], row["quality"]), textcoords="offset points", xytext=(6, 4))
        front = sorted((r for r in group if r["pareto"]), key=lambda r: r["tco_usd"])
        ax.plot([r["tco_usd"] for r in front], [r["quality"] for r in front], "--", lw=1, label="Pareto front")
        lines = {(r["baseline"], round(r["baseline_quality"], 4)) for r in group if r["baseline_quality"] is not None}
        for kind, value in sorted(lines, key=str):
            ax.axhline(value, color="grey", lw=0.8, ls=":", label=f"{kind} {value:.3f}")
        traffic = group[0]["traffic"]
        ax.set_xlabel(f"TCO $ (training + serving {traffic['requests_per_day']:,.0f} requests/day "
                      f"for {traffic['months']:g} months)")
        ax.ticklabel_format(axis="x", useOffset=False, style="plain")  # TCOs that differ by cents stay readable
        ax.set_ylabel(f"held-out {key[1]}")
        ax.set_title(f"{task}: {key[1]} vs TCO ({key[2]})", fontsize=9)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


def build(results_dir: str | Path, traffic: dict | None = None, api_price_card: str | None = None) -> list[Path]:
    """Write leaderboard.md, leaderboard.csv, leaderboard_recipes.csv and leaderboard.png into ``results_dir``.
    ``traffic``: keys of ``traffic:`` that override the records' own."""
    results_dir = Path(results_dir)
    outputs = [results_dir / n for n in ("leaderboard.md", "leaderboard.csv", "leaderboard_recipes.csv", "leaderboard.png")]
    for path in outputs:
        if path.exists() and not path.is_file():
            raise ConfigError(f"--results: '{path}' is not a file; the leaderboard cannot be written there")
    records, problems = record_mod.read_all(results_dir)
    for problem in problems:
        print(f"bench: skipped {problem}", file=sys.stderr)
    records = record_mod.latest_per_run(records)
    rows = table_rows(records, traffic)
    recipes = recipe_rows(rows)
    failed = [r for r in records if r["status"] != "ok"]
    references = reference_rows(records)
    card = api_card_for(records, api_price_card)
    md, csv_path = results_dir / "leaderboard.md", results_dir / "leaderboard.csv"
    record_mod.atomic_write_text(md, markdown(rows, failed, recipes, references, card))
    record_mod.atomic_write_text(csv_path, csv_text(rows))
    recipes_csv = results_dir / "leaderboard_recipes.csv"
    record_mod.atomic_write_text(recipes_csv, recipe_csv_text(recipes))
    paths = [md, csv_path, recipes_csv]
    png = plot(rows, results_dir / "leaderboard.png")
    return paths + ([png] if png else [])
