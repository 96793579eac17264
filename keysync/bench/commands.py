"""``keysync bench``: score a lip-sync method on held-out synthetic clips."""

from __future__ import annotations

import argparse

from ..constants import DEEP_CACHE_HELP, DTYPES, FP8_HELP, FP8_MODES, SPEED_HELP, SPEEDS, STEPS_HELP
from ..pipeline.commands import GUIDANCE_HELP, parse_guidance
from ..pipeline.plan import check_deep_cache, check_steps


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="score a lip-sync method (LipLeak, sync, cross-leak, identity, stability, occluder) on synthetic clips",
        description=(
            "Run a method on held-out clips of the synthetic world in reconstruction, cross-audio and silent-audio "
            "modes; print a table and write per_clip.csv, summary.csv and plots.png. Built-in methods: copy "
            "(returns the source) and oracle (re-renders the source with the right mouth)."
        ),
    )
    p.add_argument("--method", default="copy", help="copy, oracle, keysync, autoencode (keysync's crop and VAE without diffusion: its ceiling), another registered name, or package.module:factory")
    p.add_argument("--model", help="with --method keysync or autoencode: the model folder to evaluate (default: the shipped small model)")
    p.add_argument("--out", default=None, help="results folder (default: keysync-bench/METHOD)")
    p.add_argument("--data", default=None, help="use the test split of this `keysync synth` dataset instead of rendering one")
    p.add_argument("--split", default="test", choices=["test", "val"], help="with --data: the split to score (val to tune settings on, test to report)")
    p.add_argument("--guidance", type=parse_guidance, metavar="A,R", help="with --method keysync: " + GUIDANCE_HELP + " (default: the model folder's)")
    p.add_argument("--speed", choices=SPEEDS, help=f"with --method keysync: {SPEED_HELP}")
    p.add_argument("--steps", type=int, help=f"with --method keysync: {STEPS_HELP}")
    p.add_argument("--deep-cache", type=int, metavar="N", help=f"with --method keysync: {DEEP_CACHE_HELP}")
    p.add_argument("--fp8", choices=FP8_MODES, help=f"with --method keysync (on the CPU, so emulate): {FP8_HELP}")
    p.add_argument("--dtype", choices=DTYPES, help="with --method keysync: what the networks compute in (default float32)")
    p.add_argument("--clips", type=int, default=None, help="source clips (default 20; 3 with --quick)")
    p.add_argument("--quick", action="store_true", help="a few clips: a fast smoke run")
    p.add_argument("--seed", type=int, default=0, help="seed of the rendered test clips (default 0)")
    p.add_argument("--size", type=int, default=256, help="frame size of rendered test clips (default 256)")
    p.add_argument(
        "--landmarks",
        metavar="BACKEND",
        help="detect landmarks with this face back end (mediapipe, dlib, face-alignment) for the landmark-only "
        "metrics; default: the exact landmarks copy and oracle return (other methods then get none)",
    )
    p.add_argument("--modes", default="reconstruction,cross,silent", help="comma-separated subset of reconstruction,cross,silent")
    p.add_argument("--json", metavar="FILE", help="also write {mode: {metric: value}} to FILE")
    p.add_argument("--overwrite", action="store_true", help="replace existing results")
    p.set_defaults(func=run_bench)

    d = subparsers.add_parser(
        "demo",
        help="dub a held-out synthetic speaker with the shipped small model; write the result and a side-by-side video",
        description=(
            "Render a synthetic speaker no model saw in training and another clip's speech, dub the first with the "
            "second using the small model shipped in the package (no GPU, no download), write keysync-demo.mp4 "
            "and keysync-demo-side-by-side.mp4 (source | dubbed | target), and print that clip's benchmark numbers."
        ),
    )
    d.add_argument("--out-dir", default=".", help="where to write the two videos (default: the current folder)")
    d.add_argument("--model", help="a model folder instead of the shipped small model")
    d.add_argument("--seed", type=int, default=0, help="which held-out speaker and sentence (default 0)")
    d.add_argument("--speed", choices=SPEEDS, default="fast",
                   help="as keysync dub's (default here: fast, a third of quality's network evaluations; see docs/dubbing.md#speed)")
    d.add_argument("--steps", type=int, help=STEPS_HELP)
    d.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="what the networks compute in (default auto: bfloat16 on a CPU that multiplies it in hardware, "
                        "AVX512-BF16 or AMX, where the dub runs about 1.4x faster; else float32)")
    d.add_argument("--overwrite", action="store_true", help="replace the videos of an earlier demo")
    d.add_argument("--quiet", action="store_true", help="no progress bars; only warnings and errors")
    d.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from ..errors import KeySyncError
    from .demo import run_demo as demo

    out_dir = Path(args.out_dir)
    if not out_dir.is_dir():
        raise KeySyncError(f"--out-dir {out_dir} is not a folder; create it first")
    if args.steps is not None:
        check_steps(args.steps)
    start = time.perf_counter()
    result = demo(out_dir, args.model, args.seed, args.speed, args.steps, args.overwrite, progress=not args.quiet, dtype=args.dtype)
    m = result["metrics"]
    print(f"dubbed:       {result['dubbed']}")
    print(f"side by side: {result['side_by_side']}  (source | dubbed | target)")
    print(
        f"this clip, new speech: sync {m['sync_corr']:.2f} (correlation of the mouth read from the video with the "
        f"mouth the new speech asks for; 1 is perfect), cross-leak {m['cross_leak']:.2f} (correlation with the "
        f"original mouth; {m['cross_leak_partial']:.2f} beyond what the new speech explains, 0 is none), identity "
        f"SSIM outside the mouth box {m['ssim_outside']:.3f}, upper face {m['ssim_upper']:.3f}"
    )
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from ..errors import KeySyncError
    from ..media.writer import check_output_path
    from ..parallel import exempt_loaded_objects
    from .methods import get_method
    from .runner import FULL_CLIPS, MODES, QUICK_CLIPS, benchmark_data, format_table, run_benchmark, speech_clips, write_results

    start = time.perf_counter()
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if not modes or set(modes) - set(MODES):
        raise KeySyncError(f"--modes {args.modes}: choose from {', '.join(MODES)}")
    if args.model and args.method in ("copy", "oracle"):
        raise KeySyncError("--model only applies to --method keysync (or a method of your own)")
    if args.guidance and args.method != "keysync":
        raise KeySyncError("--guidance only applies to --method keysync")
    for flag, value in (("--speed", args.speed), ("--steps", args.steps), ("--deep-cache", args.deep_cache), ("--fp8", args.fp8),
                        ("--dtype", args.dtype)):
        if value is not None and args.method != "keysync":
            raise KeySyncError(f"{flag} only applies to --method keysync")
    if args.steps is not None:
        check_steps(args.steps)
    if args.split != "test" and not args.data:
        raise KeySyncError("--split needs --data (a `keysync synth` dataset); rendered benchmark clips are all test clips")
    if args.deep_cache is not None:
        check_deep_cache(args.deep_cache)
    options = {k: v for k, v in (("model", args.model), ("guidance", args.guidance), ("speed", args.speed), ("steps", args.steps),
                                 ("deep_cache", args.deep_cache), ("fp8", args.fp8), ("dtype", args.dtype)) if v}
    method = get_method(args.method, **options)
    exempt_loaded_objects()
    out = check_output_path(args.out or f"keysync-bench/{method.name}", overwrite=True, folder=True)  # may hold the clips of an earlier run
    json_path = Path(args.json) if args.json else None
    for path in [out / "summary.csv", json_path]:
        if path is not None and path.exists() and not args.overwrite:
            raise KeySyncError(f"{path} already exists; choose another --out/--json or pass --overwrite")
    n_clips = args.clips or (QUICK_CLIPS if args.quick else FULL_CLIPS)
    if n_clips < 2:
        raise KeySyncError("--clips must be at least 2 (cross-audio mode pairs clips)")
    if args.size < 64 or args.size % 2:
        raise KeySyncError("--size must be an even number of pixels, at least 64")
    if args.data:
        records = speech_clips(Path(args.data), n_clips, args.split)
    else:
        records = benchmark_data(out / "data", n_clips, args.seed, args.size)
    backend = None
    if args.landmarks:
        from ..faces.backends import load_backend

        backend = load_backend(args.landmarks)
    result = run_benchmark(method, records, out, seed=args.seed, modes=modes, landmark_backend=backend)
    summary = result.summary
    written = write_results(out, method.name, result)
    if json_path is not None:
        from ..synth.clipio import write_text

        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_text(json_path, json.dumps(summary, indent=2) + "\n")
        written.append(json_path)
    print(format_table(method.name, summary))
    print(f"{len(records)} clips x {len(summary)} modes in {time.perf_counter() - start:.1f} s; wrote " + ", ".join(map(str, written)))
    return 0
