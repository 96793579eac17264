"""The Euler EDM sampler (deterministic: no churn)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from .denoiser import Conditioning


def euler_step(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """One Euler step of the probability-flow ODE from ``sigma`` to ``sigma_next``, in the official op order."""
    return x + (sigma_next - sigma) * ((x - denoised) / sigma)


def sample_euler(
    denoise: Callable[[torch.Tensor, torch.Tensor, Conditioning], torch.Tensor] | Sequence[Callable],
    noise: torch.Tensor,
    cond: Conditioning,
    sigmas: torch.Tensor,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Integrate from sigmas[0] to sigmas[-1] (= 0) with Euler steps; ``denoise(x, sigma, cond)`` -> D,
    or one such function per step (a guidance interval: guided steps, then plain conditional ones).

    ``callback(i, x, denoised)`` sees the state after step i and the D used for it. The state and the noise
    levels stay in float32 (at least) whatever the network's precision: sigma_max^2 (~490000) is inf in
    float16. The result comes back in ``noise``'s dtype.
    """
    dtype = torch.promote_types(noise.dtype, torch.float32)
    sigmas = sigmas.to(device=noise.device, dtype=dtype)
    x = noise.to(dtype) * torch.sqrt(1.0 + sigmas[0] ** 2.0)
    ones = x.new_ones(x.shape[0])
    steps = len(sigmas) - 1
    per_step = list(denoise) if isinstance(denoise, Sequence) else [denoise] * steps
    if len(per_step) != steps:
        raise ValueError(f"{len(per_step)} denoisers for {steps} steps")
    for i in tqdm(range(steps), disable=not progress, leave=False, desc="denoising"):
        sigma = sigmas[i]
        denoised = per_step[i](x, ones * sigma, cond)
        x = euler_step(x, denoised, sigma, sigmas[i + 1])
        if callback is not None:
            callback(i, x, denoised)
    return x.to(noise.dtype)
