"""Peak memory: framework-allocated on CUDA, process peak RSS on CPU, always labelled."""

from __future__ import annotations

import resource
import sys


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()


def peak_memory(device: str) -> dict:
    """{'peak_memory_mb': float, 'peak_memory_kind': str} for the given device."""
    if device.startswith("cuda"):
        import torch

        return {
            "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20,
            "peak_memory_kind": "cuda_max_allocated (torch allocator, all devices used)",
        }
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_bytes = rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB
    return {
        "peak_memory_mb": rss_bytes / 2**20,
        "peak_memory_kind": "cpu_peak_rss (whole run process, from start to the end of training)",
    }
