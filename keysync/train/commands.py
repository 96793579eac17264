"""``keysync prepare`` and ``keysync train``: the command lines (the work is in ``keysync.train``).

Stages in order: ``vae`` (on the shards' crops), then ``keyframe`` and ``interpolation`` (on their latents:
run ``keysync prepare`` again with the run's model folder after training the VAE). A training config is a
YAML (or JSON) file of the keys ``keysync.train.config.TrainConfig`` defines, listed by ``--help``.
"""

from __future__ import annotations

import argparse

from .config import STAGES, config_help


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

    t = subparsers.add_parser("train", help="train a stage", description=__doc__, epilog=config_help(),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
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


def run_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .stage import train_stage

    print(train_stage(load_config(args.config, args.stage, args.set), export=args.export))
    return 0
