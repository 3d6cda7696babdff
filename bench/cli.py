"""The ``bench`` command: thin subcommands over config -> plan -> run -> leaderboard.

Bad input (config, overrides, paths) ends with a one-line error naming the key or
file and exit status 2; nothing already written is touched.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from bench.config import ConfigError

DEFAULT_RESULTS = "results"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with a hint) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"bench: error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bench", description="Measure what fine-tuning costs per unit of quality: train, evaluate, "
        "serve, record, and rank recipes on a cost-per-quality leaderboard.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def with_config(p):
        p.add_argument("config", help="YAML config file (see configs/default.yaml)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key, e.g. --set train.lr=1e-4 (repeatable; value parsed as YAML)")

    p = sub.add_parser("validate", help="check a config and print the runs it expands to")
    with_config(p)
    p = sub.add_parser("run", help="run every run of a config and write records and the leaderboard")
    with_config(p)
    p.add_argument("--results", default=DEFAULT_RESULTS, help="results directory (default: results)")
    p.add_argument("--in-process", action="store_true",
                   help="run in this process instead of one fresh process per run (debugging)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--rerun", action="store_true",
                       help="measure every run again, even those already recorded (older records are kept)")
    again.add_argument("--rerun-failed", action="store_true",
                       help="measure again only the runs whose latest record is a failure")
    p = sub.add_parser("leaderboard", help="rebuild the leaderboard from the records in a results directory")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="results directory (default: results)")
    p.add_argument("--traffic", default=None, metavar="KEY=VALUE,...",
                   help="price the board at this traffic instead of the records' own `traffic:`, e.g. "
                        "requests_per_day=5e6,months=24 (keys: requests_per_day, input_tokens, output_tokens, "
                        "cached_input_fraction, peak_to_average, months)")
    p.add_argument("--api-prices", default=None, metavar="FILE",
                   help="API price card set beside the runs (default: the records' cost.api_price_card)")
    p = sub.add_parser("report", help="reports over the records in a results directory")
    p.add_argument("kind", choices=["spend"], help="spend: $, device-hours, kWh and CO2 per group of tags")
    p.add_argument("--by", default="team,env", help="comma-separated tag keys to group by (default: team,env)")
    p.add_argument("--results", default=DEFAULT_RESULTS, help="results directory (default: results)")
    p.add_argument("--format", choices=["table", "csv"], default="table", help="output format (default: table)")
    p.add_argument("--csv", dest="csv_path", default=None, help="also write the CSV to this file")
    p.add_argument("--this-checkout", action="store_true",
                   help="count only records made from this checkout (not published ones from elsewhere)")
    return parser


def _plans(args):
    from bench import config, plan

    raw, _ = config.load(args.config, args.overrides)
    try:
        return plan.expand(raw)
    except ConfigError as exc:
        raise ConfigError(f"{args.config}: {exc}") from None


def cmd_validate(args) -> int:
    from bench.plan import describe
    from bench.record import mask_secrets

    from bench import preflight

    plans = _plans(args)
    try:
        preflight.check(plans)
    except ConfigError as exc:
        raise ConfigError(f"{args.config}: {exc}") from None
    print(f"{args.config}: ok, {len(plans)} run(s)")
    for p in plans:
        print("  " + mask_secrets(describe(p)))
    return 0


def cmd_run(args) -> int:
    from bench import leaderboard, preflight, runner
    from bench.plan import describe
    from bench.record import mask_secrets

    plans = _plans(args)
    results = Path(args.results)
    if results.exists() and not results.is_dir():
        raise ConfigError(f"--results: '{results}' is not a directory")
    try:
        preflight.check(plans)  # bad input fails here, before any run starts or anything is written
    except ConfigError as exc:
        raise ConfigError(f"{args.config}: {exc}") from None
    _check_writable(results)
    print(f"{args.config}: {len(plans)} run(s) -> {results}/runs/", file=sys.stderr)
    for p in plans:
        print("  " + mask_secrets(describe(p)), file=sys.stderr)
    records = runner.run_all(plans, results, isolate=not args.in_process, rerun=args.rerun,
                             rerun_failed=args.rerun_failed)
    paths = leaderboard.build(args.results)
    ok = sum(r["status"] == "ok" for r in records)
    print(f"{ok}/{len(records)} run(s) ok; leaderboard: {', '.join(str(p) for p in paths)}")
    return 0 if ok == len(records) else 1


def _check_writable(results: Path) -> None:
    """The results directory (and its runs/) can take new files; nothing existing is touched."""
    import tempfile

    from bench import record

    if results.exists() and not results.is_dir():
        raise ConfigError(f"--results: '{results}' is not a directory")
    try:
        (results / "runs").mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=results / "runs", prefix=".probe-"):
            pass
        record.checkout_token(results)
    except OSError as exc:
        raise ConfigError(f"--results: cannot write records under '{results}' ({exc.strerror or exc})") from None


def parse_traffic(text: str) -> dict:
    """``requests_per_day=5e6,months=24`` -> checked traffic keys (the rest stay the records')."""
    import dataclasses

    from bench import config

    out, names = {}, [f.name for f in dataclasses.fields(config.TrafficConfig)]
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in names:
            raise ConfigError(f"--traffic: {item!r} is not KEY=VALUE with KEY one of {', '.join(names)}"
                              + (config.did_you_mean(key, names) if sep else ""))
        if key in out:
            raise ConfigError(f"--traffic: {key} given twice")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"--traffic: {key} must be a number (got {value!r})") from None
        if not math.isfinite(number):
            raise ConfigError(f"--traffic: {key} must be a finite number (got {value!r})")
        if key in ("input_tokens", "output_tokens"):
            if not number.is_integer():
                raise ConfigError(f"--traffic: {key} must be a whole number of tokens (got {value!r})")
            number = int(number)
        out[key] = number
    merged = config.TrafficConfig(**{**dataclasses.asdict(config.TrafficConfig()), **out})
    try:
        config.validate_traffic(merged)
    except ConfigError as exc:
        raise ConfigError(f"--traffic: {str(exc).removeprefix('traffic.')}") from None
    return out


