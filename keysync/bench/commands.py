"""``keysync bench``: score a lip-sync method on held-out synthetic clips."""

from __future__ import annotations

import argparse


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
    p.add_argument("--method", default="copy", help="copy, oracle, another registered name, or package.module:factory")
    p.add_argument("--model", help="with --method keysync: the model folder to evaluate")
    p.add_argument("--out", default=None, help="results folder (default: keysync-bench/METHOD)")
    p.add_argument("--data", default=None, help="use the test split of this `keysync synth` dataset instead of rendering one")
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
    p.add_argument("--json", metavar="FILE", help="also write {mode: {metric: value}} to FILE")
    p.add_argument("--overwrite", action="store_true", help="replace existing results")
    p.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from ..errors import KeySyncError
    from .methods import get_method
    from .runner import FULL_CLIPS, QUICK_CLIPS, benchmark_data, format_table, run_benchmark, speech_clips, write_results

    start = time.perf_counter()
    if args.model and args.method in ("copy", "oracle"):
        raise KeySyncError("--model only applies to --method keysync (or a method of your own)")
    method = get_method(args.method, **({"model": args.model} if args.model else {}))
    out = Path(args.out or f"keysync-bench/{method.name}")
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
        records = speech_clips(Path(args.data), n_clips)
    else:
        records = benchmark_data(out / "data", n_clips, args.seed, args.size)
    backend = None
    if args.landmarks:
        from ..faces.backends import load_backend

        backend = load_backend(args.landmarks)
    result = run_benchmark(method, records, out, seed=args.seed, landmark_backend=backend)
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
