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


def micro_segmenter(folder) -> None:
    """A SAM 2 video model with random weights at 64 px input, saved to ``folder``: for plumbing tests.
    Memories reach 3 frames back and object pointers 4, so a 10-frame clip exercises dropping old ones."""
    from transformers import Sam2VideoConfig, Sam2VideoModel

    size, hidden = 64, 128
    config = Sam2VideoConfig(
        vision_config=dict(
            model_type="sam2_vision_model",
            backbone_config=dict(
                model_type="sam2_hiera_det_model", hidden_size=16, image_size=[size, size], blocks_per_stage=[1, 1, 2, 1],
                embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 1, 1, 1],
                window_size_per_stage=[8, 4, 4, 4], global_attention_blocks=[3],
            ),
            backbone_channel_list=[128, 64, 32, 16], fpn_hidden_size=hidden,
            backbone_feature_sizes=[[size // 4] * 2, [size // 8] * 2, [size // 16] * 2],
        ),
        prompt_encoder_config=dict(hidden_size=hidden, image_size=size),
        mask_decoder_config=dict(hidden_size=hidden, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=hidden),
        image_size=size, num_maskmem=3, max_object_pointers_in_encoder=4,
        memory_attention_hidden_size=hidden, memory_attention_num_layers=1, memory_attention_num_attention_heads=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[size // 16] * 2,
        memory_encoder_hidden_size=hidden, mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden, memory_fuser_intermediate_dim=64,
    )
    torch.manual_seed(0)
    Sam2VideoModel(config).save_pretrained(folder)
