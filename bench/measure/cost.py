"""Price cards and cost arithmetic. Every price is per device-hour in USD.

Training $   = device_hours x usd_per_hour, where device_hours = wall_s / 3600 x devices
               (the same pricing gives a run's spend over all its phases).
Serving $    = usd_per_hour x devices / (3600 x requests_per_s) x requests.
Energy $     = energy_kwh x usd_per_kwh (shown apart; cloud hourly prices already include power).
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from bench.config import ConfigError, did_you_mean


def _read_card(path: Path, key: str, section: str) -> dict:
    """A price card's YAML, with a non-empty mapping under ``section``; errors name ``key`` and the file."""
    if not path.is_file():
        raise ConfigError(f"{key}: price card '{path}' not found")
    try:
        card = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}: '{path}' is not valid YAML ({exc.__class__.__name__})") from None
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read '{path}' ({exc.strerror})") from None
    if not isinstance(card, dict) or not isinstance(card.get(section), dict) or not card[section]:
        raise ConfigError(f"{key}: '{path}' has no '{section}' mapping")
    return card


def load_price_card(path: str | Path) -> dict:
    path = Path(path)
    card = _read_card(path, "cost.price_card", "devices")
    for name, entry in card["devices"].items():
        price = entry.get("usd_per_hour") if isinstance(entry, dict) else None
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not math.isfinite(price) or price < 0:
            raise ConfigError(f"cost.price_card: '{path}' devices.{name}.usd_per_hour must be a finite number >= 0")
        match = entry.get("match", [])
        if not isinstance(match, list) or not all(isinstance(m, str) for m in match):
            raise ConfigError(f"cost.price_card: '{path}' devices.{name}.match must be a list of strings")
    kwh = card.get("usd_per_kwh")
    if kwh is not None and not (isinstance(kwh, dict) and isinstance(kwh.get("value"), (int, float))
                                and not isinstance(kwh.get("value"), bool) and math.isfinite(kwh["value"])):
        raise ConfigError(f"cost.price_card: '{path}' usd_per_kwh must be a mapping with a finite number 'value'")
    card["path"] = str(path)
    return card


API_PRICE_KEYS = ("usd_per_1m_input", "usd_per_1m_output", "usd_per_1m_cached_input")


def load_api_price_card(path: str | Path) -> dict:
    """An API price card: ``models`` -> {usd_per_1m_input, usd_per_1m_output[, usd_per_1m_cached_input]}."""
    path = Path(path)
    card = _read_card(path, "cost.api_price_card", "models")
    for name, entry in card["models"].items():
        if not isinstance(entry, dict):
            raise ConfigError(f"cost.api_price_card: '{path}' models.{name} must be a mapping")
        for key in API_PRICE_KEYS:
            value = entry.get(key)
            if value is None and key == "usd_per_1m_cached_input":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"cost.api_price_card: '{path}' models.{name}.{key} must be a finite number >= 0")
    card["path"] = str(path)
    return card


def select_device(card: dict, wanted: str, detected_name: str) -> tuple[str, dict]:
    """Pick the price entry: by key, or (``auto``) by matching the detected device name; where several
    entries match, the one with the longest match strings (the most specific) wins."""
    devices = card["devices"]
    if wanted != "auto":
        if wanted not in devices:
            raise ConfigError(
                f"cost.device: price card '{card['path']}' has no price for device '{wanted}'"
                + did_you_mean(wanted, devices) + f"; it prices: {', '.join(devices)}"
            )
        return wanted, devices[wanted]
    name = detected_name.lower()
    matching = []
    for key, entry in devices.items():
        patterns = [p.lower() for p in entry.get("match", [])]
        if patterns and all(p in name for p in patterns):
            matching.append((sum(map(len, patterns)), key))
    if matching:  # the most specific entry: "l40s" over "l4" for an L40S
        key = max(matching)[1]
        return key, devices[key]
    raise ConfigError(
        f"cost.device: price card '{card['path']}' has no price for device '{detected_name}'; "
        f"add it to the card or set cost.device to one of: {', '.join(devices)}"
    )


def device_hours(wall_s: float, n_devices: int) -> float:
    return wall_s / 3600.0 * n_devices


def device_time_usd(wall_s: float, n_devices: int, usd_per_hour: float) -> float:
    """$ for holding n devices for wall_s seconds (training $ when wall_s is the training phase)."""
    return device_hours(wall_s, n_devices) * usd_per_hour


def usd_per_1k_requests(requests_per_s: float, n_devices: int, usd_per_hour: float) -> float:
    """Cost of 1,000 requests served back to back at the measured rate."""
    if requests_per_s <= 0:
        raise ValueError("requests_per_s must be > 0")
    return usd_per_hour * n_devices / (3600.0 * requests_per_s) * 1000.0


def energy_usd(energy_kwh: float, usd_per_kwh: float) -> float:
    return energy_kwh * usd_per_kwh
