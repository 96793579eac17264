"""Start a network's audio MLP (``KeySyncNet.audio_mlp``) as a reader of mouth motion from speech.

Why: through the linear audio projection alone the small model's lip sync on held-out clips stays near
what a linear map from the same log-mel window predicts of the jaw (0.78 per-clip correlation on the
synthetic test split), while a two-layer perceptron on that window predicts it at 0.92. Learnt from the
diffusion loss alone, with its output layer at zero, a new MLP's hidden layers change slowly; so before
the network trains, they are trained to regress each frame's lip and jaw landmarks (from the shards
``keysync prepare`` wrote, so this works for real footage too) from the frame's audio window. The
regression head is then dropped; the MLP's output layer stays at zero, so the network starts unchanged
and learns how to use the new features.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# 68-point landmarks: the lower jaw line (5-11) and the lips (48-67), relative to the nose tip (33)
MOTION_POINTS = list(range(5, 12)) + list(range(48, 68))
NOSE_TIP = 33
CHIN = 8


def motion_targets(landmarks: torch.Tensor) -> torch.Tensor:
    """(T, 68, 2) crop-pixel landmarks of one clip -> (T, 54): its lip and jaw points relative to the nose
    tip, minus their mean over the clip (the speaker's face shape is not in the audio)."""
    rel = landmarks[:, MOTION_POINTS] - landmarks[:, NOSE_TIP : NOSE_TIP + 1]
    return (rel - rel.mean(dim=0, keepdim=True)).flatten(1)


def pretrain_audio_mlp(
    net, shards: list[dict], stage: str, steps: int = 3000, batch: int = 256, lr: float = 1e-3, seed: int = 0,
    log=print,
) -> float:
    """Train ``net.audio_mlp``'s hidden layers on ``shards`` (each with ``present``, ``audio_{stage}``
    already cut into the network's windows, and ``mouth`` or else ``landmarks``). One clip in ten is held
    out; returns the mean per-clip correlation of the predicted and true jaw drop on those clips (the mouth
    opening, or the chin's height: the detected inner lips follow the speech less closely than the chin)."""
    from ..bench.metrics import pearson

    truth = all("mouth" in shard for shard in shards)
    inputs, targets, clip_of = [], [], []
    for i, shard in enumerate(shards):
        keep = shard["present"].bool()
        if keep.sum() < 2:
            continue
        inputs.append(net.audio_inputs(shard[f"audio_{stage}"].float())[keep])
        targets.append(shard["mouth"].float()[keep] if truth else motion_targets(shard["landmarks"].float()[keep]))
        clip_of.append(torch.full((int(keep.sum()),), i))
    x, y, clip_of = torch.cat(inputs), torch.cat(targets), torch.cat(clip_of)
    held = clip_of % 10 == 9
    x_mean, x_std = x[~held].mean(0), x[~held].std(0) + 1e-3
    y_mean, y_std = y[~held].mean(0), y[~held].std(0) + 1e-3
    xs, ys = (x - x_mean) / x_std, (y - y_mean) / y_std
    xtr, ytr = xs[~held], ys[~held]

    hidden = net.audio_mlp[:-1]
    device, dtype = net.audio_mlp[0].weight.device, net.audio_mlp[0].weight.dtype
    head = nn.Linear(net.config.audio_mlp_width, y.shape[1]).to(device, dtype)
    params = [*hidden.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(0, len(xtr), (batch,), generator=generator)
        noisy = xtr[idx] + 0.1 * torch.randn(batch, xtr.shape[1], generator=generator)
        loss = ((head(hidden(noisy.to(device, dtype))) - ytr[idx].to(device, dtype)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        if (step + 1) % 1000 == 0 or step + 1 == steps:
            log(f"audio MLP pretraining step {step + 1}/{steps}: loss {loss.item():.4f}")

    # fold the input standardisation into the first layer, so the network feeds it raw features
    first = net.audio_mlp[0]
    with torch.no_grad():
        w = first.weight / x_std.to(first.weight)
        first.bias.sub_(w @ x_mean.to(first.weight))
        first.weight.copy_(w)
    with torch.no_grad():
        pred = head(hidden(x[held].to(device, dtype))).float().cpu() * y_std
    jaw = 0 if truth else 2 * MOTION_POINTS.index(CHIN) + 1  # the opening, or the chin's y
    scores = [
        pearson(pred[m, jaw].numpy(), y[held][m, jaw].numpy())
        for c in clip_of[held].unique()
        for m in [clip_of[held] == c]
    ]
    score = float(np.nanmean(scores)) if scores else float("nan")
    log(f"audio MLP pretraining on {'mouth parameters' if truth else 'landmarks'}: held-out jaw-drop correlation {score:.3f} over {len(scores)} clips")
    return score
