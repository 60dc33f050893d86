"""Where and in what precision to train: CUDA when present, bfloat16 where the hardware has it.

On a CPU, bfloat16 autocast pays off only with native bf16 instructions (Intel AMX or
AVX-512-BF16): measured on this 2-core Sapphire Rapids, a 2048² matmul runs at 2.5 TFLOP/s in
bf16 against 0.37 in fp32, and the default model trains 2.5x faster. Without them bf16 is
emulated and slower, so `auto` falls back to fp32.
"""
from __future__ import annotations

import contextlib
import platform
from pathlib import Path

import torch


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda, but torch sees no CUDA device; "
                           "use train.device=auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_name() -> str:
    """The CPU's model name (benchmarks print it: the same run is about 2x slower on some of our CPUs)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(name: str, device: torch.device) -> str:
    """'bf16', 'fp16' or 'fp32' for the requested name on this device."""
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_bf16() else "fp32"
    if name == "fp16" and device.type == "cpu":
        raise RuntimeError("train.precision=fp16 is for CUDA; on a CPU use bf16 (fast with "
                           "AMX/AVX-512-BF16) or fp32")
    return name


def autocast(device: torch.device, precision: str):
    """The autocast context for `precision` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)
