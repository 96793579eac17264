"""``keysync prepare`` and ``keysync train``.

A training config is YAML (or JSON)::

    model: small            # a preset (random initialisation) or a model folder to fine-tune
    data: data/shards       # from keysync prepare
    output: runs/small      # STAGE/checkpoints/, STAGE/log.csv, and model/: the model folder, updated with
                            # each trained stage (train keyframe, then interpolation, into one folder)
    steps: 1000
    checkpoint_every: 100
    sample_every: 0         # every N steps, STAGE/samples/step_N.mp4: one fixed clip's truth | output
    batch_size: 1
    seed: 0
    lr: 1.0e-5
    warmup_steps: 1000
    mixed_precision: "no"   # fp16 / bf16 on GPUs
    gradient_checkpointing: false
    freeze_temporal: false  # true when fine-tuning from SVD weights (the official recipe)
    mask: box               # the mask trained with: box (the paper's), or heart/mouth/full for ablations
    kl_weight: 1.0e-6       # vae only; also edge_weight (l1 on image gradients)
    latent_scale: 2.7229    # vae only: keep this scaling factor instead of calibrating one (rgb_skip VAEs
                            # then give each learned channel unit variance; see calibrate_latent_scale)
    freeze_encoder: false   # vae only: train the decoder of a trained VAE alone (sharper frames); the
                            # latents stay the same, so the networks trained on them keep working
    lip_weight: 0.0         # extra loss weight on the lips (not in the official recipe; see Recipe)
    decay_steps: 0          # 0: constant rate after warm-up (official); N: cosine down to 0 at step N
    audio_window: 0         # keyframe/interpolation: frames of audio each side of a frame (official: 0);
                            # a loaded network with a narrower window is widened, its output unchanged
    init_networks: FOLDER   # keyframe/interpolation: start the stage's network from this model folder's,
                            # widened to the VAE's latent channels (new channels start at zero)
    keyframe_copy: false    # interpolation only (not official): give every frame its nearer keyframe too
                            # (KeySyncNet.keyframe_copy); a loaded network without it gets it, output unchanged
    audio_mlp: 0            # keyframe/interpolation (not official): width of a perceptron beside the linear
                            # audio projection (KeySyncNet.audio_mlp); a network without one gets it, first
                            # trained to read the mouth from the audio and spliced into the tokens where they
                            # carry the mouth (keysync.train.audio_mlp)

Also the recipe's keys, official values by default (``keysync.train.recipe.Recipe``): p_mean, p_std,
drop_reference, drop_audio, pixel_loss_weight, weight_decay. Any key can be overridden on the command line
with ``--set KEY=VALUE``; an unknown key is an error.

Stages in order: ``vae`` (on the shards' crops), then ``keyframe`` and ``interpolation`` (on their latents:
run ``keysync prepare`` again with the run's model folder after training the VAE).
"""

from __future__ import annotations

import argparse

STAGES = ("keyframe", "interpolation", "vae")
RECIPE_KEYS = (
    "p_mean", "p_std", "drop_reference", "drop_audio", "pixel_loss_weight", "lr", "weight_decay", "warmup_steps", "kl_weight", "edge_weight", "lip_weight",
    "decay_steps",
)
CONFIG_KEYS = (
    "model", "data", "output", "steps", "checkpoint_every", "sample_every", "batch_size", "seed", "mixed_precision",
    "gradient_checkpointing", "freeze_temporal", "freeze_encoder", "mask", "latent_scale", "audio_window", "init_networks", "keyframe_copy",
    "audio_mlp",
    *RECIPE_KEYS,
)


