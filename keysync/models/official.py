"""The official KeySync checkpoint layout: key names and model configs.

Our modules use diffusers' names; the released checkpoints use SGM's. ``official_name`` maps each of our
parameter names onto its official name (the mapping is a bijection; tests check it against the released
manifests), and ``configs_from_official`` turns an official engine config into our configs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from ..errors import KeySyncError

UNET = "model.diffusion_model."
AUDIO_PROJ = "conditioner.embedders.2.linear."
LEARNED_MASK = "model.learned_mask"
DECODER = "first_stage_model.decoder."
# Keys some official checkpoints carry that KeySync never uses: the interpolation sampling yaml builds an
# autoencoder inside the reference embedder that no code path calls (reference section 5).
UNUSED_PREFIXES = ("conditioner.embedders.0.encoder.",)

_RESNET = [
    ("spatial_res_block.norm1", "in_layers.0"),
    ("spatial_res_block.conv1", "in_layers.2"),
    ("spatial_res_block.time_emb_proj", "emb_layers.1"),
    ("spatial_res_block.norm2", "out_layers.0"),
    ("spatial_res_block.conv2", "out_layers.3"),
    ("spatial_res_block.conv_shortcut", "skip_connection"),
    ("temporal_res_block.norm1", "time_stack.in_layers.0"),
    ("temporal_res_block.conv1", "time_stack.in_layers.2"),
    ("temporal_res_block.time_emb_proj", "time_stack.emb_layers.1"),
    ("temporal_res_block.norm2", "time_stack.out_layers.0"),
    ("temporal_res_block.conv2", "time_stack.out_layers.3"),
    ("time_mixer.mix_factor", "time_mixer.mix_factor"),
]
_TRANSFORMER = [
    ("temporal_transformer_blocks.", "time_stack."),
    ("time_pos_embed.linear_1", "time_pos_embed.0"),
    ("time_pos_embed.linear_2", "time_pos_embed.2"),
]
_DECODER_RESNET = [
    ("spatial_res_block.conv_shortcut", "nin_shortcut"),
    ("spatial_res_block.", ""),
    ("temporal_res_block.norm1", "time_stack.in_layers.0"),
    ("temporal_res_block.conv1", "time_stack.in_layers.2"),
    ("temporal_res_block.norm2", "time_stack.out_layers.0"),
    ("temporal_res_block.conv2", "time_stack.out_layers.3"),
    ("time_mixer.mix_factor", "mix_factor"),
]
_DECODER_ATTENTION = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]


def _sub(rest: str, table) -> str:
    for ours, theirs in table:
        if rest.startswith(ours):
            return theirs + rest[len(ours) :]
    return rest


def _unet_name(key: str, num_levels: int, num_res: int, attention_levels) -> str:
    """Our ``unet.*`` key (without the prefix) -> the official VideoUNet key (without its prefix)."""
    fixed = {
        "conv_in.": "input_blocks.0.0.",
        "time_embedding.linear_1.": "time_embed.0.",
        "time_embedding.linear_2.": "time_embed.2.",
        "add_embedding.linear_1.": "label_emb.0.0.",
        "add_embedding.linear_2.": "label_emb.0.2.",
        "conv_norm_out.": "out.0.",
        "conv_out.": "out.2.",
    }
    for ours, theirs in fixed.items():
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.*)", key):
        level, part, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        first = 1 + level * (num_res + 1)
        if part == "downsamplers":
            return f"input_blocks.{first + num_res}.0.op.{rest.removeprefix('conv.')}"
        if part == "resnets":
            return f"input_blocks.{first + j}.0.{_sub(rest, _RESNET)}"
        return f"input_blocks.{first + j}.1.{_sub(rest, _TRANSFORMER)}"
    if m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key):
        part, j, rest = m[1], int(m[2]), m[3]
        if part == "resnets":
            return f"middle_block.{2 * j}.{_sub(rest, _RESNET)}"
        return f"middle_block.1.{_sub(rest, _TRANSFORMER)}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.*)", key):
        up, part, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        has_attention = (num_levels - 1 - up) in attention_levels
        if part == "upsamplers":
            return f"output_blocks.{up * (num_res + 1) + num_res}.{2 if has_attention else 1}.{rest}"
        if part == "resnets":
            return f"output_blocks.{up * (num_res + 1) + j}.0.{_sub(rest, _RESNET)}"
        return f"output_blocks.{up * (num_res + 1) + j}.1.{_sub(rest, _TRANSFORMER)}"
    raise KeyError(f"no official name for UNet key {key!r}")


def _decoder_name(key: str, num_levels: int) -> str:
    """Our VAE ``decoder.*`` key (without the prefix) -> the official VideoDecoder key."""
    fixed = {"conv_norm_out.": "norm_out.", "time_conv_out.": "conv_out.time_mix_conv.", "conv_in.": "conv_in."}
    for ours, theirs in fixed.items():
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    if key.startswith("conv_out."):
        return key
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
        return f"mid.block_{int(m[1]) + 1}.{_sub(m[2], _DECODER_RESNET)}"
    if m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
        return f"mid.attn_1.{_sub(m[1], _DECODER_ATTENTION)}"
    if m := re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
        return f"up.{num_levels - 1 - int(m[1])}.block.{m[2]}.{_sub(m[3], _DECODER_RESNET)}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.(.*)", key):
        return f"up.{num_levels - 1 - int(m[1])}.upsample.{m[2]}"
    raise KeyError(f"no official name for decoder key {key!r}")


def network_official_names(net) -> dict[str, str]:
    """{our key: official key} for every tensor of a ``KeySyncNet``."""
    cfg = net.config
    names = {}
    for key in net.state_dict():
        if key.startswith("unet."):
            rest = key[len("unet.") :]
            names[key] = UNET + _unet_name(rest, len(cfg.channel_mult), cfg.num_res_blocks, cfg.attention_levels)
        elif key.startswith("audio_proj."):
            names[key] = AUDIO_PROJ + key[len("audio_proj.") :]
        elif key == "learned_mask":
            names[key] = LEARNED_MASK
        else:
            raise KeyError(f"no official name for network key {key!r}")
    return names


def decoder_official_names(vae) -> dict[str, str]:
    """{our key: official key} for the VAE decoder tensors (the checkpoints carry no encoder)."""
    levels = len(vae.config.block_out_channels)
    return {
        key: DECODER + _decoder_name(key[len("decoder.") :], levels)
        for key in vae.state_dict()
        if key.startswith("decoder.")
    }


def is_conv1x1_as_linear(our_key: str) -> bool:
    """The decoder's attention projections are 1x1 convs officially and Linear layers in diffusers."""
    return bool(re.match(r"decoder\.mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$", our_key))


