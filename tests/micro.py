"""The smallest KeySync model the whole pipeline runs through: for plumbing tests (random weights)."""

import torch

from keysync.models import KeySyncModel


def micro_model(audio_window: int = 0, latent_channels: int = 4) -> KeySyncModel:
    """One UNet level on 8x8 latents, a 4x VAE: 32 px crops. Random weights."""
    torch.manual_seed(0)
    net = dict(latent_size=8, model_channels=32, channel_mult=(1,), attention_levels=(0,), num_head_channels=16,
               context_dim=32, audio_feature_dim=40, audio_window=audio_window, latent_channels=latent_channels)
    vae = dict(block_out_channels=(32, 32, 32), layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * 3,
               latent_channels=latent_channels)
    spec = {"encoder": "logmel", "n_mels": 40}
    return KeySyncModel.from_config(net, vae, info={"audio": {"keyframe": spec, "interpolation": spec}})