def register(subparsers) -> None:
    p = subparsers.add_parser("prepare", help="turn a folder of talking-face videos into training shards")
    p.add_argument("src", help="folder of .mp4 videos (a .wav with the same name is used as its audio)")
    p.add_argument("out", help="shard folder (an interrupted run resumes)")
    p.add_argument(
        "--model", required=True,
        help="model folder (crops at its size and latents from its VAE) or preset name (crops only, to train a VAE on)",
    )
    p.add_argument("--backend", default="mediapipe", help="face landmark back end")
    p.add_argument("--jobs", type=int, default=1, help="videos prepared at once, one process each (default 1)")
    p.set_defaults(func=run_prepare)

    t = subparsers.add_parser("train", help="train a stage", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("stage", choices=STAGES)
    t.add_argument("--config", required=True, help="training config (YAML or JSON)")
    t.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key (repeatable; the value is read as YAML), e.g. --set seed=6 --set steps=5000",
    )
    t.add_argument(
        "--export", action="store_true",
        help="train nothing: write the stage's latest checkpoint into the run's model folder (to evaluate or keep a run "
        "stopped before its last step)",
    )
    t.set_defaults(func=run_train)


def run_prepare(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from ..errors import KeySyncError
    from ..media.writer import check_output_path
    from ..models import PRESETS, KeySyncModel
    from .data import prepare

    if args.jobs < 1:
        raise KeySyncError("--jobs must be at least 1")
    if not Path(args.src).is_dir():
        raise KeySyncError(f"{args.src} is not a folder; give the folder of .mp4 videos to prepare")
    check_output_path(args.out, inputs=(args.src,), overwrite=True, folder=True)  # an existing one is resumed
    untrained = args.model in PRESETS and not Path(args.model).is_dir()
    # float32 as `keysync train` loads it, so an fp16 folder (a committed sitting) encodes and fingerprints alike
    model = KeySyncModel.from_preset(args.model) if untrained else KeySyncModel.from_pretrained(args.model, dtype=torch.float32)
    shards = prepare(args.src, args.out, model, args.backend, latents=not untrained, jobs=args.jobs)
    print(f"{len(shards)} shards in {args.out}" + (" (crops only: no latents until a VAE is trained)" if untrained else ""))
    return 0


def init_network(model, stage: str, folder: str) -> None:
    """Replace ``model``'s ``stage`` network with ``folder``'s, widened to the model's latent channels (a
    network trained on another VAE of the same latent size starts the new one)."""
    from ..errors import KeySyncError
    from ..models import KeySyncModel

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


def run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch
    import yaml

    from ..errors import KeySyncError
    from ..media.writer import check_output_path
    from ..models import PRESETS, KeySyncModel
    from .data import ClipSampler, vae_fingerprint
    from .recipe import Recipe
    from .trainer import TrainConfig, latest_checkpoint, train

    try:
        cfg = yaml.safe_load(Path(args.config).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise KeySyncError(f"cannot read config {args.config}: {err}") from err
    if not isinstance(cfg, dict):
        raise KeySyncError(f"config {args.config} is not a mapping of keys to values; see `keysync train --help`")
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise KeySyncError(f"--set {item}: expected KEY=VALUE, e.g. --set seed=6")
        try:
            cfg[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise KeySyncError(f"--set {item}: cannot read the value: {err}") from err
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        from difflib import get_close_matches

        near = [f"{key} (did you mean {close[0]}?)" if (close := get_close_matches(key, CONFIG_KEYS, n=1)) else key for key in unknown]
        raise KeySyncError(f"config {args.config}: unknown key {', '.join(near)}; the keys are listed by `keysync train --help`")
    missing = [k for k in ("model", "data", "output") if k not in cfg]
    if missing:
        raise KeySyncError(f"config {args.config} lacks {', '.join(missing)}; see `keysync train --help`")
    check_output_path(cfg["output"], overwrite=True, folder=True)  # an existing run is resumed
    trained = Path(cfg["output"]) / "model"
    if args.export:
        checkpoint, step = latest_checkpoint(Path(cfg["output"]) / args.stage)
        if checkpoint is None:
            raise KeySyncError(f"no {args.stage} checkpoint in {cfg['output']} yet; train first, then export")
    if trained.is_dir():  # another stage was trained into this run already: keep it
        model = KeySyncModel.from_pretrained(trained)
    elif cfg["model"] in PRESETS:
        model = KeySyncModel.from_preset(cfg["model"], seed=cfg.get("seed", 0))
    else:
        model = KeySyncModel.from_pretrained(cfg["model"])
    if args.stage != "vae" and cfg.get("init_networks"):
        init_network(model, args.stage, cfg["init_networks"])
    model.to(dtype=torch.float32)  # a folder may hold fp16 weights (the shipped model): train in float32
    if args.stage != "vae" and "audio_window" in cfg:
        getattr(model, args.stage).widen_audio_window(int(cfg["audio_window"]))
    if cfg.get("keyframe_copy"):
        if args.stage != "interpolation":
            raise KeySyncError(f"config {args.config}: keyframe_copy is for the interpolation stage; drop it from the {args.stage} config")
        model.interpolation.add_keyframe_copy()
    if cfg.get("audio_mlp") and args.stage == "vae":
        raise KeySyncError(f"config {args.config}: audio_mlp is for the keyframe and interpolation stages; drop it from the vae config")
    new_audio_mlp = bool(cfg.get("audio_mlp")) and getattr(model, args.stage).add_audio_mlp(int(cfg["audio_mlp"]), seed=int(cfg.get("seed", 0)))
    if cfg.get("freeze_encoder") and args.stage != "vae":
        raise KeySyncError(f"config {args.config}: freeze_encoder is for the vae stage; drop it from the {args.stage} config")
    recipe = Recipe(**{k: cfg[k] for k in RECIPE_KEYS if k in cfg})
    config = TrainConfig(
        stage=args.stage, output=cfg["output"], steps=int(cfg.get("steps", 1000)),
        checkpoint_every=int(cfg.get("checkpoint_every", 500)), seed=int(cfg.get("seed", 0)),
        mixed_precision=cfg.get("mixed_precision", "no"), gradient_checkpointing=bool(cfg.get("gradient_checkpointing", False)),
        freeze_temporal=bool(cfg.get("freeze_temporal", False)), freeze_encoder=bool(cfg.get("freeze_encoder", False)),
        sample_every=int(cfg.get("sample_every", 0)), recipe=recipe,
    )
    sampler = ClipSampler(
        cfg["data"], args.stage, batch_size=int(cfg.get("batch_size", 1)), seed=config.seed, mask=cfg.get("mask", "box"),
        vae=None if args.stage == "vae" else vae_fingerprint(model.vae),
        audio_window=0 if args.stage == "vae" else getattr(model, args.stage).config.audio_window,
    )
    if new_audio_mlp and not args.export and latest_checkpoint(Path(cfg["output"]) / args.stage)[0] is None:
        from .audio_mlp import pretrain_audio_mlp

        pretrain_audio_mlp(getattr(model, args.stage), sampler.shards, args.stage, seed=config.seed)
    if args.export:
        from ..models.model import load_weights

        getattr(model, args.stage).load_state_dict(load_weights(checkpoint / "model.safetensors"))
        done = f"exported step {step}"
    else:
        done = f"trained {len(train(model, config, sampler))} steps"
    from accelerate import PartialState

    if not PartialState().is_main_process:  # several processes (accelerate launch): one writes the model
        return 0
    if args.stage == "vae" and not config.freeze_encoder:  # a frozen encoder keeps its latent scale
        from .recipe import calibrate_latent_scale

        frames = torch.cat([sampler(-1 - k)["pixels"].flatten(0, 1) for k in range(64)])
        scale = calibrate_latent_scale(model.vae, frames, cfg.get("latent_scale"))
        print(f"latent scaling factor {scale:.4f}")
    if trained.is_dir():  # stages may train side by side into one run: keep what the others saved since
        current = KeySyncModel.from_pretrained(trained)
        setattr(current, args.stage, getattr(model, args.stage))
        current.info.update({k: v for k, v in model.info.items() if k not in current.info})
        model = current
    if args.stage != "vae":
        model.info["mask"] = cfg.get("mask", "box")
    model.save_pretrained(trained, overwrite=True)
    print(f"{done}; model folder {trained}")
    return 0
