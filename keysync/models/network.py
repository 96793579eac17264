"""The KeySync denoising networks: the SVD video UNet with audio conditioning.

One class serves both stages. ``kind="keyframe"`` concatenates the identity-frame latent to every frame
(8 input channels); ``kind="interpolation"`` concatenates ``[start, learned_mask x (T-2), end]`` plus an
is-keyframe flag channel (9 input channels). The UNet blocks are diffusers' SVD blocks, which compute
exactly the official maths; only the top-level forward differs from diffusers': timesteps are per frame,
and each frame's audio token is added into that frame's timestep embedding (the official
``both_keyframes`` audio route), while all tokens of a clip are the cross-attention context of every frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

if TYPE_CHECKING:
    from ..diffusion.denoiser import DeepFeatures

SCALE_FACTOR = 0.18215
KINDS = ("keyframe", "interpolation")


def as_hw(latent_size) -> tuple[int, int]:
    """The one place a ``latent_size`` is normalised to (height, width): an int is square (how every folder
    was written before non-square official configs), a pair is [height, width]."""
    size = (latent_size, latent_size) if isinstance(latent_size, int) else tuple(latent_size)
    if len(size) != 2 or not all(isinstance(n, int) and n > 0 for n in size):
        raise ValueError(f"latent_size must be a positive int or [height, width], got {latent_size!r}")
    return size


class KeySyncNet(ModelMixin, ConfigMixin):
    """Keyframe or interpolation network (UNet + audio projection [+ learned mask])."""

    config_name = "config.json"
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        kind: str = "keyframe",
        latent_channels: int = 4,
        latent_size: int | tuple[int, int] = 64,
        model_channels: int = 320,
        channel_mult: tuple[int, ...] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        attention_levels: tuple[int, ...] = (0, 1, 2),
        num_head_channels: int = 64,
        transformer_depth: int = 1,
        context_dim: int = 1024,
        audio_feature_dim: int = 768,
        frames_per_clip: int = 14,
        audio_window: int = 0,
        keyframe_copy: bool = False,
        audio_mlp_width: int = 0,
    ):
        """``latent_size``: the latent side, or [height, width] for non-square crops (see ``as_hw``).

        ``audio_window`` k: each frame's audio token sees k frames of audio on each side (0, the official
        setting: its own frame only); the features come in as ``keysync.audio.frame_windows`` makes them.

        ``keyframe_copy`` (interpolation only; not official): every frame also gets the latent of its nearer
        end keyframe on ``latent_channels`` more input channels. Officially the middle frames see only a
        learned mask token, and the face hidden by the mask (jaw line, neck) has to travel to them from the
        end frames through the temporal layers; a small network does not manage that and draws a blur there,
        while with the keyframe beside each frame it copies it as the keyframe network copies its reference.

        ``audio_mlp_width`` H (not official; 0: none): ``audio_mlp``, a two-layer perceptron of width H beside the linear audio
        projection, its tokens added to the projection's. The official networks read HuBERT/WavLM features,
        already a deep speech model; a small model reading log-mel energies through one linear map cannot
        tell the mouth shape from them well (see ``keysync.train.audio_mlp``).
        """
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        widths = [model_channels * m for m in channel_mult]
        levels = range(len(widths))
        down = ["CrossAttnDownBlockSpatioTemporal" if i in attention_levels else "DownBlockSpatioTemporal" for i in levels]
        up = [
            "CrossAttnUpBlockSpatioTemporal" if i in attention_levels else "UpBlockSpatioTemporal"
            for i in reversed(levels)
        ]
        if keyframe_copy and kind != "interpolation":
            raise ValueError("keyframe_copy is for interpolation networks")
        extra_in = latent_channels if kind == "keyframe" else 2 * latent_channels + 1 if keyframe_copy else latent_channels + 1
        height, width = as_hw(latent_size)
        self.unet = UNetSpatioTemporalConditionModel(
            sample_size=(height, width),
            in_channels=latent_channels + extra_in,
            out_channels=latent_channels,
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            block_out_channels=tuple(widths),
            projection_class_embeddings_input_dim=context_dim,
            layers_per_block=num_res_blocks,
            cross_attention_dim=context_dim,
            transformer_layers_per_block=transformer_depth,
            num_attention_heads=tuple(w // num_head_channels for w in widths),
            num_frames=frames_per_clip,
        )
        # diffusers' sinusoidal projection for SVD's fps/motion ids; KeySync feeds audio tokens instead.
        del self.unet.add_time_proj
        self.audio_proj = nn.Linear(audio_feature_dim * (2 * audio_window + 1), context_dim)
        self.audio_mlp = _audio_mlp(self.audio_proj.in_features, audio_mlp_width, context_dim) if audio_mlp_width else None
        if kind == "interpolation":
            self.learned_mask = nn.Parameter(torch.zeros(latent_channels, height, width))

    # the UNet's repeated blocks: compiled once per class and input shape by ``compile_blocks``
    COMPILED_BLOCKS = ("SpatioTemporalResBlock", "TransformerSpatioTemporalModel")
    RECOMPILE_LIMIT = 64

    def compile_blocks(self, **options) -> None:
        """Regional compilation (diffusers' ``compile_repeated_blocks``): each ResNet and transformer block
        is compiled by ``torch.compile(**options)`` with no graph breaks, and blocks of a class share the
        compiled code, so compiling takes a fraction of a whole-UNet compile. A block class meets several
        input shapes (channels per level, frames per call), more than dynamo's default limit of 8 graphs
        per function on the shipped small model's three levels; dynamo's automatic dynamic shapes make a
        dimension that changes a symbol, and these compiled blocks may have up to ``RECOMPILE_LIMIT``."""
        self.unet._repeated_blocks = list(self.COMPILED_BLOCKS)
        self.unet.compile_repeated_blocks(fullgraph=True, recompile_limit=self.RECOMPILE_LIMIT, **options)

    @property
    def latent_hw(self) -> tuple[int, int]:
        """(height, width) of the latents this network works on."""
        return as_hw(self.config.latent_size)

    # --- conditioning -------------------------------------------------------------------------------

    def embed_audio(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, 2 (2k+1), F) audio features, two rows per video frame of the window -> (B, T, context_dim)
        tokens: each frame's two rows averaged (the official merge), the window's frames concatenated."""
        x = self.audio_inputs(features)
        tokens = self.audio_proj(x)
        return tokens if self.audio_mlp is None else tokens + self.audio_mlp(x)

    @staticmethod
    def audio_inputs(features: torch.Tensor) -> torch.Tensor:
        """(..., 2 (2k+1), F) -> (..., (2k+1) F): each frame's two rows averaged, the window's frames concatenated."""
        *lead, rows, f = features.shape
        return features.reshape(*lead, rows // 2, 2, f).mean(dim=-2).flatten(-2)

    def add_audio_mlp(self, hidden: int, seed: int = 0) -> bool:
        """Give the network an ``audio_mlp`` of width ``hidden``, its hidden layers drawn from ``seed``, its
        output layer at zero, so the tokens, and the network's output, start unchanged. False if it has one
        already."""
        if self.audio_mlp is not None:
            if self.config.audio_mlp_width != hidden:
                raise ValueError(f"the network's audio MLP is {self.config.audio_mlp_width} wide, not {hidden}")
            return False
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mlp = _audio_mlp(self.audio_proj.in_features, hidden, self.audio_proj.out_features).to(self.audio_proj.weight)
        with torch.no_grad():
            mlp[-1].weight.zero_()
            mlp[-1].bias.zero_()
        self.audio_mlp = mlp
        self.register_to_config(audio_mlp_width=hidden)
        return True

    def widen_audio_window(self, each_side: int) -> None:
        """Grow ``audio_window`` to ``each_side`` without changing the output: the new neighbours' weights
        start at zero, so a trained network continues training from where it was."""
        old = self.config.audio_window
        if each_side < old:
            raise ValueError(f"cannot narrow the audio window from {old} to {each_side} frames each side")
        if each_side == old:
            return
        if self.audio_mlp is not None:
            raise ValueError("cannot widen the audio window of a network with an audio MLP")
        f = self.config.audio_feature_dim
        proj = nn.Linear(f * (2 * each_side + 1), self.audio_proj.out_features).to(self.audio_proj.weight)
        with torch.no_grad():
            proj.weight.zero_()
            shift = (each_side - old) * f
            proj.weight[:, shift : shift + self.audio_proj.in_features] = self.audio_proj.weight
            proj.bias.copy_(self.audio_proj.bias)
        self.audio_proj = proj
        self.register_to_config(audio_window=each_side)

    def widen_latent_channels(self, channels: int) -> None:
        """Grow ``latent_channels`` to ``channels`` (a VAE with more latent channels) keeping what the
        network does on the old ones: weights from and to the new channels start at zero."""
        old = self.config.latent_channels
        if channels < old:
            raise ValueError(f"cannot narrow the latent channels from {old} to {channels}")
        if channels == old:
            return
        unet, flag = self.unet, int(self.config.kind == "interpolation")
        # conv_in sees [noisy latent, conditioning latent, the interpolation's end-frame flag]: (from, to, n)
        # and with keyframe_copy, the nearer keyframe after the flag
        copy = int(self.config.keyframe_copy)
        groups = [(0, 0, old), (old, channels, old)] + [(2 * old, 2 * channels, 1)] * flag + [(2 * old + 1, 2 * channels + 1, old)] * copy
        conv_in = nn.Conv2d((2 + copy) * channels + flag, unet.conv_in.out_channels, unet.conv_in.kernel_size, padding=unet.conv_in.padding)
        conv_out = nn.Conv2d(unet.conv_out.in_channels, channels, unet.conv_out.kernel_size, padding=unet.conv_out.padding)
        conv_in, conv_out = conv_in.to(unet.conv_in.weight), conv_out.to(unet.conv_out.weight)
        with torch.no_grad():
            for module in (conv_in, conv_out):
                module.weight.zero_()
                module.bias.zero_()
            for src, dst, n in groups:
                conv_in.weight[:, dst : dst + n] = unet.conv_in.weight[:, src : src + n]
            conv_in.bias.copy_(unet.conv_in.bias)
            conv_out.weight[:old] = unet.conv_out.weight
            conv_out.bias[:old] = unet.conv_out.bias
        unet.conv_in, unet.conv_out = conv_in, conv_out
        unet.register_to_config(in_channels=conv_in.in_channels, out_channels=channels)
        if flag:
            grown = torch.zeros(channels, *self.learned_mask.shape[1:]).to(self.learned_mask)
            grown[:old] = self.learned_mask.detach()
            self.learned_mask = nn.Parameter(grown)
        self.register_to_config(latent_channels=channels)

    def add_keyframe_copy(self) -> None:
        """Turn ``keyframe_copy`` on for a trained interpolation network without changing its output: the
        weights from the new input channels start at zero."""
        if self.config.kind != "interpolation":
            raise ValueError("keyframe_copy is for interpolation networks")
        if self.config.keyframe_copy:
            return
        unet, c = self.unet, self.config.latent_channels
        old = unet.conv_in
        conv_in = nn.Conv2d(old.in_channels + c, old.out_channels, old.kernel_size, padding=old.padding).to(old.weight)
        with torch.no_grad():
            conv_in.weight.zero_()
            conv_in.weight[:, : old.in_channels] = old.weight
            conv_in.bias.copy_(old.bias)
        unet.conv_in = conv_in
        unet.register_to_config(in_channels=conv_in.in_channels)
        self.register_to_config(keyframe_copy=True)

    @staticmethod
    def embed_frames(latents: torch.Tensor) -> torch.Tensor:
        """Scaled conditioning latents -> the unscaled ``concat`` input.

        keyframe: (B, 4, h, w) identity latent; interpolation: (B, 4, 2, h, w) [start, end] -> (B, 8, h, w).
        """
        if latents.ndim == 5:
            latents = latents.transpose(1, 2).flatten(1, 2)
        return latents / SCALE_FACTOR

    def conditioning_frames(self, concat: torch.Tensor, num_frames: int, per_frame: bool = False) -> torch.Tensor:
        """The channels concatenated to the noisy latent of every frame, (B*T, C_extra, h, w).

        ``per_frame``: ``concat`` already given per frame: a keyframe one (B*T, 4, h, w), as training uses it
        to drop the reference frame by frame (the official recipe), or an interpolation one as this method
        returns it.
        """
        if per_frame:
            return concat
        if self.config.kind == "keyframe":
            return concat.repeat_interleave(num_frames, dim=0)
        c = self.config.latent_channels
        b, _, h, w = concat.shape
        start, end = concat[:, None, :c], concat[:, None, c:]
        middle = self.learned_mask.to(concat.dtype).expand(b, num_frames - 2, c, h, w)
        frames = torch.cat([start, middle, end], dim=1)
        flag = torch.zeros(b, num_frames, 1, h, w, dtype=concat.dtype, device=concat.device)
        flag[:, [0, -1]] = 1
        parts = [frames, flag]
        if self.config.keyframe_copy:
            nearer = torch.arange(num_frames, device=concat.device) >= num_frames / 2  # False: start, True: end
            parts.append(torch.where(nearer[None, :, None, None, None], end, start))
        return torch.cat(parts, dim=2).flatten(0, 1)

    # --- forward ------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, concat: torch.Tensor, context: torch.Tensor,
                deep: "DeepFeatures | None" = None) -> torch.Tensor:
        """Raw network output F.

        x: (B*T, 4, h, w) noisy latent already multiplied by c_in; c_noise: (B*T,) = 0.25 ln(sigma);
        concat: unscaled conditioning latents (see ``embed_frames``); context: (B, T, context_dim);
        deep: see ``unet_forward``.
        """
        batch, num_frames = context.shape[:2]
        per_frame = num_frames > 1 and concat.shape[0] == batch * num_frames
        extra = self.conditioning_frames(concat.to(x.dtype), num_frames, per_frame)
        return self.unet_forward(torch.cat([x, extra], dim=1), c_noise, context, deep)

    def unet_forward(self, sample: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                     deep: "DeepFeatures | None" = None) -> torch.Tensor:
        """The official VideoUNet forward on diffusers blocks: (B*T, C_in, h, w) -> (B*T, 4, h, w).

        ``deep`` (DeepCache): with ``deep.reuse`` only the full-resolution level runs (the input convolution,
        the first down block for its skip connections, the last up block), on ``deep.features``, the
        input the last up block had in an earlier call; otherwise the whole network runs and keeps that
        input in ``deep.features``."""
        unet = self.unet
        batch, num_frames = context.shape[:2]
        context = context.to(sample.dtype)
        emb = unet.time_embedding(unet.time_proj(timesteps).to(sample.dtype))
        emb = emb + unet.add_embedding(context.reshape(batch * num_frames, -1))
        hidden = context.repeat_interleave(num_frames, dim=0)
        indicator = torch.zeros(batch, num_frames, dtype=sample.dtype, device=sample.device)

        def cross(block) -> dict:
            return {"encoder_hidden_states": hidden} if getattr(block, "has_cross_attention", False) else {}

        h = unet.conv_in(sample)
        skips = (h,)
        reuse = deep is not None and deep.reuse
        for block in unet.down_blocks[:1] if reuse else unet.down_blocks:
            h, res = block(hidden_states=h, temb=emb, image_only_indicator=indicator, **cross(block))
            skips += res
        if reuse:
            h, skips = deep.features, skips[: len(unet.up_blocks[-1].resnets)]
        else:
            h = unet.mid_block(hidden_states=h, temb=emb, encoder_hidden_states=hidden, image_only_indicator=indicator)
        for k, block in enumerate(unet.up_blocks[-1:] if reuse else unet.up_blocks):
            if deep is not None and not reuse and k == len(unet.up_blocks) - 1:
                deep.features = h
            res, skips = skips[-len(block.resnets) :], skips[: -len(block.resnets)]
            h = block(hidden_states=h, temb=emb, res_hidden_states_tuple=res, image_only_indicator=indicator, **cross(block))
        return unet.conv_out(unet.conv_act(unet.conv_norm_out(h)))


def _audio_mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, outputs))
