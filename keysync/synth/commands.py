"""``keysync synth``: write a synthetic talking-head dataset."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic talking-head dataset (mp4 + wav + ground truth)",
        description=(
            "Render clips of procedural faces speaking espeak-ng sentences, with ground-truth mouth parameters, "
            "68-point landmarks and occluder masks, split train/val/test with no identity or sentence shared "
            "between splits. The same seed gives byte-identical files."
        ),
    )
    p.add_argument("out_dir", help="dataset folder to create")
    p.add_argument("--clips", type=int, default=100, help="number of clips (default 100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", type=int, default=256, help="frame width and height in pixels (default 256; any size)")
    p.add_argument("--occluders", type=float, default=0.25, help="share of clips with a hand or microphone (default 0.25)")
    p.add_argument(
        "--jaw-drop",
        type=float,
        default=0.22,
        help="how far the chin falls when the jaw opens fully, in face half-widths (default 0.22; larger gives a "
        "world where the jaw swings out below a mouth-only mask, for the mask ablation)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    p.add_argument("--jobs", type=int, default=1, help="clips rendered at once, one process each (default 1; same files)")
    p.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import KeySyncError
    from ..media.writer import check_output_path
    from .dataset import plan_dataset, write_dataset

    if args.clips < 1:
        raise KeySyncError("--clips must be at least 1")
    if args.size < 32 or args.size % 2:
        raise KeySyncError("--size must be an even number of pixels, at least 32")
    if not 0 <= args.occluders <= 1:
        raise KeySyncError("--occluders is a share between 0 and 1")
    if not 0 <= args.jaw_drop <= 1:
        raise KeySyncError("--jaw-drop is a length in face half-widths between 0 and 1")
    if args.jobs < 1:
        raise KeySyncError("--jobs must be at least 1")
    check_output_path(args.out_dir, overwrite=args.overwrite, folder=True)
    specs = plan_dataset(args.clips, args.seed, args.size, args.size, occluder_rate=args.occluders, jaw_drop=args.jaw_drop)
    out = write_dataset(Path(args.out_dir), specs, args.seed, overwrite=args.overwrite, jobs=args.jobs)
    counts = {s: sum(c.split == s for c in specs) for s in ("train", "val", "test")}
    print(f"wrote {out}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return 0
