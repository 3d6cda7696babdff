"""Device and precision selection, and a human-readable device name for price matching."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_bf16() -> bool:
    """bf16 matrix units (AVX512-BF16 or AMX) make bf16 autocast faster than fp32 on CPU."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def set_threads(threads: int | None) -> None:
    """CPU threads for torch: the config's number, or every core."""
    import torch

    torch.set_num_threads(threads or os.cpu_count() or 1)


def pick_device(wanted: str) -> str:
    import torch

    if wanted == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device: cuda requested but no CUDA device is available")
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return wanted


def pick_precision(wanted: str, device: str) -> tuple[str, str]:
    """(precision, reason)."""
    import torch

    if wanted != "auto":
        return wanted, "set in config"
    if device.startswith("cuda"):
        if torch.cuda.is_bf16_supported():
            return "bf16", "auto: CUDA device supports bf16"
        return "fp16", "auto: CUDA device without bf16"
    if cpu_has_bf16():
        return "bf16", "auto: CPU has bf16 matrix instructions (avx512_bf16/amx)"
    return "fp32", "auto: CPU without bf16 matrix instructions"


def describe(device: str) -> dict:
    """{'name', 'count', 'kind'}: the devices a run uses (one CUDA device, or the host CPU)."""
    import torch

    if device.startswith("cuda"):
        index = torch.cuda.current_device()
        return {"kind": "cuda", "name": torch.cuda.get_device_name(index), "count": 1,
                "cuda_version": torch.version.cuda}
    threads = torch.get_num_threads()
    return {"kind": "cpu", "name": f"cpu: {cpu_name()}", "count": 1, "threads": threads,
            "logical_cores": os.cpu_count()}
