"""The official training recipe (reference section 3): noise levels, dropout, loss, optimiser, freezing.

A training batch holds, per clip of T = 14 frames (flattened clip-major where per frame):
``latents`` (B*T, 4, h, w) scaled targets; ``masks`` (B*T, 1, h, w), 1 = regenerate; ``cond`` the
conditioning latents (keyframe: (B, 4, h, w) reference; interpolation: (B, 4, 2, h, w) [start, end]);
``audio`` (B, T, 2, F) features; keyframe only, for the pixel loss: ``pixels`` (B*T, 3, H, W) in [-1, 1].
"""

from __future__ import annotations

import contextlib
import math

import torch

from ..diffusion import Conditioning, MaskedDenoiser
from ..models import KeySyncModel, KeySyncNet
from ..models.official import network_official_names
from .config import Recipe


def sample_sigmas(clips: int, frames: int, recipe: Recipe, generator=None, device=None) -> torch.Tensor:
    """One noise level per clip, repeated over its frames: (clips*frames,)."""
    log_sigma = recipe.p_mean + recipe.p_std * torch.randn(clips, generator=generator)
    return log_sigma.exp().to(device).repeat_interleave(frames)


def _keep(n: int, p: float, generator) -> torch.Tensor:
    return (torch.rand(n, generator=generator) >= p).float()


def diffusion_loss(
    net: KeySyncNet, batch: dict, recipe: Recipe, generator: torch.Generator | None = None, vae=None
) -> tuple[torch.Tensor, dict]:
    """The v-weighted masked denoising loss (+ the keyframe pixel loss when ``vae`` is given)."""
    x0, masks, audio = batch["latents"], batch["masks"], batch["audio"]
    clips, frames = audio.shape[:2]
    sigma = sample_sigmas(clips, frames, recipe, generator, x0.device).to(x0.dtype)
    noise = torch.randn(x0.shape, generator=generator).to(x0)
    x_noisy = x0 + noise * sigma[:, None, None, None]

    context = net.embed_audio(audio) * _keep(clips, recipe.drop_audio, generator).to(x0)[:, None, None]
    concat = net.embed_frames(batch["cond"])
    if net.config.kind == "keyframe":
        concat = concat.repeat_interleave(frames, dim=0) * _keep(clips * frames, recipe.drop_reference, generator).to(x0)[:, None, None, None]
    else:
        concat = concat * _keep(clips, recipe.drop_reference, generator).to(x0)[:, None, None, None]
    cond = Conditioning(concat=concat, context=context, known=x0, mask=masks)
    denoised = MaskedDenoiser(net)(x_noisy, sigma, cond)
    weight = (sigma**2 + 1) / sigma**2
    error = (denoised - x0) ** 2
    if recipe.lip_weight > 0 and "lips" in batch:
        error = error * (1 + recipe.lip_weight * batch["lips"])
    loss = (weight * error.mean(dim=(1, 2, 3))).mean()
    parts = {"diffusion": loss.detach()}
    if vae is not None and recipe.pixel_loss_weight > 0 and "pixels" in batch:
        # One random frame index, the same for every clip, decoded each as its own 1-frame sequence
        # (the official code decoded the batch as one sequence, mixing clips through the temporal layers).
        t = int(torch.randint(frames, (1,), generator=generator))
        rows = torch.arange(clips, device=x0.device) * frames + t
        decoded = vae.decode_frames(denoised[rows], frames_per_call=1)
        pixel = (weight[rows] * ((decoded - batch["pixels"][rows]) ** 2).mean(dim=(1, 2, 3))).mean()
        loss = loss + recipe.pixel_loss_weight * pixel
        parts["pixel"] = pixel.detach()
    return loss, parts