# --- official configs -----------------------------------------------------------------------------------


def read_official_config(path: str | Path) -> dict:
    """An official engine config: a yaml file, or JSON holding it (optionally under ``official_config``)."""
    path = Path(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise KeySyncError(f"cannot read official config {path}: {err}") from err
    if isinstance(data, dict) and "official_config" in data:
        data = data["official_config"]
    try:
        return data["model"]["params"]
    except (KeyError, TypeError):
        raise KeySyncError(f"{path} is not an official KeySync model config (no model.params)") from None


def _require(value, expected, what: str):
    if value != expected:
        raise KeySyncError(f"unsupported official config: {what} is {value!r}, KeySync uses {expected!r}")


def _interpolation_latents(wrapper: dict, unet: dict, levels: int) -> tuple[int, int]:
    """(height, width) of the learned mask, as the official ``InterpolationWrapper`` makes it from ``im_size``
    (``[h // 8, w // 8]``), refusing sizes the official networks cannot run on."""
    im = wrapper.get("im_size", [512, 512])
    if isinstance(im, int) or len(im) != 2:
        raise KeySyncError(f"network_wrapper im_size must be [height, width], got {im!r}")
    if any(n <= 0 or n % 8 for n in im):
        raise KeySyncError(f"network_wrapper im_size {list(im)} is not divisible by 8 (the VAE's downsampling)")
    step = 8 * 2 ** (levels - 1)  # the UNet halves the latents levels-1 times and concatenates the skips back
    if any(n % step for n in im):
        raise KeySyncError(
            f"network_wrapper im_size {list(im)} gives {im[0] // 8}x{im[1] // 8} latents, but a {levels}-level UNet needs "
            f"latents divisible by {step // 8}: im_size must be a multiple of {step}"
        )
    _require(wrapper.get("n_channels", 4), unet["out_channels"], "network_wrapper n_channels")
    method = wrapper.get("starting_mask_method", "zeros")
    if method not in ("zeros", "ones", "random"):
        raise KeySyncError(f"unsupported official config: starting_mask_method {method!r} leaves no learned mask to load")
    return im[0] // 8, im[1] // 8


def configs_from_official(params: dict) -> tuple[str, dict, dict]:
    """(kind, network config, VAE config) from an official engine config's ``model.params``."""
    wrapper = params["network_wrapper"]["target"].rsplit(".", 1)[-1]
    kinds = {"DubbingWrapper": "keyframe", "InterpolationWrapper": "interpolation"}
    if wrapper not in kinds:
        raise KeySyncError(f"unsupported official network wrapper {wrapper!r}; expected one of {list(kinds)}")
    kind = kinds[wrapper]
    unet = params["network_config"]["params"]
    _require(unet.get("audio_cond_method"), "both_keyframes", "audio_cond_method")
    _require(unet.get("additional_audio_frames", 0), 0, "additional_audio_frames")
    _require(bool(unet.get("use_linear_in_transformer")), True, "use_linear_in_transformer")
    _require(bool(unet.get("extra_ff_mix_layer")), True, "extra_ff_mix_layer")
    _require(bool(unet.get("use_spatial_context")), True, "use_spatial_context")
    _require(unet.get("merge_strategy"), "learned_with_images", "merge_strategy")
    _require(list(unet.get("video_kernel_size", [3, 1, 1])), [3, 1, 1], "video_kernel_size")
    _require(unet["in_channels"], 8 if kind == "keyframe" else 9, "in_channels")
    mult = tuple(unet["channel_mult"])
    depth = unet.get("transformer_depth", 1)
    if isinstance(depth, (list, tuple)):
        if len(set(depth)) != 1:
            raise KeySyncError(f"unsupported official config: per-level transformer_depth {depth}")
        depth = depth[0]
    heads = unet.get("num_head_channels", -1)
    if heads in (-1, None):
        raise KeySyncError("unsupported official config: num_heads without num_head_channels")

    audio = next(e for e in params["conditioner_config"]["params"]["emb_models"] if e["input_key"] == "audio_emb")
    audio_params = audio["params"]
    _require(audio_params.get("merge_method"), "mean", "audio merge_method")
    _require(audio_params["linear_dim"], unet["context_dim"], "audio linear_dim vs context_dim")

    if kind == "interpolation":
        latent_size = _interpolation_latents(params["network_wrapper"].get("params") or {}, unet, len(mult))
    else:
        latent_size = (64, 64)  # not stored in the keyframe config; only the interpolation learned mask needs it
    net = dict(
        kind=kind,
        latent_channels=unet["out_channels"],
        latent_size=latent_size,
        model_channels=unet["model_channels"],
        channel_mult=mult,
        num_res_blocks=unet["num_res_blocks"],
        attention_levels=tuple(i for i in range(len(mult)) if 2**i in unet["attention_resolutions"]),
        num_head_channels=heads,
        transformer_depth=depth,
        context_dim=unet["context_dim"],
        audio_feature_dim=audio_params["audio_dim"],
    )
    dec = params["first_stage_config"]["params"]["decoder_config"]["params"]
    _require(dec.get("z_channels", 4), 4, "VAE z_channels")
    widths = tuple(dec["ch"] * m for m in dec["ch_mult"])
    vae = dict(
        block_out_channels=widths,
        layers_per_block=dec["num_res_blocks"],
        down_block_types=("DownEncoderBlock2D",) * len(widths),
        sample_size=dec.get("resolution", 512),
    )
    return kind, net, vae
