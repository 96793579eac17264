"""A training run's settings in one place: ``TrainConfig`` (with its ``Recipe`` and its ``AudioMLP``
section). Their fields are the YAML config's keys, their defaults, the unknown-key check and the listing in
``keysync train --help``.

Torch-free, so that building the command line stays fast.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from difflib import get_close_matches
from pathlib import Path

from ..errors import KeySyncError

STAGES = ("keyframe", "interpolation", "vae")


def key(default, doc: str, **kwargs):
    """A config key: its default and the line ``keysync train --help`` shows for it."""
    return field(default=default, metadata={"doc": doc}, **kwargs)


@dataclass(frozen=True)
class Recipe:
    """The official training recipe's numbers (reference section 3); two additions, off by default."""

    p_mean: float = key(1.0, "ln sigma ~ N(p_mean, p_std^2): SVD's high-noise bias, not EDM's -1.2")
    p_std: float = key(1.2, "see p_mean")
    drop_reference: float = key(0.1, "keyframe: per frame; interpolation: both keyframes together, per clip")
    drop_audio: float = key(0.2, "per clip")
    pixel_loss_weight: float = key(1.0, "keyframe only: l2 on one decoded frame")
    lr: float = key(1e-5, "the official keyframe rate; interpolation used 3e-5")
    weight_decay: float = key(0.01, "AdamW's")
    warmup_steps: int = key(1000, "linear warm-up of the rate")
    kl_weight: float = key(1e-6, "vae only: the KL term, small as in SD/SVD's VAE training")
    edge_weight: float = key(1.0, "vae only: l1 on image gradients, against the blur an l1/l2 loss alone gives")
    lip_weight: float = key(0.0, "not official: extra loss weight on the lips' latent pixels (the small model's second phase)")
    decay_steps: int = key(0, "not official: 0 keeps the rate constant after warm-up; N decays it along a cosine to 0 at step N")


@dataclass(frozen=True)
class AudioMLP:
    """Not official: a step before training. A two-layer perceptron is set beside the network's linear audio
    projection, its hidden layers are trained to read each frame's mouth from the frame's audio window, and
    it is spliced into the audio tokens (``keysync.train.audio_mlp``); then the network trains."""

    width: int = key(0, "hidden width; 0: no perceptron and no such step")
    steps: int = key(3000, "pretraining steps (AdamW, the rate cosine-decayed to 0)")
    batch: int = key(256, "frames per pretraining step")
    lr: float = key(1e-3, "pretraining rate")


@dataclass
class TrainConfig:
    """One stage's training run. ``stage`` and ``output`` come first (``TrainConfig("keyframe", "runs/x")``)."""

    stage: str = key(MISSING, "the stage: keyframe, interpolation or vae (the command's STAGE, not a config key)")
    output: str = key(MISSING, "run folder: STAGE/checkpoints/, STAGE/log.csv, and model/ (updated with each trained stage)")
    model: str | None = key(None, "a preset (random initialisation) or a model folder to fine-tune")
    data: str | None = key(None, "shard folder from keysync prepare")
    steps: int = key(1000, "optimiser steps")
    checkpoint_every: int = key(500, "steps between checkpoints (a stopped run resumes from the last)")
    sample_every: int = key(0, "every N steps, STAGE/samples/step_N.mp4: one fixed clip's truth | output; 0: never")
    batch_size: int = key(1, "clips per step")
    seed: int = key(0, "initialisation, clip draws and noise")
    mixed_precision: str = key("no", "no, fp16 or bf16 (GPUs)")
    gradient_checkpointing: bool = key(False, "trade compute for memory")
    freeze_temporal: bool = key(False, "keep the temporal layers (fine-tuning from SVD weights: the official recipe)")
    freeze_encoder: bool = key(False, "vae only: train the decoder alone; the latents (and networks on them) stay valid")
    mask: str = key("box", "the mask trained with: box (the paper's), or heart/mouth/full for ablations")
    latent_scale: float | None = key(None, "vae only: keep this scaling factor instead of calibrating one")
    audio_window: int | None = key(None, "keyframe/interpolation: frames of audio each side of a frame (official 0); a narrower loaded network is widened, output unchanged")
    init_networks: str | None = key(None, "keyframe/interpolation: start the stage's network from this model folder's, widened to the VAE's latent channels")
    keyframe_copy: bool = key(False, "interpolation only, not official: give every frame its nearer keyframe too")
    audio_mlp: AudioMLP = field(default_factory=AudioMLP, metadata={"doc": "keyframe/interpolation: a section (audio_mlp: {width: 128})"})
    recipe: Recipe = field(default_factory=Recipe, metadata={"doc": "the Recipe's keys, at the top level of the file"})


