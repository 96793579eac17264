"""The SVD temporal-decoder VAE, with chunked decoding and scaled-latent helpers.

diffusers' ``AutoencoderKLTemporalDecoder`` is the official maths; the one thing it gets wrong for
smaller sizes is the decoder's middle block, which it builds with ``layers_per_block`` resnets where the
official decoder always has two (block_1, attn, block_2). The released size (2 per block) is unaffected.

``rgb_skip`` (off for SVD; on for the shipped small model) makes the first three latent channels the
image area-averaged by the downsampling factor, and adds their bilinear upsampling to the decoder's
output, which starts at zero. Trained from scratch, the plain SVD VAE of this size was still no better
than each image's mean colour after 300 steps on 2 CPU cores; with the skip it starts as a blurry but
faithful thumbnail codec and only has to learn the detail.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLTemporalDecoder
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.unets.unet_3d_blocks import MidBlockTemporalDecoder

from ..errors import KeySyncError
from .network import SCALE_FACTOR


class KeySyncVAE(AutoencoderKLTemporalDecoder):
    """SVD VAE: image encoder + quant_conv, temporal decoder (no post_quant_conv)."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",) * 4,
        block_out_channels: tuple[int, ...] = (128, 256, 512, 512),
        layers_per_block: int = 2,
        latent_channels: int = 4,
        sample_size: int = 512,
        scaling_factor: float = SCALE_FACTOR,
        force_upcast: bool = True,
        rgb_skip: bool = False,
    ):
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            down_block_types=down_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            latent_channels=latent_channels,
            sample_size=sample_size,
            scaling_factor=scaling_factor,
            force_upcast=force_upcast,
        )
        if layers_per_block != 2:
            width = block_out_channels[-1]
            self.decoder.mid_block = MidBlockTemporalDecoder(
                num_layers=2, in_channels=width, out_channels=width, attention_head_dim=width
            )
        if rgb_skip:  # the decoder learns the detail on top of the upsampled thumbnail: start from none
            torch.nn.init.zeros_(self.decoder.time_conv_out.weight)  # (its input, conv_out, stays random:
            torch.nn.init.zeros_(self.decoder.time_conv_out.bias)  # zeroing both would leave no gradient)

    # False for a model folder converted without the SVD VAE: its encoder weights are placeholders.
    has_encoder: bool = True

    def check_encoder(self) -> None:
        if not self.has_encoder:
            raise KeySyncError(
                "this model folder has no VAE encoder (it was converted without --vae); "
                "convert again with --vae pointing at the SVD VAE (stabilityai/stable-video-diffusion-img2vid, vae/)"
            )

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        moments = self.quant_conv(self.encoder(x))
        if self.config.rgb_skip:
            thumbnail = F.avg_pool2d(x, self.downsample_factor)
            moments = torch.cat([thumbnail.to(moments.dtype), moments[:, 3:]], dim=1)
        posterior = DiagonalGaussianDistribution(moments)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(self, z: torch.Tensor, num_frames: int, return_dict: bool = True):
        sample = super().decode(z, num_frames=num_frames).sample
        if self.config.rgb_skip:
            sample = sample + F.interpolate(z[:, :3], scale_factor=self.downsample_factor, mode="bilinear", align_corners=False)
        return DecoderOutput(sample=sample) if return_dict else (sample,)

    @torch.no_grad()
    def rescale_latent_channels(self, gains: torch.Tensor) -> None:
        """Multiply latent channel k by ``gains[k]`` without changing what the VAE computes: the gain is
        folded into ``quant_conv`` (mean and log-variance) and undone in the decoder's ``conv_in``. Lets
        a trained VAE give its channels unit variance one by one, which one ``scaling_factor`` cannot."""
        gains = gains.to(self.quant_conv.weight)
        n = self.config.latent_channels
        if gains.shape != (n,) or not bool((gains > 0).all()):
            raise ValueError(f"need {n} positive gains, one per latent channel; got shape {tuple(gains.shape)}")
        if self.config.rgb_skip and not bool((gains[:3] == 1).all()):
            raise ValueError("the first three channels are the thumbnail the decoder adds back: keep their gain 1")
        self.quant_conv.weight[:n] *= gains.view(-1, 1, 1, 1)
        self.quant_conv.bias[:n] *= gains
        self.quant_conv.bias[n:] += 2 * gains.log()  # log-variance: std scales with the mean
        self.decoder.conv_in.weight /= gains.view(1, -1, 1, 1)

    def encode_frames(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(N, 3, H, W) pixels in [-1, 1] -> (N, 4, H/f, W/f) scaled latents.

        With a generator the posterior is sampled (the official behaviour); without one its mode is used,
        which is deterministic.
        """
        self.check_encoder()
        posterior = self.encode(pixels).latent_dist
        latents = posterior.sample(generator) if generator is not None else posterior.mode()
        return latents * self.config.scaling_factor

    def decode_frames(self, latents: torch.Tensor, frames_per_call: int = 14) -> torch.Tensor:
        """(N, 4, h, w) scaled latents of consecutive frames -> (N, 3, H, W) pixels, unclamped in ~[-1, 1].

        Frames are decoded ``frames_per_call`` at a time (the temporal layers see that many frames; 1 is
        the official inference setting). The last call takes the remainder.
        """
        z = latents * (1.0 / self.config.scaling_factor)
        out = [self.decode(chunk, num_frames=len(chunk)).sample for chunk in z.split(frames_per_call)]
        return torch.cat(out)
