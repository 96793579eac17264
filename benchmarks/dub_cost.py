"""Dubbing cost: UNet frame-evaluations per output frame, per-stage wall time, and peak memory.

    python benchmarks/dub_cost.py evals --seconds 45            # count network work of the official schedule
    python benchmarks/dub_cost.py run --seconds 10 --seconds 60  # wall time per stage + peak RSS (one process each)

``evals`` replaces the network by a counter (same shapes, no maths), so it is exact and instant for any
preset. ``run`` dubs a synthetic clip (a real face photo with head motion) with a small random-weight
model in a fresh process per length, and reports wall time per stage and the process's peak RSS.
Results are appended to benchmarks/results/dub_cost.md.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "dub_cost.md"


def count_evals(seconds: float, steps: int) -> dict:
    from keysync.models import KeySyncModel
    from keysync.pipeline.plan import plan_frames
    from keysync.pipeline.sampling import FrameData, LatentDubber, SamplingOptions

    model = KeySyncModel.from_preset("official", device="meta")
    frames = {"keyframe": 0, "interpolation": 0}

    def counter(kind):
        def forward(x, c_noise, concat, context):
            frames[kind] += x.shape[0]
            return torch.empty_like(x)

        return forward

    model.keyframe.forward = counter("keyframe")
    model.interpolation.forward = counter("interpolation")
    model.keyframe.embed_audio = model.interpolation.embed_audio = lambda f: torch.empty(*f.shape[:2], 1024, device="meta")
    length = round(seconds * 25)
    plan = plan_frames(length, batches_per_window=2)
    n = plan.padded_frames
    data = FrameData(0, *(torch.empty(n, *s, device="meta") for s in [(4, 64, 64), (1, 64, 64), (2, 768), (2, 768)]))
    anchor = FrameData(0, data.latents[:1], data.masks[:1], data.keyframe_audio[:1], data.interpolation_audio[:1])
    dubber = LatentDubber(model, SamplingOptions(steps=steps, clips_per_call=64))
    previous = None
    for i in range(len(plan.windows)):
        _, previous = dubber.window(plan, i, data, anchor, previous)
    per = {k: v / length for k, v in frames.items()}
    return {"seconds": seconds, "frames": length, "steps": steps, **{f"{k}_per_frame": round(v, 2) for k, v in per.items()},
            "total_per_frame": round(sum(per.values()), 2)}


def run_one(seconds: float, work: Path) -> dict:
    sys.path.insert(0, str(ROOT))

    from keysync.pipeline.dub import DubOptions, KeySyncPipeline
    from tests.faces_media_clips import astronaut, moving_frames
    from tests.micro import micro_model
    from tests.test_pipeline_dub import tone, write_wav
    from keysync.media.writer import VideoWriter

    work.mkdir(parents=True, exist_ok=True)
    count = round(seconds * 25)
    video = work / f"in_{seconds:g}.mp4"
    with VideoWriter(video, 640, 360, rate=25, preset="ultrafast", overwrite=True) as w:  # streamed, not held
        for image in moving_frames(astronaut(), 640, 360, count, photo_height=320):
            w.write(image)
    audio = write_wav(work / f"speech_{seconds:g}.mp4", tone(seconds)) if not (work / f"speech_{seconds:g}.mp4").exists() else work / f"speech_{seconds:g}.mp4"
    pipe = KeySyncPipeline(micro_model())
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    profile = cProfile.Profile()
    start = time.time()
    profile.runcall(pipe.dub_file, video, audio, work / "out.mp4", DubOptions(progress=False), overwrite=True)
    wall = time.time() - start
    stats = pstats.Stats(profile).stats
    stage = {}
    for (file, _, name), (_, _, _, cum, _) in stats.items():
        for label, (f, n) in {"tracking": ("tracking.py", "track_faces"), "keyframes": ("sampling.py", "_keyframes"),
                              "interpolation": ("sampling.py", "_interpolate"), "vae_decode": ("vae.py", "decode_frames"),
                              "vae_encode": ("vae.py", "encode_frames"), "paste": ("paste.py", "paste_back"),
                              "encode_video": ("writer.py", "write")}.items():
            if file.endswith(f) and name == n:
                stage[label] = round(stage.get(label, 0) + cum, 1)
    return {"seconds": seconds, "wall_s": round(wall, 1), "stages_s": stage,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rss_before_mib": round(rss_before / 1024)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["evals", "run", "_one"])
    parser.add_argument("--seconds", type=float, action="append")
    parser.add_argument("--steps", type=int, default=11, help="network calls per clip per stage (11: the official schedule)")
    parser.add_argument("--work", default="/tmp/keysync_dub_cost")
    args = parser.parse_args()
    seconds = args.seconds or ([45.0] if args.mode == "evals" else [10.0, 60.0])
    if args.mode == "_one":
        print(json.dumps(run_one(seconds[0], Path(args.work))))
        return
    rows = []
    for s in seconds:
        if args.mode == "evals":
            rows.append(count_evals(s, args.steps))
        else:
            out = subprocess.run([sys.executable, __file__, "_one", "--seconds", str(s), "--work", args.work],
                                 check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(f"\n## {args.mode} ({time.strftime('%Y-%m-%d')}, {torch.get_num_threads()} threads, CPU)\n\n")
        for row in rows:
            f.write(f"- `{json.dumps(row)}`\n")


if __name__ == "__main__":
    main()