SECTIONS = {"audio_mlp": AudioMLP}  # keys holding a mapping of their own keys (audio_mlp.width in --set)
RUN_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name not in ("stage", "recipe", *SECTIONS))
RECIPE_KEYS = tuple(f.name for f in fields(Recipe))
SECTION_KEYS = tuple(f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in fields(cls))
CONFIG_KEYS = RUN_KEYS + RECIPE_KEYS + SECTION_KEYS
REQUIRED_KEYS = ("model", "data", "output")


def config_help() -> str:
    """Every config key with its default and what it does, from the dataclasses."""
    lines = ["config keys (YAML or JSON; --set KEY=VALUE overrides one, --set SECTION.KEY=VALUE a section's; an unknown "
             "key is an error):", ""]
    listed = [(f, f.name) for f in fields(TrainConfig) if f.name not in ("stage", "recipe", *SECTIONS)]
    listed += [(f, f.name) for f in fields(Recipe)]
    for name, cls in SECTIONS.items():
        listed += [(f, f"{name}.{f.name}") for f in fields(cls)]
    for f, name in listed:
        default = "required" if name in REQUIRED_KEYS else repr(f.default)
        lines.append(f"  {name}: {default}\n      {f.metadata['doc']}")
    for name, cls in SECTIONS.items():
        lines += ["", f"  {name}: {' '.join(cls.__doc__.split())}"]
    return "\n".join(lines)


def _typed(name: str, value, default):
    """A YAML value as the key's type (YAML reads 1e-5 as a string, and 3 where a float is meant)."""
    kind = type(default)
    if default is None or default is MISSING or value is None or isinstance(value, kind):
        return value
    try:
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError
            return value
        return kind(value)
    except (TypeError, ValueError):
        raise KeySyncError(f"config key {name}: {value!r} should be {kind.__name__} (like its default, {default!r})") from None


def config_from_mapping(values: dict, stage: str, source: str = "config") -> TrainConfig:
    """A ``TrainConfig`` from a flat mapping of keys (the YAML file's), checked: unknown keys are named with
    the nearest valid key, required ones must be there, values take their key's type."""
    if stage not in STAGES:
        raise KeySyncError(f"stage {stage!r}: choose one of {', '.join(STAGES)}")
    values = dict(values)
    for name in SECTIONS:
        section = values.pop(name, {}) or {}
        if not isinstance(section, dict):
            raise KeySyncError(f"{source}: {name} is a section of keys, such as {name}: {{width: 128}}; see `keysync train --help`")
        values |= {f"{name}.{k}": v for k, v in section.items()}
    unknown = sorted(set(values) - set(CONFIG_KEYS))
    if unknown:
        near = [f"{k} (did you mean {close[0]}?)" if (close := get_close_matches(k, CONFIG_KEYS, n=1)) else k for k in unknown]
        raise KeySyncError(f"{source}: unknown key {', '.join(near)}; the keys are listed by `keysync train --help`")
    missing = [k for k in REQUIRED_KEYS if values.get(k) is None]
    if missing:
        raise KeySyncError(f"{source} lacks {', '.join(missing)}; see `keysync train --help`")
    run = {f.name: _typed(f.name, values[f.name], f.default) for f in fields(TrainConfig) if f.name in values}
    recipe = Recipe(**{f.name: _typed(f.name, values[f.name], f.default) for f in fields(Recipe) if f.name in values})
    for name, cls in SECTIONS.items():
        run[name] = cls(**{f.name: _typed(f"{name}.{f.name}", values[f"{name}.{f.name}"], f.default)
                           for f in fields(cls) if f"{name}.{f.name}" in values})
    return TrainConfig(stage=stage, recipe=recipe, **run)


def load_config(path: str | Path, stage: str, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML (or JSON) config and ``KEY=VALUE`` overrides (each value read as YAML)."""
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise KeySyncError(f"cannot read config {path}: {err}") from err
    if not isinstance(values, dict):
        raise KeySyncError(f"config {path} is not a mapping of keys to values; see `keysync train --help`")
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise KeySyncError(f"--set {item}: expected KEY=VALUE, e.g. --set seed=6")
        try:
            values[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise KeySyncError(f"--set {item}: cannot read the value: {err}") from err
    return config_from_mapping(values, stage, source=f"config {path}")
