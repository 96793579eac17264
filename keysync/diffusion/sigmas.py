"""Noise levels: the SVD "Align Your Steps" schedule used by KeySync."""

from __future__ import annotations

import numpy as np
import torch

# The 10-step AYS table for SVD (sigma_max = 700): 11 noise levels, i.e. 10 + 1 Euler steps with the final 0.
AYS_SVD = (700.0, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002)


def ays_sigmas(num_steps: int = 10) -> torch.Tensor:
    """Noise levels for ``num_steps`` (>= 10), with a trailing 0, as float64.

    10 gives the AYS table itself (12 values, 11 Euler steps). More steps interpolate the table
    log-linearly onto ``num_steps`` points, as the AYS paper does.
    """
    if num_steps < 10:
        raise ValueError(f"the AYS schedule needs at least 10 steps, got {num_steps}")
    if num_steps == 10:
        sigmas = np.array(AYS_SVD, dtype=np.float64)
    else:
        table = np.log(np.array(AYS_SVD, dtype=np.float64)[::-1])
        points = np.interp(np.linspace(0, 1, num_steps), np.linspace(0, 1, len(table)), table)
        sigmas = np.exp(points)[::-1].copy()
    return torch.from_numpy(np.append(sigmas, 0.0))