def cmd_leaderboard(args) -> int:
    from bench import leaderboard

    if not Path(args.results).is_dir():
        raise ConfigError(f"--results: directory '{args.results}' does not exist")
    traffic = parse_traffic(args.traffic) if args.traffic else None
    if args.api_prices is not None:
        from bench.measure.cost import load_api_price_card

        if not args.api_prices.strip():
            raise ConfigError("--api-prices: empty path; name an API price card file")

        load_api_price_card(args.api_prices)  # a bad card fails here, before anything is written
    paths = leaderboard.build(args.results, traffic=traffic, api_price_card=args.api_prices)
    print("\n".join(str(p) for p in paths))
    return 0


def cmd_report(args) -> int:
    from bench import record, report

    if not Path(args.results).is_dir():
        raise ConfigError(f"--results: directory '{args.results}' does not exist")
    keys = [k.strip() for k in args.by.split(",") if k.strip()]
    if not keys:
        raise ConfigError("--by: name at least one tag key, e.g. --by team,env")
    records, problems = record.read_all(args.results)
    for problem in problems:
        print(f"bench: skipped {problem}", file=sys.stderr)
    if args.this_checkout:
        token = record.checkout_token(args.results)
        records = [r for r in records if r.get("checkout_token") == token]
    rows = report.spend_by(records, keys)
    text = report.csv_text(rows, keys)
    if args.csv_path:
        target = Path(args.csv_path).resolve()
        if target.is_dir() or target.suffix == ".json" or (Path(args.results).resolve() / "runs") in target.parents:
            raise ConfigError(f"--csv: '{args.csv_path}' must be a new or existing .csv file outside the records")
        try:
            record.atomic_write_text(target, text)
        except OSError as exc:
            raise ConfigError(f"--csv: cannot write '{args.csv_path}' ({exc.strerror or exc})") from None
    if args.format == "csv":
        print(text, end="")
    else:
        print(f"Spend in {args.results} by {', '.join(keys)} ($ and device-hours: all phases of every run, "
              "failed ones included; kWh and CO2: training phase)\n")
        print(report.table(rows, keys), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    from bench.runner import quiet_libraries

    args = _parser().parse_args(argv)
    quiet_libraries()
    handler = {"validate": cmd_validate, "run": cmd_run, "leaderboard": cmd_leaderboard,
               "report": cmd_report}[args.command]
    try:
        return handler(args)
    except ConfigError as exc:
        from bench.record import mask_secrets

        print(f"bench: error: {mask_secrets(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
