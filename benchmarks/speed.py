"""How fast `keysync dub` runs, stage by stage, at 1080p (run by hand, not a test).

    python benchmarks/speed.py [--seconds 10] [--size 1920x1080] [--model-seconds-per-frame 0 0.05] [--old REV]
    python benchmarks/speed.py --encoders        # x264 presets at 1080p: speed, size and PSNR
    python benchmarks/speed.py --demo --old REV  # `keysync demo`, end to end, this tree and REV

The model stage (sampling and the VAE) is replaced by a stand-in that holds no CPU and takes a fixed time
per output frame, as a fast GPU would (0 s: the front end alone; the VAE returns zeros at once), so that on a CPU-only machine the
benchmark shows what the rest of the pipeline costs and whether it overlaps the model: decode and
tracking, crop decode + VAE encode, sampling, VAE decode, paste, and the H.264 writer. With ``--old REV``
the same run is made with the pipeline of git revision REV (checked out into a temporary worktree), in
the same session on the same clip. Writes benchmarks/results/speed.md (or speed_encoders.md, speed_demo.md).

Network evaluations per output frame for each ``--speed`` preset come from
``keysync.diffusion.speed.evaluations_per_output_frame`` (a test counts them on the networks); GPU model
timings (official size, MFU) are ``benchmarks/gpu_check.py``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
STAGES = ("tracking", "encode", "sampling", "decode", "paste", "write")
GPU_NOTE = ("Not measured on a GPU: the official-size model work (sampling + VAE) in output frames per second and its "
            "MFU at each preset, and a whole 1080p dub on a GPU box, wait for a machine with one "
            "(`benchmarks/gpu_check.py` measures the model work; gpu_check.md holds the one GPU session's numbers).")


def make_clip(path: Path, seconds: float, width: int, height: int) -> None:
    """A real face (skimage's astronaut) drifting and zooming on a grey canvas, with a tone track."""
    import cv2
    import numpy as np
    from skimage import data

    from keysync.media import VideoWriter

    photo, fps = data.astronaut(), 25
    t = np.arange(int(seconds * 16000)) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    with VideoWriter(path, width, height, rate=fps, audio=audio, crf=18, preset="ultrafast") as out:
        for k in range(int(seconds * fps)):
            phase = 2 * np.pi * k / (4 * fps)
            s = 0.83 * height / 512 * (1 + 0.05 * np.sin(phase))
            tx = width / 2 - 256 * s + 0.06 * width * np.sin(phase)
            ty = height / 2 - 256 * s + 0.04 * height * np.cos(phase)
            out.write(cv2.warpAffine(photo, np.float32([[s, 0, tx], [0, s, ty]]), (width, height), borderValue=(96, 96, 96)))


def dub_with_stand_in(clip: Path, per_frame: float) -> dict:
    """One dub of ``clip`` with the model stage replaced by a sleep of ``per_frame`` s per output frame.
    Runs with whatever ``keysync`` is importable (this tree, or an old revision's)."""
    import resource

    sys.path.append(str(ROOT))  # tests.micro (a 32 px random-weight model); keysync itself from PYTHONPATH
    import torch

    from keysync.media.writer import VideoWriter
    from keysync.pipeline.dub import DubOptions, KeySyncPipeline
    from keysync.pipeline.sampling import SourceLatents
    from tests.micro import micro_model

    class StandIn(SourceLatents):
        """``per_frame`` s per output frame. Where the pipeline streams a window's parts (``window_parts``) the
        time is spent as on a GPU at the official schedule, where every 14-frame clip costs the same: the
        window's keyframe clips' share first, then each group of ``clips_per_call`` segments' as it comes."""

        def window(self, plan, index, data, anchor, previous_keyframe, **progress):  # trees before window_parts
            window = plan.windows[index]
            time.sleep(per_frame * (window.stop_frame - window.first_frame))
            return super().window(plan, index, data, anchor, previous_keyframe, **progress)

        def window_parts(self, plan, index, data, anchor, previous_keyframe, on_stage=None):
            from keysync.pipeline.sampling import WindowLatents

            window = plan.windows[index]
            each = per_frame * (window.stop_frame - window.first_frame) / (len(window.batches) + len(window.segments))
            time.sleep(each * len(window.batches))
            latents = next(super().window_parts(plan, index, data, anchor, previous_keyframe, on_stage).parts)
            group = self.options.clips_per_call

            def parts():
                for start in range(0, len(window.segments), group):
                    clips = min(group, len(window.segments) - start)
                    time.sleep(each * clips)
                    end = start + clips
                    lo = max(window.segments[start], window.first_frame) - window.first_frame
                    hi = (window.segments[end] if end < len(window.segments) else window.stop_frame) - window.first_frame
                    yield latents[lo:hi]

            return WindowLatents(None, parts())

    writing = [0.0]
    write = VideoWriter.write

    def timed_write(self, image, time_=None):
        start = time.perf_counter()
        write(self, image, time_)
        writing[0] += time.perf_counter() - start

    VideoWriter.write = timed_write
    pipe = KeySyncPipeline(micro_model(audio_window=1))
    pipe.dubber_class = StandIn
    vae, factor = pipe.model.vae, pipe.model.vae.downsample_factor  # the VAE is model work too (a GPU's): no CPU
    channels = vae.config.latent_channels
    vae.encode_frames = lambda pixels: torch.zeros(len(pixels), channels, pixels.shape[-2] // factor, pixels.shape[-1] // factor)
    vae.decode_frames = lambda latents, chunk: torch.zeros(len(latents), 3, latents.shape[-2] * factor, latents.shape[-1] * factor)
    made = []
    run = pipe._dub

    def keep_timings(*args, **kwargs):
        made.append(run(*args, **kwargs))  # its timings fill in as the frames are made
        return made[-1]

    pipe._dub = keep_timings
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        pipe.dub_file(clip, clip, Path(folder) / "out.mp4", DubOptions(progress=False))
        wall = time.perf_counter() - start
    timings = dict(made[0].timings, write=writing[0])
    from keysync.media.video import probe_video

    return {"wall": wall, "timings": timings, "frames": probe_video(clip).frame_count,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(tree: Path, clip: Path, per_frame: float) -> dict:
    code = f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import speed; print(json.dumps(speed.dub_with_stand_in(speed.Path({str(clip)!r}), {per_frame})))"
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env, cwd=tree)
    return json.loads(out.stdout.strip().splitlines()[-1])


def overlap_report(args) -> None:
    width, height = (int(v) for v in args.size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        make_clip(clip, args.seconds, width, height)
        trees = [("this tree", ROOT)]
        if args.old:
            trees.insert(0, (f"old ({args.old})", old_tree(Path(folder) / "old", args.old)))
        try:
            for per_frame in args.model_seconds_per_frame:
                for name, tree in trees:
                    row = run_child(tree, clip, per_frame)
                    row.update(code=name, per_frame=per_frame)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            if args.old:
                remove_tree(Path(folder) / "old")
    lines = [
        f"# Dub speed by stage, {width}x{height}, {args.seconds:g} s (model stage simulated)",
        "",
        f"`python benchmarks/speed.py --seconds {args.seconds:g} --size {args.size}"
        + (f" --old {args.old}" if args.old else "") + "`: "
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU. The model stage is a stand-in "
        "that sleeps a fixed time per output frame and holds no CPU (a fast GPU; 0 s: the front end alone). "
        "Stage columns are seconds busy in that stage; `slowest` is the largest of them, and `wall / slowest` is 1 "
        "when the stages overlap perfectly, their sum over the slowest when they run one after another.",
        "",
        "| code | model s/frame | frames | " + " | ".join(STAGES) + " | sum of stages | slowest | wall | wall / slowest | output fps | peak MiB |",
        "|---|---|---|" + "---|" * len(STAGES) + "---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["timings"]
        total, slowest = sum(t.get(s, 0.0) for s in STAGES), max(t.get(s, 0.0) for s in STAGES)
        lines.append(
            f"| {r['code']} | {r['per_frame']:g} | {r['frames']} | " + " | ".join(f"{t.get(s, 0.0):.1f}" for s in STAGES)
            + f" | {total:.1f} | {slowest:.1f} | {r['wall']:.1f} | {r['wall'] / slowest:.2f} | {r['frames'] / r['wall']:.1f} | {r['peak_mib']:.0f} |"
        )
    lines += ["", f"Load average over the last minute when the run ended: {os.getloadavg()[0]:.1f} (2 cores).", "", GPU_NOTE, ""]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.out).write_text("\n".join(lines))
    print("\n".join(lines))


def encoder_report(args) -> None:
    """libx264 presets on the same 1080p frames: encode fps, file size and PSNR against the frames."""
    import av
    import numpy as np

    from keysync.media import VideoWriter
    from keysync.media.video import read_frames

    width, height = (int(v) for v in args.size.split("x"))
    lines = [f"# H.264 presets at {width}x{height} ({os.cpu_count()} cores)", "",
             "| preset | crf | encode fps | size (KiB) | PSNR vs the frames (dB) |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        make_clip(clip, args.seconds, width, height)
        frames = [f.image for f in read_frames(clip)]
        for preset, crf in args.encoder_settings:
            out = Path(folder) / f"{preset}-{crf}.mp4"
            start = time.perf_counter()
            with VideoWriter(out, width, height, rate=25, crf=int(crf), preset=preset) as writer:
                for image in frames:
                    writer.write(image)
            seconds = time.perf_counter() - start
            mse = np.mean([np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2) for a, b in zip(frames, (f.image for f in read_frames(out)))])
            lines.append(f"| {preset} | {crf} | {len(frames) / seconds:.1f} | {out.stat().st_size / 1024:.0f} | {10 * np.log10(255**2 / mse):.2f} |")
            print(lines[-1], flush=True)
    lines += ["", f"PyAV {av.__version__}; load average over the last minute at the end: {os.getloadavg()[0]:.1f}.", ""]
    (RESULTS / "speed_encoders.md").write_text("\n".join(lines))


def old_tree(folder: Path, rev: str):
    """A worktree of ``rev`` in ``folder`` (removed by the caller with ``remove_tree``)."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), rev], check=True, capture_output=True)
    return folder


def remove_tree(folder: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)], check=True)


def demo_report(args) -> None:
    """`keysync demo` end to end (a new process each: imports, rendering, dub, scoring), alternating this
    tree and ``--old`` so that both see the same machine load."""
    import statistics

    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        trees = [("this tree", ROOT)] + ([(f"old ({args.old})", old_tree(Path(folder) / "old", args.old))] if args.old else [])
        try:
            for run in range(args.repeats):
                for name, tree in trees:
                    out = Path(folder) / f"out-{run}-{len(times.get(name, []))}-{name[:3]}"
                    out.mkdir()
                    start = time.perf_counter()
                    subprocess.run([sys.executable, "-c", "import sys; from keysync.cli import main; sys.exit(main())",
                                    "demo", "--out-dir", str(out), "--quiet"], check=True, capture_output=True,
                                   env=dict(os.environ, PYTHONPATH=str(tree)), cwd=folder)
                    times.setdefault(name, []).append(time.perf_counter() - start)
                    print(name, f"{times[name][-1]:.1f} s", flush=True)
        finally:
            if args.old:
                remove_tree(Path(folder) / "old")
    lines = [f"# `keysync demo` end to end ({os.cpu_count()} CPU cores, no GPU)", "",
             "`python benchmarks/speed.py --demo" + (f" --old {args.old}" if args.old else "") + f" --repeats {args.repeats}`: "
             "each run a new process with that tree's defaults (the old tree's demo samples at `quality`, this "
             "tree's at `fast`), the shipped small model, runs alternating between the trees.", "",
             "| code | runs (s) | median (s) |", "|---|---|---|"]
    for name, values in times.items():
        lines.append(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | {statistics.median(values):.1f} |")
    if args.old:
        new, old = (statistics.median(v) for v in times.values())
        lines += ["", f"Speed-up: {old / new:.2f}x."]
    lines += ["", f"Load average over the last minute when the run ended: {os.getloadavg()[0]:.1f}.", ""]
    (RESULTS / "speed_demo.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--model-seconds-per-frame", type=float, nargs="+", default=[0.0, 0.05])
    parser.add_argument("--old", metavar="REV", help="also run the pipeline of this git revision, in the same session")
    parser.add_argument("--encoders", action="store_true", help="compare x264 presets instead")
    parser.add_argument("--demo", action="store_true", help="time `keysync demo` end to end instead")
    parser.add_argument("--repeats", type=int, default=2, help="runs per tree with --demo")
    parser.add_argument("--out", default="speed.md", help="results file name in benchmarks/results")
    parser.add_argument("--encoder-settings", nargs="+", type=lambda s: s.split(":"), metavar="PRESET:CRF",
                        default=[["medium", "18"], ["veryfast", "18"], ["superfast", "18"], ["ultrafast", "18"], ["veryfast", "17"], ["superfast", "16"]])
    args = parser.parse_args()
    demo_report(args) if args.demo else encoder_report(args) if args.encoders else overlap_report(args)


if __name__ == "__main__":
    main()
