"""Spend attribution: total $, device-hours, energy and CO2 per group of tag values.

A key that is not a tag of a record falls back to the record's own field of that name
(method, task, name, status), so ``--by team,method`` works without a method tag.

Every record counts, failed runs and repeated attempts included: each held a device.
$ and device-hours cover all phases of each run; kWh and CO2 cover the training phase
(what the energy meter measured). Never imports torch.
"""

from __future__ import annotations

import csv
import io

RECORD_FIELDS = ("method", "task", "name", "status")
FIELDS = ("runs", "failed", "usd", "device_hours", "train_energy_kwh", "train_co2_kg")


def spend_by(records: list[dict], keys: list[str]) -> list[dict]:
    """Rows of {tag key: value, ..., runs, failed, usd, device_hours, train_energy_kwh, train_co2_kg}."""
    groups: dict[tuple, dict] = {}
    for rec in records:
        tags = rec.get("tags") or {}
        group = tuple(str(tags.get(k, rec.get(k) if k in RECORD_FIELDS else "(none)")) for k in keys)
        row = groups.setdefault(group, {**dict(zip(keys, group)), **{f: 0 for f in FIELDS}})
        cost, train = rec.get("cost") or {}, rec.get("train") or {}
        row["runs"] += 1
        row["failed"] += rec["status"] != "ok"
        row["usd"] += float(cost.get("run_usd") or 0.0)
        row["device_hours"] += float(cost.get("run_device_hours") or 0.0)
        row["train_energy_kwh"] += float(train.get("energy_kwh") or 0.0)
        row["train_co2_kg"] += float(train.get("co2_kg") or 0.0)
    return sorted(groups.values(), key=lambda r: -r["usd"])


def _total(rows: list[dict], keys: list[str]) -> dict:
    total = {k: "TOTAL" if i == 0 else "" for i, k in enumerate(keys)}
    total.update({f: sum(r[f] for r in rows) for f in FIELDS})
    return total


def table(rows: list[dict], keys: list[str]) -> str:
    heads = list(keys) + ["runs", "failed", "$ (all phases)", "device-h", "train kWh", "train CO2 kg"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in rows + ([_total(rows, keys)] if rows else []):
        cells = [str(r[k]) for k in keys] + [str(r["runs"]), str(r["failed"]), f"{r['usd']:.6f}",
                                              f"{r['device_hours']:.6f}", f"{r['train_energy_kwh']:.6f}",
                                              f"{r['train_co2_kg']:.6f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict], keys: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(keys) + list(FIELDS))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
