"""``KeySyncPipeline.compile`` (``keysync dub --compile``) against the plain networks, in one process (run by
hand, not a test): the dub's wall time plain, compiled the first time (the compiler included) and compiled
again, and how far the compiled output is from the plain one.

    python benchmarks/compile_check.py [--model micro|small] [--device cpu|cuda] [--steps 3] [--backend inductor]

``micro`` is the test suite's random-weight 32 px model (plumbing: timings only), ``small`` the shipped model.
Writes benchmarks/results/compile.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["micro", "small"], default="micro")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--mode", help="torch.compile's mode (e.g. max-autotune on a GPU)")
    args = parser.parse_args()

    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from keysync.pipeline.dub import KeySyncPipeline
    from tests.faces_media_clips import astronaut, moving_frames, tone
    from tests.micro import micro_model

    if args.model == "micro":
        pipe, size = KeySyncPipeline(micro_model(audio_window=1), device=args.device), (192, 144)
    else:
        pipe, size = KeySyncPipeline.from_pretrained("small", device=args.device), (320, 240)
    frames = np.stack(list(moving_frames(astronaut(), *size, 30, photo_height=size[1] - 14)))

    def dub() -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        out = np.stack(list(pipe(frames, tone(1.2), fps=25, progress=False, steps=args.steps).frames))
        return out, time.perf_counter() - start

    plain, plain_s = dub()
    pipe.compile(backend=args.backend, mode=args.mode)
    first, first_s = dub()
    again, again_s = dub()
    diff = np.abs(first.astype(int) - plain)
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    lines = [
        "# Compiled networks against plain ones",
        "",
        f"`python benchmarks/compile_check.py --model {args.model} --device {args.device} --steps {args.steps} --backend {args.backend}"
        + (f" --mode {args.mode}" if args.mode else "") + f"`: torch {torch.__version__}, {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}), device {args.device}; a 1.2 s clip ({len(frames)} frames, {size[0]}x{size[1]}), "
        f"{args.steps} steps per stage, one process.",
        "",
        "| dub | wall (s) |",
        "|---|---|",
        f"| plain networks | {plain_s:.1f} |",
        f"| compiled, first dub (compiler included) | {first_s:.1f} |",
        f"| compiled, second dub | {again_s:.1f} |",
        "",
        f"Compiled output against plain: largest difference {diff.max()} level(s), on {int((diff > 0).sum())} of {diff.size} "
        f"values; second compiled dub against the first: largest difference {np.abs(again.astype(int) - first).max()} "
        f"(dynamo recompiles a block with a dynamic dimension once it has seen that dimension change, so the first dub "
        f"runs partly on other kernels). Graphs compiled: {graphs}.",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compile.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
