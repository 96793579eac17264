"""``keysync dub VIDEO AUDIO -o OUT.mp4``: the main job."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..constants import DEEP_CACHE_HELP, DTYPES, ENCODERS, FP8_HELP, FP8_MODES, SPEED_HELP, SPEEDS, STEPS_HELP
from .plan import LONG_AUDIO, SHORT_AUDIO, check_deep_cache, check_steps

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
        help="model folder, hub id, or small (the demo model shipped in the package, trained on synthetic faces only); "
        "default: the released KeySync weights, fetched and converted on first use (keysync download); with "
        "--random-weights, a preset name",
    )
    p.add_argument("--random-weights", action="store_true", help="build the preset with random weights: tests the plumbing only, the output is noise")
    p.add_argument("--speed", choices=SPEEDS, default="quality", help=SPEED_HELP)
    p.add_argument("--steps", type=int, help=STEPS_HELP)
    p.add_argument("--deep-cache", type=int, default=1, metavar="N", help=DEEP_CACHE_HELP)
    p.add_argument("--guidance", type=parse_guidance, metavar="A,R", help=GUIDANCE_HELP + " (default: the model folder's, else 5,2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--fp8", choices=FP8_MODES, help=FP8_HELP)
    p.add_argument("--compile", action="store_true",
                   help="compile the networks' repeated blocks with torch.compile: the dub waits for the compiler first "
                   "(minutes on a CPU), so it pays on long videos; the output is the same to float rounding")
    p.add_argument("--face-index", type=int, help="the face track to dub, as listed by keysync faces (default: the largest)")
    p.add_argument("--mask", choices=["box", "heart", "mouth", "full"], help="region to regenerate (default: the one the model was trained with; box is the paper's)")
    p.add_argument("--occluders", metavar="NPY", help="per-frame occluder masks (frames x height x width, 1 = in front of the face) kept from the source")
    p.add_argument("--occluder-point", action="append", default=[], metavar="X,Y",
                   help="instead of --occluders: a pixel on an occluder (repeatable), tracked by SAM 2 as keysync occluders does")
    p.add_argument("--occluder-negative", action="append", default=[], metavar="X,Y", help="a pixel that is not the occluder (repeatable)")
    p.add_argument("--occluder-frame", type=int, default=0, help="the frame the occluder points are on (default 0)")
    p.add_argument("--segmenter", metavar="DIR_OR_ID", help="SAM 2 model for --occluder-point: a local folder or a hub id (default facebook/sam2.1-hiera-tiny)")
    p.add_argument("--ref-frame", type=int, help="source frame to take the identity from (default: chosen automatically)")
    p.add_argument("--batch-size", type=int, default=2, help="clips per network call (memory vs speed; the output changes by float rounding at most)")
    p.add_argument("--long-audio", choices=LONG_AUDIO, default="trim", help="audio longer than the video: trim it, hold the last frame, or play the video back and forth")
    p.add_argument("--short-audio", choices=SHORT_AUDIO, default="pad", help="audio shorter than the video: pad with silence, or trim the video")
    p.add_argument("--paste", choices=["jaw", "mask"], default="jaw",
                   help="what of the regenerated region goes back into the frame: jaw (default) stops below the jaw's lowest "
                   "reach, keeping the source's neck and background; mask takes all of it (to the crop's bottom edge)")
    p.add_argument("--color-match", action="store_true", help="match the regenerated region's colours to the original")
    p.add_argument("--crf", type=int, default=17, help="the output's H.264 quality: 0 lossless, 17 (default) visually lossless, 23 x264's default, up to 51")
    p.add_argument("--encoder", choices=ENCODERS, default="auto",
                   help="H.264 encoder: auto (default) uses the GPU's (h264_nvenc) where an NVIDIA GPU and driver are present, else libx264")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bars; only warnings and errors")
    p.set_defaults(func=run_dub)


def run_dub(args: argparse.Namespace) -> int:
    import tempfile
    from contextlib import nullcontext

    from ..media.writer import check_output_path

    check_dub_request(args)  # before torch is imported: a mistake is reported in a fraction of a second
    check_output_path(args.output, inputs=(args.video, args.audio), overwrite=args.overwrite)
    clicks = check_occluder_clicks(args)
    check_device(args.device)
    if not args.random_weights:
        from ..models.download import resolve_model

        args.model = resolve_model(args.model)  # the released weights' one-line error comes before any work

    import torch

    from ..parallel import exempt_loaded_objects
    from .dub import DubOptions, KeySyncPipeline

    if args.fp8 == "on":
        from ..models.fp8 import check_fp8_device

        check_fp8_device(torch.device(args.device), getattr(torch, args.dtype))  # before the model loads

    # tracked occluder masks live next to the output only while it is made
    scratch = tempfile.TemporaryDirectory(dir=Path(args.output).resolve().parent, prefix=".keysync-occluders.") if clicks else nullcontext()
    with scratch as tmp:
        occluders = _track_occluders(args, clicks, Path(tmp) / "occluders.npy") if clicks else args.occluders
        pipe = KeySyncPipeline.from_pretrained(
            args.model, device=args.device, dtype=getattr(torch, args.dtype), random_weights=args.random_weights
        )
        if args.fp8:
            pipe.fp8(args.fp8)
        if args.compile:
            pipe.compile()
        exempt_loaded_objects()
        options = DubOptions(
            speed=args.speed, steps=args.steps, deep_cache=args.deep_cache, guidance=args.guidance, seed=args.seed, clips_per_call=args.batch_size, mask=args.mask,
            face_index=args.face_index, ref_frame=args.ref_frame, occluders=occluders, long_audio=args.long_audio,
            short_audio=args.short_audio, color_match=args.color_match, paste=args.paste, crf=args.crf, encoder=args.encoder,
            progress=not args.quiet,
        )
        out = pipe.dub_file(args.video, args.audio, args.output, options, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


def check_dub_request(args: argparse.Namespace) -> None:
    """Refuse bad numbers, a wrong --model and unreadable inputs before any slow import or work."""
    from ..errors import KeySyncError
    from ..media.video import open_media, probe_video
    from ..media.writer import choose_encoder
    from ..models.presets import PRESETS

    if args.steps is not None:
        check_steps(args.steps)
    check_deep_cache(args.deep_cache)
    if not 0 <= args.crf <= 51:
        raise KeySyncError(f"--crf {args.crf}: give 0 (lossless) to 51")
    choose_encoder(args.encoder, args.crf)  # h264_nvenc asked for where it does not open: say so now
    if args.batch_size < 1:
        raise KeySyncError(f"--batch-size {args.batch_size}: give at least 1 clip per network call")
    if abs(args.seed) >= 2**32:
        raise KeySyncError(f"--seed {args.seed} is too large; give a number below 2**32")
    for flag, value in (("--face-index", args.face_index), ("--ref-frame", args.ref_frame)):
        if value is not None and value < 0:
            raise KeySyncError(f"{flag} {value} is negative; give an index from 0 (see keysync faces)")
    if args.model is None and args.random_weights:
        raise KeySyncError("--random-weights needs --model PRESET (e.g. small)")
    if args.model is not None:
        if args.random_weights and args.model not in PRESETS:
            raise KeySyncError(f"--random-weights builds a preset; choose --model {' / '.join(PRESETS)}, or drop --random-weights to load a model folder")
        if not args.random_weights and args.model in PRESETS and args.model != "small" and not Path(args.model).exists():
            raise KeySyncError(f"--model {args.model} is a preset, which has no trained weights; give a model folder, or add --random-weights to test the plumbing")
    for path in (args.video, args.audio, args.occluders):
        if path is not None and not Path(path).is_file():
            raise KeySyncError(f"{path} does not exist; give the path of an existing file")
    info = probe_video(args.video)  # a file that is not a video fails here, not after the model has loaded
    with open_media(args.audio) as media:
        if not media.streams.audio:
            raise KeySyncError(f"{args.audio} has no audio stream; give a file that contains speech")
    if args.ref_frame is not None and 0 < info.frame_count <= args.ref_frame:
        raise KeySyncError(f"--ref-frame {args.ref_frame} is not a frame of the video (its last is {info.frame_count - 1})")


def check_device(name: str) -> None:
    """Refuse a torch device that is not one, or not on this machine, in one line (not torch's traceback)."""
    import torch

    from ..errors import KeySyncError

    try:
        device = torch.device(name)
    except RuntimeError:
        raise KeySyncError(f"--device {name!r} is not a device; give cpu, cuda or cuda:N") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise KeySyncError(f"--device {name}: no such CUDA GPU here ({torch.cuda.device_count()} found); use --device cpu")


def check_occluder_clicks(args: argparse.Namespace):
    """The clicks of --occluder-point/--occluder-negative/--occluder-frame, refused before any work if bad;
    None when there are none."""
    from ..errors import KeySyncError
    from ..faces.commands import parse_xy
    from ..faces.occluders import Clicks, check_clicks
    from ..media.video import probe_video

    if not args.occluder_point:
        if args.occluder_negative or args.segmenter:
            raise KeySyncError("--occluder-negative and --segmenter need --occluder-point X,Y on the occluder")
        return None
    if args.occluders:
        raise KeySyncError("give either --occluders NPY or --occluder-point clicks, not both")
    clicks = Clicks(args.occluder_frame, [parse_xy(p, "--occluder-point") for p in args.occluder_point],
                    [parse_xy(p, "--occluder-negative") for p in args.occluder_negative])
    info = probe_video(args.video)
    if clicks.frame < 0 or 0 < info.frame_count <= clicks.frame:
        last = f" (its last is {info.frame_count - 1})" if info.frame_count else ""
        raise KeySyncError(f"--occluder-frame {clicks.frame} is not a frame of the video{last}; give the index of the frame the points are on")
    check_clicks(clicks, info.width, info.height)
    return clicks


def _track_occluders(args: argparse.Namespace, clicks, masks: Path) -> str:
    """Track the clicked occluder into ``masks`` with SAM 2, as `keysync occluders` does."""
    from ..faces.occluders import DEFAULT_SEGMENTER, load_segmenter, track_occluders

    segmenter = load_segmenter(args.segmenter or DEFAULT_SEGMENTER, args.device)
    return str(track_occluders(args.video, masks, clicks, segmenter, progress=not args.quiet))
