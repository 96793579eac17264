"""Noise levels: the SVD "Align Your Steps" schedule used by KeySync."""

from __future__ import annotations

import numpy as np
import torch

# The 10-step AYS table for SVD (sigma_max = 700): 11 noise levels, i.e. 10 + 1 Euler steps with the final 0.
AYS_SVD = (700.0, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002)


from ..constants import OFFICIAL_STEPS


def sampling_sigmas(steps: int = OFFICIAL_STEPS) -> torch.Tensor:
    """Noise levels for exactly ``steps`` Euler steps, i.e. ``steps`` network calls (>= 1), with a trailing 0.

    The official ``num_steps`` is not a call count: its 10 gives the 11-level AYS table (11 calls), and
    any larger n interpolates onto n levels (n calls), so no n gives 10 calls. Here ``steps`` always counts
    calls: 11 is the official table, and any other count interpolates the table log-linearly onto that
    many levels (for 12 or more, the official num_steps of the same number).
    """
    if steps < 1:
        raise ValueError(f"sampling needs at least 1 step, got {steps}")
    return ays_sigmas(10) if steps == OFFICIAL_STEPS else _interpolated(steps)


def _interpolated(levels: int) -> torch.Tensor:
    """The AYS table interpolated log-linearly onto ``levels`` noise levels, with a trailing 0."""
    table = np.log(np.array(AYS_SVD, dtype=np.float64)[::-1])
    points = np.interp(np.linspace(0, 1, levels), np.linspace(0, 1, len(table)), table) if levels > 1 else table[-1:]
    return torch.from_numpy(np.append(np.exp(points)[::-1].copy(), 0.0))


def ays_sigmas(num_steps: int = 10) -> torch.Tensor:
    """The official AYSDiscretization: noise levels for its ``num_steps`` (>= 10), with a trailing 0, as float64.

    10 gives the AYS table itself (12 values, 11 Euler steps). More steps interpolate the table
    log-linearly onto ``num_steps`` points, as the AYS paper does.
    """
    if num_steps < 10:
        raise ValueError(f"the AYS schedule needs at least 10 steps, got {num_steps}")
    if num_steps == 10:
        return torch.from_numpy(np.append(np.array(AYS_SVD, dtype=np.float64), 0.0))
    return _interpolated(num_steps)
