"""Energy and CO2 of a phase through codecarbon's offline tracker.

One tracker per run process, with an explicit country code (no network look-ups),
tracking this process only and only the GPUs the run uses. Nothing is written to
disk. Each component says how it was obtained: NVML/RAPL counters are "measured";
codecarbon's CPU-load and RAM models are "estimated".
"""

from __future__ import annotations

import logging
import tempfile


def _component_methods(tracker) -> dict:
    """Per component: 'measured' (hardware counter) or 'estimated' (codecarbon's model)."""
    methods = {"ram": "estimated (codecarbon RAM power model)"}
    for hw in getattr(tracker, "_hardware", []):
        desc = str(hw)
        if desc.startswith("GPU"):
            methods["gpu"] = f"measured (NVML energy counter) [{desc}]"
        elif desc.startswith("CPU"):
            counter = "rapl" in desc.lower() or "power gadget" in desc.lower()
            methods["cpu"] = (f"measured (RAPL counter) [{desc}]" if counter
                              else f"estimated (codecarbon {desc}: TDP x load)")
    return methods


class EnergyMeter:
    """``start()`` / ``stop()`` around one phase; ``stop()`` returns a labelled dict."""

    def __init__(self, country_iso_code: str, measure_power_s: float, gpu_ids: list[int] | None, phase: str):
        self.phase = phase
        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        from codecarbon import OfflineEmissionsTracker

        kwargs = dict(
            country_iso_code=country_iso_code,
            measure_power_secs=measure_power_s,
            gpu_ids=gpu_ids or None,
            tracking_mode="process",
            output_dir=tempfile.gettempdir(),  # never the current directory
            log_level="error",
            project_name="bench",
        )
        try:  # write nothing: newer codecarbon takes output_methods=[], older ones save_to_file=False
            self._tracker = OfflineEmissionsTracker(output_methods=[], **kwargs)
        except TypeError:
            self._tracker = OfflineEmissionsTracker(save_to_file=False, **kwargs)
        self.country = country_iso_code

    def start(self) -> None:
        self._tracker.start()

    def stop(self) -> dict:
        co2_kg = self._tracker.stop() or 0.0
        data = self._tracker.final_emissions_data
        return {
            "energy_kwh": float(data.energy_consumed),
            "energy_kwh_by_component": {
                "cpu": float(data.cpu_energy), "gpu": float(data.gpu_energy), "ram": float(data.ram_energy),
            },
            "energy_method": _component_methods(self._tracker),
            "energy_covers": f"{self.phase} phase, this process only",
            "co2_kg": float(co2_kg),
            "co2_region": {"country_iso_code": data.country_iso_code, "country_name": data.country_name,
                           "region": data.region},
            "meter": f"codecarbon {data.codecarbon_version} OfflineEmissionsTracker",
        }
