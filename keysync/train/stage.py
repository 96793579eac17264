"""Train one stage from a ``TrainConfig``: load or build the model, apply the config's network changes,
train (or export the latest checkpoint) and write the run's model folder. ``keysync train`` calls this."""

from __future__ import annotations

import logging
from operator import attrgetter
from pathlib import Path

import torch

from ..errors import KeySyncError
from ..media.writer import check_output_path
from ..models import PRESETS, KeySyncModel
from .config import TrainConfig
from .data import ClipSampler, vae_fingerprint
from .trainer import latest_checkpoint, train

log = logging.getLogger(__name__)


def init_network(model, stage: str, folder: str) -> None:
    """Replace ``model``'s ``stage`` network with ``folder``'s, widened to the model's latent channels (a
    network trained on another VAE of the same latent size starts the new one)."""
    net = getattr(KeySyncModel.from_pretrained(folder), stage)
    (h, w), (want_h, want_w) = net.latent_hw, getattr(model, stage).latent_hw
    if (h, w) != (want_h, want_w):
        raise KeySyncError(
            f"init_networks {folder}: its {stage} network works on {h}x{w} "
            f"latents, this model's on {want_h}x{want_w}; pick a folder of the same latent size"
        )
    try:
        net.widen_latent_channels(model.vae.config.latent_channels)
    except ValueError as err:
        raise KeySyncError(f"init_networks {folder}: {err} (this model's VAE); pick a folder with at most as many") from None
    setattr(model, stage, net)


def _check_stage_keys(config: TrainConfig) -> None:
    """Keys that only one kind of stage has."""
    for name, stages in (("keyframe_copy", ("interpolation",)), ("audio_mlp.width", ("keyframe", "interpolation")), ("freeze_encoder", ("vae",))):
        if attrgetter(name)(config) and config.stage not in stages:
            raise KeySyncError(f"{name} is for the {' and '.join(stages)} stage{'s' if len(stages) > 1 else ''}; drop it from the {config.stage} config")


def _model(config: TrainConfig, trained: Path) -> tuple[KeySyncModel, bool]:
    """The model to train, and whether its network got a new audio perceptron (to pretrain before step 1)."""
    if trained.is_dir():  # another stage was trained into this run already: keep it
        model = KeySyncModel.from_pretrained(trained)
    elif config.model in PRESETS:
        model = KeySyncModel.from_preset(config.model, seed=config.seed)
    else:
        model = KeySyncModel.from_pretrained(config.model)
    if config.stage != "vae" and config.init_networks:
        init_network(model, config.stage, config.init_networks)
    model.to(dtype=torch.float32)  # a folder may hold fp16 weights (the shipped model): train in float32
    if config.stage != "vae" and config.audio_window is not None:
        getattr(model, config.stage).widen_audio_window(config.audio_window)
    if config.keyframe_copy:
        model.interpolation.add_keyframe_copy()
    new_mlp = bool(config.audio_mlp.width) and getattr(model, config.stage).add_audio_mlp(config.audio_mlp.width, seed=config.seed)
    return model, new_mlp


def train_stage(config: TrainConfig, export: bool = False) -> str:
    """Train ``config.stage`` (or with ``export`` write its latest checkpoint into the run's model folder);
    returns one line saying what was done."""
    _check_stage_keys(config)
    check_output_path(config.output, overwrite=True, folder=True)  # an existing run is resumed
    trained, stage = Path(config.output) / "model", config.stage
    if export:
        checkpoint, step = latest_checkpoint(Path(config.output) / stage)
        if checkpoint is None:
            raise KeySyncError(f"no {stage} checkpoint in {config.output} yet; train first, then export")
    model, new_mlp = _model(config, trained)
    sampler = ClipSampler(
        config.data, stage, batch_size=config.batch_size, seed=config.seed, mask=config.mask,
        vae=None if stage == "vae" else vae_fingerprint(model.vae),
        audio_window=0 if stage == "vae" else getattr(model, stage).config.audio_window,
    )
    if new_mlp and not export and latest_checkpoint(Path(config.output) / stage)[0] is None:
        from .audio_mlp import pretrain_audio_mlp

        mlp = config.audio_mlp
        log.info(f"before training: the audio perceptron (width {mlp.width}), {mlp.steps} steps of reading the mouth from the audio")
        pretrain_audio_mlp(getattr(model, stage), sampler.shards, stage, steps=mlp.steps, batch=mlp.batch, lr=mlp.lr, seed=config.seed)
    if export:
        from ..models.model import load_weights

        getattr(model, stage).load_state_dict(load_weights(checkpoint / "model.safetensors"))
        done = f"exported step {step}"
    else:
        done = f"trained {len(train(model, config, sampler))} steps"
    from accelerate import PartialState

    if not PartialState().is_main_process:  # several processes (accelerate launch): one writes the model
        return done
    if stage == "vae" and not config.freeze_encoder:  # a frozen encoder keeps its latent scale
        from .recipe import calibrate_latent_scale

        frames = torch.cat([sampler(-1 - k)["pixels"].flatten(0, 1) for k in range(64)])
        scale = calibrate_latent_scale(model.vae, frames, config.latent_scale)
        log.info(f"latent scaling factor {scale:.4f}")
    if trained.is_dir():  # stages may train side by side into one run: keep what the others saved since
        current = KeySyncModel.from_pretrained(trained)
        setattr(current, stage, getattr(model, stage))
        current.info.update({k: v for k, v in model.info.items() if k not in current.info})
        model = current
    if stage != "vae":
        model.info["mask"] = config.mask
    model.save_pretrained(trained, overwrite=True)
    return f"{done}; model folder {trained}"
