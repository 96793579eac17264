"""Diffusion: noise schedule, masked denoiser, 3-way guidance and the Euler EDM sampler."""

from .denoiser import Conditioning, MaskedDenoiser, edm_v_scalings
from .guidance import Guidance, stage_guidance
from .sampler import euler_step, sample_euler
from .sigmas import OFFICIAL_STEPS, ays_sigmas, sampling_sigmas

__all__ = ["OFFICIAL_STEPS", "Conditioning", "Guidance", "MaskedDenoiser", "ays_sigmas", "sampling_sigmas", "edm_v_scalings", "euler_step", "sample_euler", "stage_guidance"]
