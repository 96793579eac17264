"""How fast `keysync dub` runs, stage by stage (run by hand, not a test).

    python benchmarks/speed.py [--seconds 10] [--size 1920x1080] [--model-seconds-per-frame 0 0.05] [--old REV] [--repeats N]
    python benchmarks/speed.py --model small [--device cpu] [--speed quality fast] [--seconds 10] [--size 1920x1080]
    python benchmarks/speed.py --model official --random-weights --device cuda --dtype float16 --size 512x512
    python benchmarks/speed.py --encoders        # x264 presets at 1080p: speed, size and PSNR
    python benchmarks/speed.py --demo --old REV  # `keysync demo`, end to end, this tree and REV

Without ``--model`` the model stage (sampling and the VAE) is replaced by a stand-in that holds no CPU and
takes a fixed time per output frame, as a fast GPU would (0 s: the front end alone; the VAE returns zeros at
once), so that on a CPU-only machine the benchmark shows what the rest of the pipeline costs and whether it
overlaps the model: decode and tracking, crop decode + VAE encode, sampling, VAE decode, paste, and the
H.264 writer. With ``--old REV`` the same run is made with the pipeline of git revision REV (checked out into
a temporary worktree), in the same session on the same clip. Writes benchmarks/results/speed.md.

With ``--model`` the real networks run on ``--device``, per ``--speed`` preset: first the model work alone
(VAE encode, sampling, VAE decode on random inputs of the clip's shapes, clocks synced with the device),
with the network evaluations per output frame counted, the FLOPs counted on a meta copy of the model, TFLOP/s
and MFU; then a whole dub of a generated clip: seconds per stage, output fps, the GPU's busy share, peak host
and GPU memory. Writes benchmarks/results/speed_model.md (``--out`` names another file).

On the lent GPU machines (Python 3.12, no PyAV, diffusers or mediapipe, no network) carry the cp312 wheels of
av and diffusers (about 42 MB); mediapipe does not fit beside them in a carry, so the clip is made and
tracked here and its track saved (``--clip``/``--location`` use it there). ``--parts model`` needs no clip
(keysync still imports PyAV). Here, in the repository's root:

    echo /.gpu/ >> .git/info/exclude; mkdir -p .gpu
    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 -d .gpu/whl "av==$(python -c 'import av; print(av.__version__)')" \
        "diffusers==$(python -c 'import diffusers; print(diffusers.__version__)')"
    python -c "import sys; sys.path.insert(0, 'benchmarks'); import speed; speed.make_clip(speed.Path('.gpu/clip.mp4'), 10, 1920, 1080)"
    python -c "from keysync.faces.backends import load_backend; from keysync.faces.frontend import locate_face, save_location; \
        from keysync.media.source import VideoSource; save_location(locate_face(VideoSource('.gpu/clip.mp4').frames(), \
        load_backend(), 512, 'head'), '.gpu/location.npz')"

and on the device (``run`` with ``carry: [".gpu"]``), about 6 minutes by estimate (not yet run):

    pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
    python benchmarks/speed.py --model official --random-weights --device cuda --dtype float16 --seconds 10 \
        --size 512x512 --speed quality fast fastest quality@2 fast@2 --parts model --out $OUT/speed_model_gpu.md
    python benchmarks/speed.py --model official --random-weights --device cuda --dtype float16 --speed fast \
        --clip .gpu/clip.mp4 --location .gpu/location.npz --parts dub --out $OUT/speed_dub_gpu.md
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
            "(`benchmarks/speed.py --model official --random-weights --device cuda --dtype float16` measures both; "
            "speed_official_flops.md holds the FLOPs they will be divided by; gpu_check.md the one GPU session's numbers).")


def this_machine() -> str:
    """The CPU in a few words: the core count, the model name and the vector kernels torch picks (timings
    differ between AVX2 and AVX-512 machines)."""
    import torch

    name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")), platform.processor() or platform.machine()) if Path("/proc/cpuinfo").exists() else platform.machine()
    return f"{os.cpu_count()} CPU cores ({name}, torch's {torch.backends.cpu.get_cpu_capability()} kernels)"


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

    from keysync.pipeline.dub import DubOptions, KeySyncPipeline
    from keysync.pipeline.sampling import SourceLatents
    from tests.micro import micro_model

    class StandIn(SourceLatents):
        """``per_frame`` s per output frame. Where the pipeline streams a window's parts (``window_parts``) the
        time is spent as on a GPU at the official schedule, where every 14-frame clip costs the same: the
        window's keyframe clips' share first, then each group of segments' as it comes."""

        def window(self, plan, index, data, anchor, previous_keyframe, **progress):  # trees before window_parts
            window = plan.windows[index]
            time.sleep(per_frame * (window.stop_frame - window.first_frame))
            return super().window(plan, index, data, anchor, previous_keyframe, **progress)

        def clip_seconds(self, window) -> float:
            return per_frame * (window.stop_frame - window.first_frame) / (len(window.batches) + len(window.segments))

        def sample_keyframes(self, plan, index, data, anchor):
            window = plan.windows[index]
            time.sleep(self.clip_seconds(window) * len(window.batches))
            return super().sample_keyframes(plan, index, data, anchor)

        def interpolate(self, plan, index, data, keyframes, previous_keyframe, on_stage=None):
            latents = next(super().interpolate(plan, index, data, keyframes, previous_keyframe, on_stage).parts)
            return self.streamed(plan.windows[index], latents, last=index == len(plan.windows) - 1)

        def window_parts(self, plan, index, data, anchor, previous_keyframe, on_stage=None):  # trees before sample_keyframes
            if hasattr(SourceLatents, "sample_keyframes"):
                return super().window_parts(plan, index, data, anchor, previous_keyframe, on_stage)
            window = plan.windows[index]
            time.sleep(self.clip_seconds(window) * len(window.batches))
            return self.streamed(window, next(super().window_parts(plan, index, data, anchor, previous_keyframe, on_stage).parts))

        def streamed(self, window, latents, last=False):
            """The window's ``latents``, a group of segments at a time as the sampler groups them (``clip_groups``;
            trees before it: ``clips_per_call`` at a time), each after its time."""
            from keysync.pipeline.sampling import WindowLatents

            n, step = len(window.segments), self.options.clips_per_call
            groups = (self.clip_groups(n, drain=last) if hasattr(self, "clip_groups")
                      else [(start, min(n, start + step)) for start in range(0, n, step)])

            def parts():
                for start, end in groups:
                    time.sleep(self.clip_seconds(window) * (end - start))
                    lo = max(window.segments[start], window.first_frame) - window.first_frame
                    hi = (window.segments[end] if end < n else window.stop_frame) - window.first_frame
                    yield latents[lo:hi]

            return WindowLatents(None, parts())

    pipe = KeySyncPipeline(micro_model(audio_window=1))
    pipe.dubber_class = StandIn
    import keysync.parallel

    if hasattr(keysync.parallel, "exempt_loaded_objects"):  # as `keysync dub` does once the model is loaded
        keysync.parallel.exempt_loaded_objects()
    vae, factor = pipe.model.vae, pipe.model.vae.downsample_factor  # the VAE is model work too (a GPU's): no CPU
    channels = vae.config.latent_channels
    vae.encode_frames = lambda pixels: torch.zeros(len(pixels), channels, pixels.shape[-2] // factor, pixels.shape[-1] // factor)
    vae.decode_frames = lambda latents, chunk: torch.zeros(len(latents), 3, latents.shape[-2] * factor, latents.shape[-1] * factor)
    from keysync.media.video import probe_video

    return {**timed_dub(pipe, clip, DubOptions(progress=False)), "frames": probe_video(clip).frame_count,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def timed_dub(pipe, clip: Path, options, face=None) -> dict:
    """``pipe.dub_file(clip, clip, ...)`` into a temporary folder: its wall time and seconds per stage (the
    pipeline's ``timings`` and the writer's). ``face``: a saved track, used instead of tracking."""
    from keysync.media.writer import VideoWriter

    writing, made = [0.0], []
    write, run = VideoWriter.write, pipe._dub

    def timed_write(self, image, time_=None):
        start = time.perf_counter()
        write(self, image, time_)
        writing[0] += time.perf_counter() - start

    def keep_timings(*args, **kwargs):
        made.append(run(*args, **kwargs))  # its timings fill in as the frames are made
        return made[-1]

    VideoWriter.write, pipe._dub = timed_write, keep_timings
    try:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            pipe.dub_file(clip, clip, Path(folder) / "out.mp4", options, **({} if face is None else {"face": face}))  # old trees have no face
            wall = time.perf_counter() - start
    finally:
        VideoWriter.write = write
        del pipe._dub
    return {"wall": wall, "timings": dict(made[0].timings, write=writing[0])}


def run_child(tree: Path, clip: Path, per_frame: float) -> dict:
    code = f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import speed; print(json.dumps(speed.dub_with_stand_in(speed.Path({str(clip)!r}), {per_frame})))"
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tree)
    if out.returncode:
        raise RuntimeError(f"the dub in {tree} failed:\n{out.stderr[-3000:]}")
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
                for run in range(args.repeats or 1):  # the trees alternate, so that both see the same machine load
                    for name, tree in trees:
                        row = run_child(tree, clip, per_frame)
                        row.update(code=name, per_frame=per_frame, run=run + 1)
                        rows.append(row)
                        print(json.dumps(row), flush=True)
        finally:
            if args.old:
                remove_tree(Path(folder) / "old")
    lines = [
        f"# Dub speed by stage, {width}x{height}, {args.seconds:g} s (model stage simulated)",
        "",
        f"`python benchmarks/speed.py --seconds {args.seconds:g} --size {args.size}"
        + (" --model-seconds-per-frame " + " ".join(f"{v:g}" for v in args.model_seconds_per_frame)
           if args.model_seconds_per_frame != [0.0, 0.05] else "")
        + (f" --old {args.old}" if args.old else "") + (f" --repeats {args.repeats}" if args.repeats else "") + "`: "
        f"{this_machine()}, no GPU. The model stage is a stand-in "
        "that sleeps a fixed time per output frame and holds no CPU (a fast GPU; 0 s: the front end alone). "
        "Stage columns are seconds busy in that stage; `slowest` is the largest of them, and `wall / slowest` is 1 "
        "when the stages overlap perfectly, their sum over the slowest when they run one after another.",
        "",
        "| code | model s/frame | run | frames | " + " | ".join(STAGES) + " | sum of stages | slowest | wall | wall / slowest | output fps | peak MiB |",
        "|---|---|---|---|" + "---|" * len(STAGES) + "---|---|---|---|---|---|",
    ]
    ratios: dict[tuple[str, float], list[float]] = {}
    for r in rows:
        t = r["timings"]
        total, slowest = sum(t.get(s, 0.0) for s in STAGES), max(t.get(s, 0.0) for s in STAGES)
        ratios.setdefault((r["code"], r["per_frame"]), []).append(r["wall"] / slowest)
        lines.append(
            f"| {r['code']} | {r['per_frame']:g} | {r['run']} | {r['frames']} | " + " | ".join(f"{t.get(s, 0.0):.1f}" for s in STAGES)
            + f" | {total:.1f} | {slowest:.1f} | {r['wall']:.1f} | {r['wall'] / slowest:.2f} | {r['frames'] / r['wall']:.1f} | {r['peak_mib']:.0f} |"
        )
    if (args.repeats or 1) > 1:
        import statistics

        lines += ["", "Median wall / slowest: " + "; ".join(f"{code} at {per_frame:g} s/frame {statistics.median(v):.2f}"
                                                          for (code, per_frame), v in ratios.items()) + "."]
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

    import torch

    from keysync.models.precision import resolve_dtype

    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        dtype = resolve_dtype("auto")
        trees = [(f"this tree ({str(dtype).removeprefix('torch.')}, its default here)", ROOT, [])]
        if dtype != torch.float32:  # also as on a CPU without bfloat16 hardware
            trees.append(("this tree (--dtype float32)", ROOT, ["--dtype", "float32"]))
        trees += [(f"old ({args.old})", old_tree(Path(folder) / "old", args.old), [])] if args.old else []
        try:
            for run in range(args.repeats or 2):
                for k, (name, tree, extra) in enumerate(trees):
                    out = Path(folder) / f"out-{run}-{k}"
                    out.mkdir()
                    start = time.perf_counter()
                    subprocess.run([sys.executable, "-c", "import sys; from keysync.cli import main; sys.exit(main())",
                                    "demo", "--out-dir", str(out), "--quiet", *extra], check=True, capture_output=True,
                                   env=dict(os.environ, PYTHONPATH=str(tree)), cwd=folder)
                    times.setdefault(name, []).append(time.perf_counter() - start)
                    print(name, f"{times[name][-1]:.1f} s", flush=True)
        finally:
            if args.old:
                remove_tree(Path(folder) / "old")
    lines = [f"# `keysync demo` end to end ({this_machine()}, no GPU)", "",
             "`python benchmarks/speed.py --demo" + (f" --old {args.old}" if args.old else "") + f" --repeats {args.repeats or 2}`: "
             "each run a new process with that tree's own defaults (this tree's demo samples at `fast` and computes in "
             "bfloat16 where the CPU multiplies it in hardware, trees from before the speed presets at `quality` in float32), "
             "the shipped small model, runs alternating between the trees.", "",
             "| code | runs (s) | median (s) |", "|---|---|---|"]
    for name, values in times.items():
        lines.append(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | {statistics.median(values):.1f} |")
    if args.old:
        medians = [statistics.median(v) for v in times.values()]
        lines += ["", "Speed-up: " + ", ".join(f"{name} {medians[-1] / m:.2f}x" for name, m in zip(times, medians[:-1])) + "."]
    lines += ["", f"Load average over the last minute when the run ended: {os.getloadavg()[0]:.1f}.", ""]
    (RESULTS / "speed_demo.md").write_text("\n".join(lines))
    print("\n".join(lines))


# --- the real networks (--model): model work on the device, and a whole dub ---------------------------------

H100_PEAK_TFLOPS = 989.4  # an H100 SXM's (and an H200's) dense bf16/fp16 peak: --parts flops' default
PEAK_16BIT_TFLOPS = (  # dense bf16/fp16 tensor-core peaks from NVIDIA's datasheets, by a part of the device name
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", H100_PEAK_TFLOPS), ("H200", H100_PEAK_TFLOPS), ("A100", 312.0), ("L40S", 362.1),
)


def device_peak_tflops(device, dtype) -> tuple[float | None, str]:
    """(peak TFLOP/s, where it comes from) for MFU: a datasheet's 16-bit peak on a known GPU; on a CPU, the rate
    this CPU reaches on a large matmul in ``dtype`` (no datasheet peak applies: the share says how far the
    model is from the CPU's own best)."""
    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if dtype in (torch.float16, torch.bfloat16):
            for part, peak in PEAK_16BIT_TFLOPS:
                if part in name:
                    return peak, f"{name}: dense 16-bit datasheet peak"
        return None, f"{name}: no datasheet peak known for {dtype} (give --peak-tflops)"
    a = torch.randn(2048, 2048, dtype=dtype)
    a @ a
    start, reps = time.perf_counter(), 8
    for _ in range(reps):
        a @ a
    rate = reps * 2 * 2048**3 / (time.perf_counter() - start) / 1e12
    return rate, f"this CPU's 2048x2048 {str(dtype).removeprefix('torch.')} matmul rate, measured"


def meta_copy(model):
    """The model's structure on the meta device, its weights not copied (shapes only: FLOPs are counted on it)."""
    import copy

    import torch

    tensors = [t for module in model.components().values() for t in (*module.parameters(), *module.buffers())]
    memo = {id(t): (torch.nn.Parameter(torch.empty_like(t, device="meta"), t.requires_grad) if isinstance(t, torch.nn.Parameter)
                    else torch.empty_like(t, device="meta")) for t in tensors}
    return copy.deepcopy(model, memo)


def model_work(model, dubber, frames: int, decode_frames: int, device, dtype, run) -> dict:
    """What a GPU does in a dub of ``frames`` output frames, on random inputs of the real shapes: VAE-encode
    every crop (16 at a time, as the dub does), sample every window with ``dubber`` and VAE-decode its
    latents in the dub's groups (``decode_groups``). Every piece goes through ``run(part, fn, *args)``
    (part: encode, sampling or decode), which times it or counts its FLOPs. Returns the network
    frame-evaluations per stage."""
    import torch

    from keysync.pipeline.plan import plan_frames
    from keysync.pipeline.sampling import FrameData, decode_groups

    plan = plan_frames(frames)
    n, size, factor = plan.padded_frames, model.crop_size, model.vae.downsample_factor
    latent = size // factor
    generator = torch.Generator().manual_seed(0)
    evaluations = {"keyframe": 0, "interpolation": 0}

    def counter(stage):
        return lambda module, args: evaluations.__setitem__(stage, evaluations[stage] + args[0].shape[0])

    hooks = [getattr(model, stage).register_forward_pre_hook(counter(stage)) for stage in evaluations]
    try:
        with torch.no_grad():
            pixels = (torch.rand(16, 3, size, size, generator=generator) * 2 - 1).to(device, dtype)
            latents = torch.cat([run("encode", model.vae.encode_frames, pixels[: min(16, n - i)]) for i in range(0, n, 16)])
            masks = torch.zeros(n, 1, latent, latent, device=device, dtype=dtype)
            masks[:, :, latent // 2 :] = 1
            audio = [torch.rand(n, 2 * (2 * net.config.audio_window + 1), net.config.audio_feature_dim, generator=generator).to(device, dtype)
                     for net in (model.keyframe, model.interpolation)]
            data = FrameData(0, latents, masks, *audio)
            anchor = FrameData(0, latents[:1], masks[:1], audio[0][:1], audio[1][:1])
            previous = None
            for w in range(len(plan.windows)):
                result = run("sampling", dubber.window_parts, plan, w, data, anchor, previous)
                previous, parts = result.last_keyframe, iter(result.parts)
                for group in decode_groups(iter(lambda: run("sampling", next, parts, None), None), decode_frames):
                    run("decode", model.vae.decode_frames, group, decode_frames)
    finally:
        for hook in hooks:
            hook.remove()
    return evaluations


def timed_parts(seconds: dict, sync):
    """``model_work``'s ``run`` that adds each piece's wall time to ``seconds[part]``, waiting for the device
    (``sync``) before each clock reading."""

    def run(part, fn, *args):
        sync()
        start = time.perf_counter()
        out = fn(*args)
        sync()
        seconds[part] = seconds.get(part, 0.0) + time.perf_counter() - start
        return out

    return run


def count_flops(model, dubber, frames: int, decode_frames: int, meta=None) -> tuple[dict, dict]:
    """(FLOPs per part, evaluations per stage) of ``model_work`` (FLOPs as torch's FlopCounterMode counts them:
    matmuls, convolutions, attention), on a meta copy of the model (``meta``, else made here): exact for
    these shapes and this schedule, and nothing is computed."""
    import dataclasses

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    flops = {}

    def run(part, fn, *args):
        with FlopCounterMode(display=False) as counter:
            out = fn(*args)
        flops[part] = flops.get(part, 0) + counter.get_total_flops()
        return out

    meta = meta_copy(model) if meta is None else meta
    # every clip in one call: the same rows and FLOPs (clips do not attend to each other), far fewer Python-bound meta calls
    options = dataclasses.replace(dubber.options, clips_per_call=10**6)
    evaluations = model_work(meta, type(dubber)(meta, options), frames, decode_frames, torch.device("meta"), torch.float32, run)
    return flops, evaluations


class BusyShare:
    """The GPU's busy share while it runs: NVML's utilisation (the share of time a kernel was running), read
    every 0.1 s on a thread; None where NVML is not at hand (no GPU, or no nvidia-ml-py)."""

    def __init__(self, device):
        import threading

        import torch

        self.readings: list[int] = []
        self.device, self._stop = device, threading.Event()
        self._thread = None
        if device.type == "cuda":
            try:
                torch.cuda.utilization(device)
            except (ImportError, RuntimeError):  # no nvidia-ml-py, or NVML not answering
                return
            self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self):
        import torch

        while not self._stop.wait(0.1):
            self.readings.append(torch.cuda.utilization(self.device))

    def __enter__(self):
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join()

    @property
    def share(self) -> float | None:
        return sum(self.readings) / len(self.readings) / 100 if self.readings else None


def model_report(args) -> None:
    """--model: the real networks on --device. Per --speed preset: the FLOPs counted on a meta copy; the model
    work alone (random inputs of a --seconds clip's shapes, device-synced clocks, TFLOP/s and MFU); then a
    whole dub of a generated --size clip (seconds per stage, output fps, GPU-busy share, peak memory).
    ``--parts flops`` only counts, on the meta device (the official size on any machine)."""
    import resource
    from dataclasses import replace

    import torch

    from keysync.diffusion.speed import evaluations_per_output_frame, stage_schedules
    from keysync.pipeline.dub import DubOptions, KeySyncPipeline, sampling_options
    from keysync.pipeline.sampling import LatentDubber
    from speed_presets import parse_preset

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    cuda = device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    pipe = meta = None
    if args.parts == ["flops"]:
        from keysync.models import KeySyncModel
        from keysync.models.download import resolve_model

        model = KeySyncModel.from_preset(args.model, device="meta") if args.random_weights else KeySyncModel.from_pretrained(resolve_model(args.model))
        peak, peak_source = ((args.peak_tflops, "--peak-tflops") if args.peak_tflops
                             else (H100_PEAK_TFLOPS, "the H100 SXM / H200 dense 16-bit datasheet peak"))
    else:
        pipe = KeySyncPipeline.from_pretrained(args.model, device=device, dtype=dtype, random_weights=args.random_weights)
        model = pipe.model
        if args.fp8:
            meta = meta_copy(model)  # FLOPs of the layers FP8 replaces, counted as they were
            pipe.fp8(args.fp8)
        if args.channels_last:
            pipe.channels_last()
        if args.compile:
            pipe.compile()
        peak, peak_source = (args.peak_tflops, "--peak-tflops") if args.peak_tflops else device_peak_tflops(device, dtype)
    frames = round(args.seconds * 25)
    width, height = (int(v) for v in args.size.split("x"))
    rows = []
    face = None
    if args.location:
        from keysync.faces.frontend import load_location

        face = load_location(args.location)
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(args.clip or Path(folder) / "clip.mp4")
        if "dub" in args.parts and not args.clip:
            make_clip(clip, args.seconds, width, height)
        if "dub" in args.parts:
            from keysync.media.video import probe_video

            info = probe_video(clip)
            dub_frames, args.size = info.frame_count, f"{info.width}x{info.height}"
        for preset in args.speed:
            speed, deep_cache, fp8 = parse_preset(preset)
            if fp8:
                raise SystemExit(f"--speed {preset}: here FP8 is --fp8 on|emulate, for every preset")
            opts = DubOptions(speed=speed, deep_cache=deep_cache, clips_per_call=args.clips_per_call, progress=False)
            dubber = pipe.dubber(opts) if pipe else LatentDubber(model, sampling_options(model, opts))
            flops, evaluations = count_flops(model, dubber, frames, opts.decode_frames, meta)
            per_frame = sum(flops.values()) / frames
            schedules = stage_schedules(speed, None, deep_cache)
            row = {"speed": preset, "frames": frames, "evaluations": evaluations, "evaluations_per_frame": round(sum(evaluations.values()) / frames, 2),
                   "evaluations_per_frame_long_video": round(evaluations_per_output_frame(*schedules), 2),
                   "whole_evaluations_per_frame_long_video": round(evaluations_per_output_frame(*schedules, whole_only=True), 2),
                   "tflop": {k: round(v / 1e12, 3) for k, v in flops.items()}, "tflop_per_frame": round(per_frame / 1e12, 3),
                   "fps_at_peak": round(peak * 1e12 / per_frame, 2) if peak else None}
            if pipe:
                warm = {}  # first calls: kernel choice, compilation; a keyframe batch and clips_per_call segments
                model_work(model, dubber, 13 * opts.clips_per_call + 1, opts.decode_frames, device, dtype, timed_parts(warm, sync))
                row["warmup_s"] = round(sum(warm.values()), 2)
            if "model" in args.parts:
                if cuda:
                    torch.cuda.reset_peak_memory_stats(device)
                seconds = {}
                ran = model_work(model, dubber, frames, opts.decode_frames, device, dtype, timed_parts(seconds, sync))
                assert ran == evaluations, (ran, evaluations)  # the meta run counted the same network rows
                busy = sum(seconds.values())
                tflops = sum(flops.values()) / busy / 1e12
                row.update(seconds={k: round(v, 2) for k, v in seconds.items()}, model_s=round(busy, 2),
                           model_fps=round(frames / busy, 2), tflops_per_s=round(tflops, 3), mfu=round(tflops / peak, 4) if peak else None,
                           model_peak_gpu_gib=round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None)
            if "dub" in args.parts:
                if cuda:
                    torch.cuda.reset_peak_memory_stats(device)
                with BusyShare(device) as busy:
                    dub = timed_dub(pipe, clip, replace(opts, encoder=args.encoder), face=face)
                row.update(dub_timings={k: round(v, 2) for k, v in dub["timings"].items()}, dub_wall_s=round(dub["wall"], 2),
                           dub_frames=dub_frames, dub_fps=round(dub_frames / dub["wall"], 2), gpu_busy=busy.share,
                           dub_peak_gpu_gib=round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None)
            row["peak_host_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    write_model_report(args, rows, peak, peak_source, model)


def percent(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f} %"


def write_model_report(args, rows: list[dict], peak, peak_source: str, model) -> None:
    import torch

    device = torch.device(args.device)
    counted_only = args.parts == ["flops"]
    where = ("the meta device (FLOPs counted, nothing run)" if counted_only else torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{this_machine()}, no GPU")
    command = " ".join(["python benchmarks/speed.py", *sys.argv[1:]])
    peak_text = f"{peak:.3g} TFLOP/s ({peak_source})" if peak else f"unknown ({peak_source})"
    lines = [f"# Model work and dub speed: {args.model}{' (random weights)' if args.random_weights else ''}"
             + ("" if counted_only else f", {args.device}, {args.dtype}"), "",
             f"`{command}` on {where}. Crops {model.crop_size} px, a {args.seconds:g} s clip ({rows[0]['frames']} output frames).", "",
             "FLOPs: torch's FlopCounterMode (matmuls, convolutions, attention) on a meta copy of the model running the "
             "model work below (VAE encode of every crop, sampling, VAE decode), exact for these shapes and schedules. "
             f"Peak: {peak_text}." + (" `P@N`: preset P with `--deep-cache N` (its evaluations that reuse the deep "
                                       "features cost only their full-resolution level)." if any("@" in r["speed"] for r in rows) else ""), "",
             "| speed | evaluations / output frame (this clip; a long video) | TFLOP / output frame (encode, sampling, decode) | output fps at the peak | at 43 % MFU |",
             "|---|---|---|---|---|"]
    for r in rows:
        t = r["tflop"]
        at = r["fps_at_peak"]
        lines.append(f"| {r['speed']} | {r['evaluations_per_frame']}; {r['evaluations_per_frame_long_video']} | {r['tflop_per_frame']:.3f} "
                     f"({t['encode'] / r['frames']:.3f}, {t['sampling'] / r['frames']:.3f}, {t['decode'] / r['frames']:.3f}) | "
                     f"{'n/a' if at is None else f'{at:.1f}'} | {'n/a' if at is None else f'{0.43 * at:.1f}'} |")
    lines.append("")
    if "model" in args.parts:
        lines += ["Model work alone: random inputs of the clip's shapes, clocks read after the device finishes each piece, "
                  "after a warm-up run of a keyframe batch and one call's segments.", "",
                  "| speed | encode s | sampling s | decode s | model fps | TFLOP/s | MFU | peak GPU GiB |", "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            t = r["seconds"]
            lines.append(f"| {r['speed']} | {t.get('encode', 0):.2f} | {t.get('sampling', 0):.2f} | {t.get('decode', 0):.2f} | {r['model_fps']:.2f} | "
                         f"{r['tflops_per_s']:.3f} | {percent(r['mfu'])} | {r['model_peak_gpu_gib'] or 'n/a'} |")
        lines.append("")
    if "dub" in args.parts:
        lines += [f"A whole dub (`dub_file`, {args.size}, {rows[0]['dub_frames']} frames, after a warm-up run of the model work): seconds busy per stage "
                  "(stages run side by side, so they add up to more than the wall time).", "",
                  "| speed | " + " | ".join(STAGES) + " | wall s | output fps | GPU busy | peak GPU GiB | peak host GiB |",
                  "|---|" + "---|" * len(STAGES) + "---|---|---|---|---|"]
        for r in rows:
            t = r["dub_timings"]
            lines.append(f"| {r['speed']} | " + " | ".join(f"{t.get(s, 0.0):.1f}" for s in STAGES)
                         + f" | {r['dub_wall_s']:.1f} | {r['dub_fps']:.2f} | {percent(r['gpu_busy'])} | "
                         f"{r['dub_peak_gpu_gib'] or 'n/a'} | {r['peak_host_gib']} |")
        lines.append("")
    if device.type != "cuda":
        lines += [GPU_NOTE, ""]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / (args.out or "speed_model.md")).write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    from keysync.constants import DTYPES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--model-seconds-per-frame", type=float, nargs="+", default=[0.0, 0.05])
    parser.add_argument("--old", metavar="REV", help="also run the pipeline of this git revision, in the same session")
    parser.add_argument("--encoders", action="store_true", help="compare x264 presets instead")
    parser.add_argument("--demo", action="store_true", help="time `keysync demo` end to end instead")
    parser.add_argument("--repeats", type=int, help="runs per tree, alternating (default: 2 with --demo, else 1)")
    parser.add_argument("--out", help="results file name in benchmarks/results (speed.md; speed_model.md with --model)")
    parser.add_argument("--encoder-settings", nargs="+", type=lambda s: s.split(":"), metavar="PRESET:CRF",
                        default=[["medium", "18"], ["veryfast", "18"], ["superfast", "18"], ["ultrafast", "18"], ["veryfast", "17"], ["superfast", "16"]])
    real = parser.add_argument_group("the real networks (--model)")
    real.add_argument("--model", help="time the real networks: small (shipped), a model folder, or a preset with --random-weights (official)")
    real.add_argument("--random-weights", action="store_true", help="build --model's preset with random weights (the timings hold; the output is noise)")
    real.add_argument("--device", default="cpu", help="cpu or cuda")
    real.add_argument("--dtype", default="float32", choices=DTYPES)
    real.add_argument("--speed", nargs="+", default=["quality", "fast"], help="speed presets, one row each (P@N: P with --deep-cache N)")
    real.add_argument("--clips-per-call", type=int, default=2)
    real.add_argument("--channels-last", action="store_true", help="the networks' and the VAE's weights and activations channels-last "
                      "(KeySyncPipeline.channels_last)")
    real.add_argument("--compile", action="store_true", help="compile the networks' repeated blocks first")
    real.add_argument("--fp8", choices=["on", "emulate"], help="FP8 matmuls in the networks' linear layers (keysync dub --fp8); MFU "
                      "stays against --peak-tflops or the 16-bit peak, as FP8 runs only part of the FLOPs")
    real.add_argument("--encoder", default="auto", help="the dub's H.264 encoder (auto, libx264, h264_nvenc)")
    real.add_argument("--parts", nargs="+", default=["model", "dub"], choices=["flops", "model", "dub"],
                      help="model work alone, a whole dub, or both; flops alone counts on the meta device and runs nothing")
    real.add_argument("--clip", help="dub this video (its own sound as the speech) instead of a generated clip")
    real.add_argument("--location", help="the clip's face track (keysync.faces.frontend.save_location), used instead of "
                                         "tracking: for a GPU machine without mediapipe")
    real.add_argument("--peak-tflops", type=float, help="the device's peak for MFU, where no datasheet peak is known")
    args = parser.parse_args()
    if args.model:
        model_report(args)
    elif args.demo:
        demo_report(args)
    elif args.encoders:
        encoder_report(args)
    else:
        args.out = args.out or "speed.md"
        overlap_report(args)


if __name__ == "__main__":
    main()
