"""Diffusion: noise schedule, masked denoiser, 3-way guidance and the Euler EDM sampler."""

from .denoiser import Conditioning, MaskedDenoiser, edm_v_scalings
from .guidance import Guidance, stage_guidance
from .sampler import sample_euler
from .sigmas import ays_sigmas

__all__ = ["Conditioning", "Guidance", "MaskedDenoiser", "ays_sigmas", "edm_v_scalings", "sample_euler", "stage_guidance"]
