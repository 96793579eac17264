"""The SVD temporal-decoder VAE, with chunked decoding and scaled-latent helpers.

diffusers' ``AutoencoderKLTemporalDecoder`` is the official maths; the one thing it gets wrong for
smaller sizes is the decoder's middle block, which it builds with ``layers_per_block`` resnets where the
official decoder always has two (block_1, attn, block_2). The released size (2 per block) is unaffected.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLTemporalDecoder
from diffusers.configuration_utils import register_to_config
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
