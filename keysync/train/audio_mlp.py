"""Start a network's audio MLP (``KeySyncNet.audio_mlp``) as a reader of mouth motion from speech.

Why: through the linear audio projection alone the small model's lip sync on held-out clips stays near
what a linear map from the same log-mel window predicts of the jaw (0.78 per-clip correlation on the
synthetic test split), while a two-layer perceptron on that window predicts it at 0.92. Learnt from the
diffusion loss alone, a new MLP changes slowly, and one whose output layer starts at zero the network
hardly learns to use. So before the network trains, the hidden layers are trained to regress each frame's
mouth (the synthetic world's mouth parameters where the shards have them, else the lip and jaw landmarks,
so this works for real footage too) from the frame's audio window; then the regression head is spliced
into the tokens where they already carry the mouth (``_splice_into_tokens``), so the network reads the
better estimate from its first step.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

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
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
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
            log.info(f"audio MLP pretraining step {step + 1}/{steps}: loss {loss.item():.4f}")

    # fold the input standardisation into the first layer, so the network feeds it raw features
    first = net.audio_mlp[0]
    with torch.no_grad():
        w = first.weight / x_std.to(first.weight)
        first.bias.sub_(w @ x_mean.to(first.weight))
        first.weight.copy_(w)
        pred = head(hidden(x[held].to(device, dtype))).float().cpu() * y_std
    jaw = 0 if truth else 2 * MOTION_POINTS.index(CHIN) + 1  # the opening, or the chin's y
    scores = [
        pearson(pred[m, jaw].numpy(), y[held][m, jaw].numpy())
        for c in clip_of[held].unique()
        for m in [clip_of[held] == c]
    ]
    score = float(np.nanmean(scores)) if scores else float("nan")
    log.info(f"audio MLP pretraining on {'mouth parameters' if truth else 'landmarks'}: held-out jaw-drop correlation {score:.3f} over {len(scores)} clips")
    _splice_into_tokens(net, head, x[~held], y[~held], y_mean, y_std)
    return score


def _splice_into_tokens(net, head: nn.Linear, x: torch.Tensor, y: torch.Tensor, y_mean, y_std) -> None:
    """Set the MLP's output layer, and correct the linear projection, so that the part of each audio token
    that moves with the mouth carries the MLP's reading of the mouth instead of the linear map's.

    Why: with its output layer at zero the network hardly learns to use the MLP (after 2500 to 5000 steps
    its tokens varied 0.06-2 % as much as the projection's). Here, A (targets -> tokens) is how the linear
    tokens move, on average, with the mouth; the tokens become ``proj(x) + (mlp(x) - lin(x)) A``, where
    lin is the best linear reading of the mouth from the same window. The network keeps reading the mouth
    where it always has, now from the better estimate."""
    proj, out = net.audio_proj, net.audio_mlp[-1]
    dtype = proj.weight.dtype
    with torch.no_grad():
        x, y = x.double(), y.double()
        tokens = x @ proj.weight.double().T + proj.bias.double()
        ones = torch.ones(len(x), 1, dtype=torch.float64)
        # lin(x) = x C + c: ridge regression of the targets on the window
        design = torch.cat([x, ones], 1)
        gram = design.T @ design + 1e-3 * len(x) * torch.eye(design.shape[1], dtype=torch.float64)
        coef = torch.linalg.solve(gram, design.T @ y)
        c_w, c_b = coef[:-1], coef[-1]
        # A: tokens regressed on the targets
        yc, tc = y - y.mean(0), tokens - tokens.mean(0)
        a = torch.linalg.solve(yc.T @ yc + 1e-6 * len(y) * torch.eye(y.shape[1], dtype=torch.float64), yc.T @ tc)
        s, mu = y_std.double(), y_mean.double()
        out.weight.copy_((a.T @ (s[:, None] * head.weight.double())).to(dtype))
        out.bias.copy_((a.T @ (head.bias.double() * s + mu - c_b)).to(dtype))
        proj.weight.sub_((a.T @ c_w.T).to(dtype))
        spliced = (proj(x.to(dtype)) + net.audio_mlp(x.to(dtype))).double()
    change = (spliced - tokens).std(0).norm() / tc.std(0).norm()
    log.info(f"audio MLP spliced into the tokens: they move {float(change):.3f} as much as before the splice")
