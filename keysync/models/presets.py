"""Named model sizes. ``official`` is exactly the released KeySync shapes; the others are smaller models
with the same structure (``tiny`` matches the official-code fixtures, ``small`` is the laptop model)."""

from __future__ import annotations

import copy

from ..errors import KeySyncError

_OFFICIAL_NET = dict(
    latent_channels=4,
    latent_size=64,
    model_channels=320,
    channel_mult=(1, 2, 4, 4),
    num_res_blocks=2,
    attention_levels=(0, 1, 2),
    num_head_channels=64,
    transformer_depth=1,
    context_dim=1024,
    audio_feature_dim=768,
    frames_per_clip=14,
)
_OFFICIAL_VAE = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, sample_size=512)

# Which audio features feed which stage. The released interpolation weights were trained on HuBERT
# features (both training scripts) but the official inference feeds WavLM (reference 1.4); the official
# inference choice is the default, and a model folder's keysync.json can switch it.
_OFFICIAL_AUDIO = {
    "keyframe": {"encoder": "hubert", "source": "facebook/hubert-base-ls960", "normalize": True},
    "interpolation": {"encoder": "wavlm", "source": "microsoft/wavlm-base-plus", "normalize": False},
}


def _logmel(n_mels: int) -> dict:
    spec = {"encoder": "logmel", "n_mels": n_mels}
    return {"keyframe": spec, "interpolation": spec}


PRESETS: dict[str, dict] = {
    # The released weights: 512 px face crops, 64x64x4 latents, HuBERT/WavLM 768-d features.
    "official": dict(net=_OFFICIAL_NET, vae=_OFFICIAL_VAE, audio=_OFFICIAL_AUDIO),
    # The official-code golden fixtures' size: 16x16 latents, VAE upsampling x2 (32 px output).
    "tiny": dict(
        net={
            **_OFFICIAL_NET,
            "latent_size": 16,
            "model_channels": 32,
            "channel_mult": (1, 2),
            "attention_levels": (0,),
            "num_head_channels": 16,
            "context_dim": 64,
        },
        vae=dict(block_out_channels=(32, 64), layers_per_block=1, sample_size=32),
        audio=_OFFICIAL_AUDIO,
    ),
    # The first CPU model we trained and shipped: 64 px crops, 16x16 latents (VAE x4), 2-level UNet. Sized
    # so that a 2-core laptop trains it in about an hour and dubs a few seconds of video in well under a
    # minute. The shipped 128 px model (small-128, below) started from its networks.
    "small": dict(
        net={
            **_OFFICIAL_NET,
            "latent_size": 16,
            "model_channels": 32,
            "channel_mult": (1, 2, 2),
            "num_res_blocks": 1,
            "attention_levels": (1, 2),
            "num_head_channels": 32,
            "context_dim": 128,
            "audio_feature_dim": 80,
        },
        vae=dict(block_out_channels=(32, 64, 64), layers_per_block=1, sample_size=64, rgb_skip=True),
        audio=_logmel(80),
    ),
}
# The shipped model: the small model's networks at 128 px. The 64 px crop alone caps SSIM in the
# lower-face box near 0.95 (0.99 at 128 px). The VAE downsamples x8, so the UNets keep their 16x16 latents and their cost; the
# extra detail goes into 8 latent channels, the first three still the averaged image, so the 64 px
# networks can start it (``KeySyncNet.widen_latent_channels``).
PRESETS["small-128"] = dict(
    net={**PRESETS["small"]["net"], "latent_channels": 8},
    vae=dict(block_out_channels=(32, 64, 64, 64), layers_per_block=1, sample_size=128, rgb_skip=True, latent_channels=8),
    audio=_logmel(80),
)


def preset(name: str) -> dict:
    """A deep copy of a preset: ``{"net": {...}, "vae": {...}, "audio": {...}}`` (net config without ``kind``).
    An unknown name is a user error (a typo on the command line), not a bug."""
    if name not in PRESETS:
        raise KeySyncError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}, or give a model folder")
    spec = copy.deepcopy(PRESETS[name])
    spec["vae"]["down_block_types"] = ("DownEncoderBlock2D",) * len(spec["vae"]["block_out_channels"])
    return spec
