"""``keysync dub VIDEO AUDIO -o OUT.mp4``: the main job."""

from __future__ import annotations

import argparse

from .plan import LONG_AUDIO, SHORT_AUDIO


GUIDANCE_HELP = (
    "audio and reference guidance scales, for both stages (A,R) or for the keyframes then the interpolation "
    "(A,R,A,R)"
)


def parse_guidance(text: str) -> tuple[float, ...]:
    """'A,R' (both stages) or 'A,R,A,R' (keyframes, then interpolation)."""
    try:
        scales = tuple(float(v) for v in text.split(","))
    except ValueError:
        scales = ()
    if len(scales) not in (2, 4):
        raise argparse.ArgumentTypeError(f"expected 'AUDIO,REF' such as 5,2 (or 4 numbers, keyframes then interpolation), got {text!r}")
    return scales


def register(subparsers) -> None:
    p = subparsers.add_parser("dub", help="make the face in VIDEO speak AUDIO", description=__doc__)
    p.add_argument("video", help="the video to dub (any resolution, frame rate and length)")
    p.add_argument("audio", help="the new speech (any audio or video file)")
    p.add_argument("-o", "--output", required=True, help="output video (.mp4)")
    p.add_argument(
        "--model",
        help="model folder (from keysync convert), or a preset name with --random-weights; default: the small model "
        "shipped in the package, trained on synthetic faces only",
    )
    p.add_argument("--random-weights", action="store_true", help="build the preset with random weights: tests the plumbing only, the output is noise")
    p.add_argument("--steps", type=int, default=10, help="sampling steps (>= 10; 10 is the official schedule)")
    p.add_argument("--guidance", type=parse_guidance, metavar="A,R", help=GUIDANCE_HELP + " (default: the model folder's, else 5,2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    p.add_argument("--face-index", type=int, help="the face track to dub, as listed by keysync faces (default: the largest)")
    p.add_argument("--mask", choices=["box", "heart", "mouth", "full"], help="region to regenerate (default: the one the model was trained with; box is the paper's)")
    p.add_argument("--occluders", metavar="NPY", help="per-frame occluder masks (frames x height x width, 1 = in front of the face) kept from the source")
    p.add_argument("--ref-frame", type=int, help="source frame to take the identity from (default: chosen automatically)")
    p.add_argument("--batch-size", type=int, default=2, help="clips per network call (memory vs speed; the output changes by float rounding at most)")
    p.add_argument("--long-audio", choices=LONG_AUDIO, default="trim", help="audio longer than the video: trim it, hold the last frame, or play the video back and forth")
    p.add_argument("--short-audio", choices=SHORT_AUDIO, default="pad", help="audio shorter than the video: pad with silence, or trim the video")
    p.add_argument("--color-match", action="store_true", help="match the regenerated region's colours to the original")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_dub)


def run_dub(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    import torch

    from ..errors import KeySyncError
    from ..media.writer import check_output_path
    from .dub import DubOptions, KeySyncPipeline

    for path in (args.video, args.audio):
        if not Path(path).is_file():
            raise KeySyncError(f"{path} does not exist; give the path of an existing file")
    check_output_path(args.output, inputs=(args.video, args.audio), overwrite=args.overwrite)
    if args.steps < 10:
        raise KeySyncError(f"--steps {args.steps}: the schedule needs at least 10 steps")
    if args.batch_size < 1:
        raise KeySyncError("--batch-size must be at least 1")
    if args.model is None:
        if args.random_weights:
            raise KeySyncError("--random-weights needs --model PRESET (e.g. small)")
        from ..models.model import shipped_model_dir

        args.model = shipped_model_dir()
        print("using the small model shipped with keysync (trained on synthetic faces only; for real footage "
              "convert the released KeySync weights and pass --model)", file=sys.stderr)
    pipe = KeySyncPipeline.from_pretrained(
        args.model, device=args.device, dtype=getattr(torch, args.dtype), random_weights=args.random_weights
    )
    options = DubOptions(
        steps=args.steps, guidance=args.guidance, seed=args.seed, clips_per_call=args.batch_size, mask=args.mask,
        face_index=args.face_index, ref_frame=args.ref_frame, occluders=args.occluders, long_audio=args.long_audio,
        short_audio=args.short_audio, color_match=args.color_match, progress=not args.quiet,
    )
    out = pipe(args.video, args.audio, args.output, options, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0
