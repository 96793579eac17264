"""Sample videos during training: what the stage being trained makes of one fixed clip, beside the truth.

Losses say little about whether a diffusion model has learnt to move the lips; a look at a sample does.
Each video shows, side by side, the clip's crops (left) and the stage's output (right): the VAE's
reconstruction, or a 10-step sample of the masked region with the clip's own audio and conditioning frames.
Keyframe clips are 13 frames apart, so they play at 2 fps; the others at 25 fps. There is no sound track.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..diffusion import Conditioning, MaskedDenoiser, ays_sigmas, sample_euler
from ..models import KeySyncModel

ZOOM = 4  # crops are small (64 or 128 px for the small models): show them bigger


@torch.no_grad()
def stage_output(model: KeySyncModel, stage: str, batch: dict, seed: int = 0) -> torch.Tensor:
    """(T, 3, H, W) pixels in [-1, 1]: the stage's output for the first clip of a training ``batch``."""
    vae = model.vae
    if stage == "vae":
        pixels = batch["pixels"][0]
        return vae.decode_frames(vae.encode_frames(pixels), frames_per_call=len(pixels))
    net = getattr(model, stage)
    frames = batch["audio"].shape[1]
    latents = batch["latents"][:frames]
    cond = Conditioning(
        concat=net.embed_frames(batch["cond"][:1]),
        context=net.embed_audio(batch["audio"][:1]),
        known=latents,
        mask=batch["masks"][:frames],
    )
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed)).to(latents)
    was_training = net.training
    net.eval()
    try:
        out = sample_euler(MaskedDenoiser(net), noise, cond, ays_sigmas(10))
    finally:
        net.train(was_training)
    return vae.decode_frames(out, frames_per_call=1 if stage == "keyframe" else frames)


def write_sample(model: KeySyncModel, stage: str, batch: dict, path: str | Path, seed: int = 0) -> Path:
    """Write ``path`` (mp4): the clip's crops | the stage's output, zoomed ``ZOOM`` times."""
    output = stage_output(model, stage, batch, seed)
    truth = batch["pixels"][0] if stage == "vae" else batch["pixels"][: len(output)]
    pairs = torch.cat([truth, output.to(truth)], dim=-1)
    images = ((pairs.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    images = images.repeat_interleave(ZOOM, dim=-2).repeat_interleave(ZOOM, dim=-1).permute(0, 2, 3, 1).cpu().numpy()
    height, width = images.shape[1:3]
    from ..media.writer import VideoWriter  # here, not at the top: training without samples needs no PyAV

    with VideoWriter(path, width, height, rate=2 if stage == "keyframe" else 25, overwrite=True) as writer:
        for image in images:
            writer.write(np.ascontiguousarray(image))
    return Path(path)