def vae_loss(vae, batch: dict, recipe: Recipe, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Reconstruction loss of the VAE on ``pixels`` (B, T, 3, H, W) in [-1, 1], clips of T consecutive frames
    decoded as one sequence each (the temporal decoder sees motion): l1 + l1 on image gradients + KL.

    The posterior's mean is decoded, not a sample: the pipeline encodes with the mean, and from scratch a
    sampled latent starts as mostly noise (unit variance), which slowed training several times over here.
    """
    frames = batch["pixels"].shape[1]
    pixels = batch["pixels"].flatten(0, 1)
    posterior = vae.encode(pixels).latent_dist
    z = posterior.mode()
    decoded = torch.cat([vae.decode(chunk, num_frames=len(chunk)).sample for chunk in z.split(frames)])
    l1 = (decoded - pixels).abs().mean()

    def grads(x):
        return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]

    edge = sum((a - b).abs().mean() for a, b in zip(grads(decoded), grads(pixels)))
    kl = posterior.kl().mean() / pixels[0].numel()
    loss = l1 + recipe.edge_weight * edge + recipe.kl_weight * kl
    return loss, {"l1": l1.detach(), "edge": edge.detach()}


def calibrate_latent_scale(vae, pixels: torch.Tensor, scale: float | None = None) -> float:
    """Set the VAE's ``scaling_factor`` to 1 / std of its latents on ``pixels`` (N, 3, H, W) in [-1, 1], so
    that scaled latents have unit variance, as EDM's sigma_data = 1 assumes (SD's 0.18215 came the same way).

    A given ``scale`` is kept instead, and (with ``rgb_skip``) the learned channels are rescaled so that
    each of them still has unit variance once scaled: the thumbnail channels then reach the diffusion
    networks at the size another VAE with that scale gave them, which networks started from that
    VAE's (``init_networks``) were trained on.
    """
    with torch.no_grad():
        z = torch.cat([vae.encode(chunk).latent_dist.mode() for chunk in pixels.split(32)]).float()
    if scale is None:
        scale = float(1.0 / z.std())
    elif vae.config.rgb_skip:
        gains = torch.ones(z.shape[1])
        gains[3:] = 1.0 / (scale * z[:, 3:].std(dim=(0, 2, 3)))
        vae.rescale_latent_channels(gains)
    vae.register_to_config(scaling_factor=float(scale))
    return float(scale)


def freeze_temporal_layers(net: KeySyncNet) -> int:
    """Freeze SVD's temporal layers (official names containing ``time_``, except ``time_embed``), as when
    fine-tuning from SVD weights. Returns the number of frozen parameters."""
    names = network_official_names(net)
    frozen = 0
    for name, param in net.named_parameters():
        official = names[name]
        if "time_" in official and "time_embed" not in official:
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def make_optimizer(net: KeySyncNet, recipe: Recipe):
    """AdamW on the trainable parameters, with a linear warm-up from 1e-6 to 1, then constant (or, with
    ``recipe.decay_steps``, a cosine down to 0 at that step)."""
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    warmup, decay = max(1, recipe.warmup_steps), recipe.decay_steps

    def factor(step: int) -> float:
        if step < warmup:
            return 1e-6 + (1 - 1e-6) * step / warmup
        if decay <= warmup:
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / (decay - warmup))))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def training_step(
    model: KeySyncModel, stage: str, batch: dict, optimizer, schedule, recipe: Recipe, generator=None,
    autocast=contextlib.nullcontext, backward=None, reduce_gradients=None,
) -> dict:
    """One optimiser step of ``stage`` ("keyframe", "interpolation" or "vae") on ``batch``.

    ``autocast`` and ``backward`` let a launcher (accelerate) supply mixed precision and loss scaling;
    ``reduce_gradients(params)``, called between backward and the step, averages gradients across processes.
    """
    net = getattr(model, stage)
    net.train()
    with autocast():
        if stage == "vae":
            loss, parts = vae_loss(net, batch, recipe, generator)
        else:
            loss, parts = diffusion_loss(net, batch, recipe, generator, model.vae if stage == "keyframe" else None)
    optimizer.zero_grad(set_to_none=True)
    (backward or torch.Tensor.backward)(loss)
    if reduce_gradients is not None:
        reduce_gradients([p for p in net.parameters() if p.requires_grad])
    optimizer.step()
    schedule.step()
    return {"loss": float(loss.detach()) if not loss.is_meta else float("nan"), **parts}
