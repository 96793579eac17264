"""KeySync's 3-way classifier-free guidance (the official ``AudioRefMultiCondGuider``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .denoiser import Conditioning


@dataclass(frozen=True)
class Guidance:
    """D = D_base + ref (D_ref - D_base) + audio (D_full - D_ref).

    base: no audio, no reference (keyframes); ref: reference only; full: both. The three variants are
    stacked into one batch, so the network runs once per step.
    """

    audio: float = 5.0
    ref: float = 2.0

    def stack(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning):
        """Batch the three variants in the order [base, ref, full]."""
        no_concat, no_context = torch.zeros_like(cond.concat), torch.zeros_like(cond.context)
        stacked = Conditioning(
            concat=torch.cat([no_concat, cond.concat, cond.concat]),
            context=torch.cat([no_context, no_context, cond.context]),
            known=cond.known.repeat(3, 1, 1, 1),
            mask=cond.mask.repeat(3, 1, 1, 1),
        )
        return x.repeat(3, 1, 1, 1), sigma.repeat(3), stacked

    def combine(self, denoised: torch.Tensor) -> torch.Tensor:
        d_base, d_ref, d_full = denoised.chunk(3)
        return self.audio * (d_full - d_ref) + self.ref * (d_ref - d_base) + d_base

    def __call__(self, denoiser, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.combine(denoiser(*self.stack(x, sigma, cond)))


def stage_guidance(scales) -> tuple[Guidance, Guidance]:
    """(keyframe, interpolation) guidance from ``(audio, ref)`` for both stages, or from
    ``(keyframe audio, keyframe ref, interpolation audio, interpolation ref)``."""
    scales = tuple(float(v) for v in scales)
    if len(scales) == 2:
        return Guidance(*scales), Guidance(*scales)
    if len(scales) == 4:
        return Guidance(*scales[:2]), Guidance(*scales[2:])
    raise ValueError(f"guidance needs 2 or 4 scales, got {len(scales)}")
