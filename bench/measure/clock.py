"""Phase-labelled wall clocks that synchronize the device before reading the clock."""

from __future__ import annotations

import time
from contextlib import contextmanager


def synchronize(device: str) -> None:
    """Wait for queued device work, so a clock read covers it (no-op on CPU)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


class PhaseClock:
    """Accumulates wall seconds per named phase: ``with clock.phase("train"): ...``."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.wall_s: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str):
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.wall_s[name] = self.wall_s.get(name, 0.0) + time.perf_counter() - start
