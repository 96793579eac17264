"""EDM v-prediction scalings and the masked-inpainting denoiser (the official ``DenoiserDub``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


def edm_v_scalings(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """c_skip, c_out, c_in, c_noise for x = x0 + sigma * eps with a v-parameterised network."""
    c_skip = 1.0 / (sigma**2 + 1.0)
    c_out = -sigma / (sigma**2 + 1.0) ** 0.5
    c_in = 1.0 / (sigma**2 + 1.0) ** 0.5
    c_noise = 0.25 * sigma.log()
    return c_skip, c_out, c_in, c_noise


@dataclass
class Conditioning:
    """What the denoiser needs besides the noisy latent. Frames are flattened clip-major (B*T, ...).

    concat: unscaled conditioning latents per clip (keyframe (B,4,h,w); interpolation (B,8,h,w));
    context: audio tokens (B, T, D); known: scaled source latents (B*T, 4, h, w);
    mask: (B*T, 1, h, w), 1 = regenerate, 0 = keep ``known``.
    """

    concat: torch.Tensor
    context: torch.Tensor
    known: torch.Tensor
    mask: torch.Tensor

    def select_clips(self, start: int, stop: int) -> "Conditioning":
        t = self.context.shape[1]
        per_frame = t > 1 and self.concat.shape[0] == self.context.shape[0] * t  # a per-frame keyframe reference
        return replace(
            self,
            concat=self.concat[start * t : stop * t] if per_frame else self.concat[start:stop],
            context=self.context[start:stop],
            known=self.known[start * t : stop * t],
            mask=self.mask[start * t : stop * t],
        )


def _per_frame(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


@dataclass
class DeepFeatures:
    """The UNet's deep features between sampling steps (DeepCache, Ma et al. 2024): what its last up block
    took in on the last step that ran the whole network (``KeySyncNet.unet_forward``)."""

    reuse: bool = False  # this call reuses ``features`` instead of computing them
    features: torch.Tensor | None = None


class MaskedDenoiser:
    """D(x, sigma): known latents are pasted in before the network and again after it.

    ``clips_per_call`` splits the network call into groups of whole clips (memory; no effect on results).
    ``deep``: the deep features kept per group of clips, shared by the denoisers of one sampling run;
    with ``reuse`` this one runs only the network's full-resolution level on them (see ``DeepFeatures``).
    """

    def __init__(self, network, clips_per_call: int | None = None, deep: dict[int, torch.Tensor] | None = None, reuse: bool = False):
        if reuse and deep is None:
            raise ValueError("reuse needs the deep features of an earlier step (deep=)")
        self.network = network
        self.clips_per_call = clips_per_call
        self.deep, self.reuse = deep, reuse

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        m = cond.mask.to(x.dtype)
        x = x * m + cond.known * (1 - m)
        c_skip, c_out, c_in, c_noise = edm_v_scalings(sigma)
        # the scalings in x's precision (float32 when sampling), the network in its own
        net_dtype = getattr(self.network, "dtype", x.dtype)
        out = self._network((x * _per_frame(c_in, x)).to(net_dtype), c_noise.to(net_dtype), cond).to(x.dtype)
        denoised = out * _per_frame(c_out, x) + x * _per_frame(c_skip, x)
        return denoised * m + cond.known * (1 - m)

    def _network(self, x: torch.Tensor, c_noise: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        clips, t = cond.context.shape[:2]
        step = self.clips_per_call or clips
        outs = []
        for start in range(0, clips, step):
            part = cond.select_clips(start, start + step)
            rows = slice(start * t, (start + len(part.context)) * t)
            if self.deep is None:
                outs.append(self.network(x[rows], c_noise[rows], part.concat, part.context))
                continue
            deep = DeepFeatures(self.reuse, self.deep.get(start))
            outs.append(self.network(x[rows], c_noise[rows], part.concat, part.context, deep=deep))
            self.deep[start] = deep.features
        return torch.cat(outs)
