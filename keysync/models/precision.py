"""Which float type the networks compute in where the user leaves it to keysync."""

from __future__ import annotations

import torch


def cpu_has_bfloat16() -> bool:
    """True where this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX): there the small model's VAE
    runs about twice as fast as in float32 and its sampling about 1.2x. Elsewhere bfloat16 is computed with
    float32 arithmetic and conversions: not expected to be faster than float32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own CPU feature probes
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_dtype(name: str) -> torch.dtype:
    """``auto`` (bfloat16 on a CPU with bfloat16 hardware, else float32) or a dtype's name, on the CPU."""
    if name == "auto":
        return torch.bfloat16 if cpu_has_bfloat16() else torch.float32
    return getattr(torch, name)
