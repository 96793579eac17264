"""One-shot GPU check: the training loop, the official-size training step and official-size sampling on CUDA.

    python benchmarks/gpu_check.py --out OUT                 # the real run, one GPU: done within ~5.5 min
    python benchmarks/gpu_check.py --quick --out /tmp/gc     # plumbing check on CPU: tiny models, a few steps

Sections, in order (cheapest and most important first), each recorded on its own, a failure included:

1. ``env``: versions, the device and its memory, and that the core modules load without PyAV/mediapipe/OpenCV.
2. ``train_small_cuda`` (per stage): ``keysync.train.train`` on the ``small-128`` preset (random init) with
   synthetic batches: 12 steps straight, and 6 steps + a new model resuming to 12 in a fresh run folder;
   both loss curves, their difference after the resume, seconds per step. The interpolation stage runs in
   bf16 with gradient checkpointing, the keyframe stage in fp32.
3. ``official_train_step`` (per stage): ``training_step`` on the ``official`` preset (random init, ~1.5 B
   parameters per network), bf16 autocast, gradient checkpointing, temporal layers and the VAE frozen:
   loss finiteness, seconds per step after a warm-up step, peak GPU memory.
4. ``official_vae``, ``official_audio``, ``official_sampling``: the VAE's encode and decode of 14 frames at
   512 px and HuBERT-base / WavLM-Base+ size encoders on 10 s of audio (cheap, so first), then
   ``LatentDubber`` on a 10 s clip (250 frames) with the default sampling options (10 AYS steps, 3-way
   guidance, 2 clips per call), all in bf16 but the audio encoders (fp32, as the pipeline runs them).

Every network has random weights: the timings are valid (the work does not depend on the values), the
outputs are noise. Results go to OUT/results.jsonl (one JSON object per measurement, flushed as it is
made) and OUT/summary.md (rewritten after each), so a run cut short by a timeout keeps what it measured.
``--budget-s`` (seconds from the script's start) skips the sections that would start later and stops the
sampling early, with an extrapolated total, rather than lose the run to an outside time limit; ``--only``
reruns some sections.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

START = time.time()
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's keysync, installed or not

import torch  # noqa: E402  (after START: the import is part of the start-up cost)

DEADLINE = float("inf")  # set from --budget-s: sections starting after it are skipped, sampling stops at it
AVOIDED = ("av", "mediapipe", "cv2", "phonemizer", "espeakng")  # not installed on the GPU machine


@dataclass(frozen=True)
class Sizes:
    train_preset: str = "small-128"
    train_steps: int = 12
    resume_at: int = 6  # also the checkpoint interval
    official_preset: str = "official"
    official_steps: int = 2  # timed, after one warm-up step
    official_clip: tuple[int, int, int] = (64, 768, 512)  # latent size, audio feature size, pixels
    sample_frames: int = 250  # 10 s at 25 fps
    sample_latent: int = 64
    sample_feature: int = 768
    vae_frames: int = 14
    vae_pixels: int = 512
    vae_reps: int = 2
    audio_seconds: float = 10.0
    audio_tiny: bool = False


FULL = Sizes()
QUICK = Sizes(train_steps=4, resume_at=2, official_preset="tiny", official_steps=1, official_clip=(16, 768, 32),
              sample_frames=27, sample_latent=16, vae_frames=4, vae_pixels=32, vae_reps=1, audio_seconds=2.0, audio_tiny=True)


class BudgetExceeded(RuntimeError):
    pass


def elapsed() -> float:
    return time.time() - START


def log(message: str) -> None:
    print(f"[{elapsed():6.1f}s] {message}", flush=True)


# --- plumbing -------------------------------------------------------------------------------------------


class Report:
    """results.jsonl (appended and flushed per record) and summary.md (rewritten per record)."""

    def __init__(self, folder: Path, header: list[str]):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.header, self.records = folder, header, []
        self.jsonl = (folder / "results.jsonl").open("a")

    def add(self, record: dict) -> None:
        record = {**record, "t_s": round(elapsed(), 1)}
        self.records.append(record)
        self.jsonl.write(json.dumps(record, default=str) + "\n")
        self.jsonl.flush()
        os.fsync(self.jsonl.fileno())
        (self.folder / "summary.md").write_text(summary(self.header, self.records))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def gib(n: int | float) -> float:
    return round(n / 2**30, 2)


def peak_gib(device: torch.device) -> float | None:
    return gib(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def run_section(report: Report, name: str, fn, *args, **labels) -> dict:
    """Run one measurement; an exception becomes a record (type, message, traceback tail), not the end."""
    log(f"{name} {labels or ''}".rstrip())
    if time.time() > DEADLINE and name != "env":
        record = {"section": name, **labels, "ok": False, "error_type": "Skipped", "error": "time budget (--budget-s) spent"}
        report.add(record)
        return record
    t0 = time.perf_counter()
    try:
        record = {"section": name, **labels, "ok": True, **fn(*args, **labels)}
    except Exception as err:  # noqa: BLE001  (any failure is a result here)
        tail = traceback.format_exc().strip().splitlines()[-12:]
        record = {"section": name, **labels, "ok": False, "error_type": type(err).__name__, "error": str(err)[:1500],
                  "traceback": tail, **getattr(err, "partial", {})}
        log(f"  FAILED: {type(err).__name__}: {str(err)[:300]}")
        del err
    record["section_s"] = round(time.perf_counter() - t0, 2)
    report.add(record)
    free_memory()
    return record


def rounded(values, digits: int = 5) -> list[float]:
    return [round(float(v), digits) for v in values]


# --- 1. env ---------------------------------------------------------------------------------------------


def section_env(device: torch.device, quick: bool) -> dict:
    import importlib.metadata as md
    import importlib.util

    out = {"device": str(device), "quick": quick, "python": sys.version.split()[0], "torch": torch.__version__,
           "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
           "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn_benchmark": torch.backends.cudnn.benchmark}
    for package in ("diffusers", "transformers", "accelerate", "safetensors", "numpy"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            out[package] = None
    out["installed_avoided"] = [m for m in AVOIDED if importlib.util.find_spec(m) is not None]
    if device.type == "cuda":
        t0 = time.perf_counter()
        torch.zeros(1, device=device)
        sync(device)
        props = torch.cuda.get_device_properties(device)
        out.update(cuda_init_s=round(time.perf_counter() - t0, 2), gpu=props.name, gpu_memory_gib=gib(props.total_memory),
                   capability=f"{props.major}.{props.minor}", gpus=torch.cuda.device_count(),
                   cudnn=torch.backends.cudnn.version(), bf16_supported=torch.cuda.is_bf16_supported())
    t0 = time.perf_counter()
    import keysync.audio  # noqa: F401
    import keysync.diffusion  # noqa: F401
    import keysync.models.model  # noqa: F401
    import keysync.pipeline.plan  # noqa: F401
    import keysync.pipeline.sampling  # noqa: F401
    import keysync.train  # noqa: F401

    out["keysync_import_s"] = round(time.perf_counter() - t0, 2)
    out["imported_avoided"] = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in AVOIDED})
    out["since_start_s"] = round(elapsed(), 1)
    out["budget_left_s"] = round(DEADLINE - time.time(), 1)
    return out


# --- 2. the training loop on the small model ---------------------------------------------------------------


def synthetic_batch(stage: str, seed: int, latent: int, channels: int, feat: int, pixels: int, clips: int = 1) -> dict:
    """A training batch of the shapes ``ClipSampler`` gives (see keysync.train.recipe), random but fixed by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(clips * 14, 1, latent, latent)
    masks[:, :, latent // 2 :] = 1  # the lower half: the box mask's region, roughly
    cond_shape = (clips, channels, latent, latent) if stage == "keyframe" else (clips, channels, 2, latent, latent)
    return {
        "latents": torch.randn(clips * 14, channels, latent, latent, generator=g),
        "masks": masks,
        "audio": torch.randn(clips, 14, 2, feat, generator=g),
        "cond": torch.randn(*cond_shape, generator=g),
        "pixels": torch.rand(clips * 14, 3, pixels, pixels, generator=g) * 2 - 1,
    }


def _train_run(preset: str, stage: str, folder: Path, steps: int, precision: str, checkpointing: bool, resume_at: int):
    """One ``train()`` call on a new model; returns (losses, step seconds, setup seconds, log lines, the
    device accelerate trained on)."""
    from keysync.models import KeySyncModel
    from keysync.models.presets import preset as preset_spec
    from keysync.train import Recipe, TrainConfig, train

    net = preset_spec(preset)["net"]
    model = KeySyncModel.from_preset(preset, seed=0)  # on the CPU, as `keysync train` builds it: train() moves it
    size = model.crop_size
    stamps, lines = [], []

    def batches(draw: int) -> dict:
        stamps.append(time.perf_counter())  # one call per step, after the previous step's loss was read back
        return synthetic_batch(stage, 1000 + draw % 4, net["latent_size"], net["latent_channels"], net["audio_feature_dim"], size)

    config = TrainConfig(stage, str(folder), steps=steps, checkpoint_every=resume_at, seed=0, mixed_precision=precision,
                         gradient_checkpointing=checkpointing, recipe=Recipe(lr=2e-4, warmup_steps=4))
    t0 = time.perf_counter()
    losses = train(model, config, batches, log=lines.append)
    end = time.perf_counter()
    steps_s = [b - a for a, b in zip(stamps, stamps[1:] + [end])]
    used = str(next(getattr(model, stage).parameters()).device)  # accelerate chose it, not --device
    return losses, steps_s, (stamps[0] - t0) if stamps else None, lines, used


def section_train_small(sizes: Sizes, device: torch.device, stage: str) -> dict:
    precision, checkpointing = ("bf16", True) if stage == "interpolation" else ("no", False)
    n, half = sizes.train_steps, sizes.resume_at
    with tempfile.TemporaryDirectory(prefix="keysync_gpu_check_") as tmp:
        whole, whole_s, setup_s, _, used = _train_run(sizes.train_preset, stage, Path(tmp) / "whole", n, precision, checkpointing, half)
        first, first_s, _, _, _ = _train_run(sizes.train_preset, stage, Path(tmp) / "split", half, precision, checkpointing, half)
        rest, rest_s, resume_setup_s, lines, _ = _train_run(sizes.train_preset, stage, Path(tmp) / "split", n, precision, checkpointing, half)
        log_rows = (Path(tmp) / "split" / stage / "log.csv").read_text().splitlines()[1:]
        ckpt_mib = sum(f.stat().st_size for f in (Path(tmp) / "whole" / stage / "checkpoints").rglob("*") if f.is_file()) / 2**20
    split = first + rest
    diffs = [abs(a - b) for a, b in zip(whole, split)]
    times = whole_s[1:]  # the first step carries the kernels' first-use cost
    return {
        "preset": sizes.train_preset, "device_used": used, "mixed_precision": precision,
        "gradient_checkpointing": checkpointing, "steps": n, "resumed_at": half,
        "losses_whole": rounded(whole), "losses_split": rounded(split),
        "max_abs_diff_before_resume": max(diffs[:half], default=None),
        "max_abs_diff_after_resume": max(diffs[half:], default=None),
        "max_rel_diff_after_resume": max((d / max(abs(w), 1e-12) for d, w in zip(diffs[half:], whole[half:])), default=None),
        "resumed": any("resumed" in line for line in lines), "resume_log": lines[:2],
        "log_steps_ok": [int(r.split(",")[0]) for r in log_rows] == list(range(1, n + 1)),
        "all_finite": all(math.isfinite(v) for v in split + whole),
        "setup_s": round(setup_s, 2) if setup_s is not None else None,
        "resume_setup_s": round(resume_setup_s, 2) if resume_setup_s is not None else None,
        "first_step_s": round(whole_s[0], 3),
        "step_s_median": round(statistics.median(times), 4) if times else None,
        "step_s_all": rounded(whole_s, 4), "split_step_s": rounded(first_s + rest_s, 4),
        "checkpoints_mib": round(ckpt_mib, 1),
    }


# --- 3 and 4: the official sizes -------------------------------------------------------------------------

_OFFICIAL: dict = {}


def official_model(sizes: Sizes, device: torch.device):
    """The official-size model with random weights, built once on the device (fp32) and shared by sections."""
    if "model" not in _OFFICIAL:
        from keysync.models import KeySyncModel

        t0 = time.perf_counter()
        _OFFICIAL["model"] = KeySyncModel.from_preset(sizes.official_preset, device=device, seed=0)
        sync(device)
        _OFFICIAL["build_s"] = round(time.perf_counter() - t0, 2)
    return _OFFICIAL["model"]


def section_official_train(sizes: Sizes, device: torch.device, stage: str) -> dict:
    from keysync.train import Recipe, freeze_temporal_layers, make_optimizer, training_step

    model = official_model(sizes, device)
    model.vae.requires_grad_(False).eval()
    net = getattr(model, stage)
    params = sum(p.numel() for p in net.parameters())
    net.requires_grad_(True)
    frozen = freeze_temporal_layers(net)
    net.enable_gradient_checkpointing()
    recipe = Recipe()
    optimizer, schedule = make_optimizer(net, recipe)
    latent, feat, pixels = sizes.official_clip
    batch = {k: v.to(device) for k, v in synthetic_batch(stage, 0, latent, 4, feat, pixels).items()}

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16)

    resident = gib(torch.cuda.memory_allocated(device)) if device.type == "cuda" else None
    reset_peak(device)
    outs, times = [], []
    try:
        for step in range(1 + sizes.official_steps):  # step 0: warm-up (first use of every kernel)
            sync(device)
            t0 = time.perf_counter()
            out = training_step(model, stage, batch, optimizer, schedule, recipe, torch.Generator().manual_seed(step), autocast=autocast)
            sync(device)
            times.append(time.perf_counter() - t0)
            outs.append({k: float(v) for k, v in out.items()})
        peak = peak_gib(device)
    finally:  # leave the shared model as the next section wants it, and free the optimizer's state
        optimizer.zero_grad(set_to_none=True)
        del optimizer, schedule
        net.disable_gradient_checkpointing()
        net.requires_grad_(False).eval()
        free_memory()
    return {
        "preset": sizes.official_preset, "build_s": _OFFICIAL.get("build_s"), "params": params, "frozen_temporal": frozen,
        "trainable": params - frozen, "autocast": "bf16", "gradient_checkpointing": True, "clips": 1,
        "losses": [o["loss"] for o in outs], "parts": outs[-1], "finite": all(math.isfinite(o["loss"]) for o in outs),
        "warmup_step_s": round(times[0], 3), "step_s": rounded(times[1:], 3),
        "resident_gib_before": resident, "peak_gib": peak,
        "note": "both networks and the VAE stay on the device in fp32 (the peak includes the idle network)",
    }


def timed_dubber(model, options, device: torch.device, deadline: float):
    """A ``LatentDubber`` that adds up each stage's wall time and counts network calls and frames; past
    ``deadline`` the next network call raises ``BudgetExceeded``."""
    from keysync.pipeline.sampling import LatentDubber

    class TimedDubber(LatentDubber):
        def _timed(self, stage, fn, *args):
            sync(device)
            t0 = time.perf_counter()
            out = fn(*args)
            sync(device)
            self.stage_s[stage] += time.perf_counter() - t0
            return out

        def _keyframes(self, *args):
            return self._timed("keyframe", super()._keyframes, *args)

        def _interpolate(self, *args):
            return self._timed("interpolation", super()._interpolate, *args)

    dubber = TimedDubber(model, options)
    dubber.stage_s = {"keyframe": 0.0, "interpolation": 0.0}
    dubber.evals = {"keyframe": {"calls": 0, "frames": 0}, "interpolation": {"calls": 0, "frames": 0}}
    for stage in ("keyframe", "interpolation"):
        net = getattr(model, stage)

        def counted(x, c_noise, concat, context, _stage=stage, _forward=net.forward):
            if time.time() > deadline:
                raise BudgetExceeded("time budget reached during sampling")
            dubber.evals[_stage]["calls"] += 1
            dubber.evals[_stage]["frames"] += x.shape[0]
            return _forward(x, c_noise, concat, context)

        net.forward = counted  # an instance attribute: nn.Module.__call__ finds it first
    return dubber


def section_official_sampling(sizes: Sizes, device: torch.device, dtype: torch.dtype, clips_per_call: int = 2) -> dict:
    from keysync.pipeline.plan import CLIP, plan_frames
    from keysync.pipeline.sampling import FrameData, SamplingOptions

    model = official_model(sizes, device).to(device, dtype).eval()
    plan = plan_frames(sizes.sample_frames)  # batches_per_window 1: the pipeline's default
    n, latent = plan.padded_frames, sizes.sample_latent
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(n, 1, latent, latent)
    masks[:, :, latent // 2 :] = 1
    data = FrameData(0, torch.randn(n, 4, latent, latent, generator=g).to(device, dtype), masks.to(device, dtype),
                     *(torch.randn(n, 2, sizes.sample_feature, generator=g).to(device, dtype) for _ in range(2)))
    anchor = FrameData(0, data.latents[:1], data.masks[:1], data.keyframe_audio[:1], data.interpolation_audio[:1])
    options = SamplingOptions(clips_per_call=clips_per_call)  # `keysync dub --batch-size`
    dubber = timed_dubber(model, options, device, DEADLINE)
    steps = len(dubber.sigmas) - 1
    batches = sum(len(w.batches) for w in plan.windows)
    expected = {"keyframe": batches * CLIP * 3 * steps, "interpolation": len(plan.segments) * CLIP * 3 * steps}
    info = {"preset": sizes.official_preset, "dtype": str(dtype).removeprefix("torch."), "frames": sizes.sample_frames,
            "padded_frames": n, "windows": len(plan.windows), "keyframe_batches": batches, "segments": len(plan.segments),
            "euler_steps": steps, "guidance": [options.guidance.audio, options.guidance.ref], "clips_per_call": options.clips_per_call,
            "expected_frame_evals": expected}
    try:
        # warm-up: one network call of each stage at the real call shape (first use of every kernel)
        sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            for stage, ch in (("keyframe", 4), ("interpolation", 8)):
                rows = options.clips_per_call * 3
                net = getattr(model, stage)
                net(data.latents[:1].expand(rows * CLIP, -1, -1, -1), torch.zeros(rows * CLIP, device=device, dtype=dtype),
                    torch.zeros(rows, ch, latent, latent, device=device, dtype=dtype),
                    torch.zeros(rows, CLIP, net.config.context_dim, device=device, dtype=dtype))
        sync(device)
        info["warmup_s"] = round(time.perf_counter() - t0, 2)
        for stage in dubber.evals:
            dubber.evals[stage] = {"calls": 0, "frames": 0}
        reset_peak(device)
        t0 = time.perf_counter()
        outputs, previous, windows_s = [], None, []
        for i in range(len(plan.windows)):
            w0 = time.perf_counter()
            latents, previous = dubber.window(plan, i, data, anchor, previous)
            sync(device)
            windows_s.append(round(time.perf_counter() - w0, 2))
            outputs.append(latents)
            log(f"  window {i + 1}/{len(plan.windows)}: {windows_s[-1]} s")
        wall = time.perf_counter() - t0
    except BudgetExceeded as err:
        done = sum(v["frames"] for v in dubber.evals.values())
        spent = time.perf_counter() - t0
        err.partial = {**info, "frame_evals_done": done, "spent_s": round(spent, 1),
                       "extrapolated_wall_s": round(spent * sum(expected.values()) / max(done, 1), 1)}
        raise
    finally:
        for stage in ("keyframe", "interpolation"):
            getattr(model, stage).__dict__.pop("forward", None)
    out = torch.cat(outputs)
    frames = sizes.sample_frames
    evals = {k: v["frames"] for k, v in dubber.evals.items()}
    return {
        **info, "wall_s": round(wall, 2), "s_per_output_frame": round(wall / frames, 4), "windows_s": windows_s,
        "stage_s": {k: round(v, 2) for k, v in dubber.stage_s.items()},
        "unet_calls": {k: v["calls"] for k, v in dubber.evals.items()}, "unet_frame_evals": evals,
        "frame_evals_per_output_frame": round(sum(evals.values()) / frames, 2),
        "ms_per_frame_eval": round(1000 * wall / max(sum(evals.values()), 1), 3),
        "output_shape": list(out.shape), "output_finite": bool(torch.isfinite(out).all()), "peak_gib": peak_gib(device),
    }


def _timed_reps(fn, reps: int, device: torch.device) -> tuple[float, list[float]]:
    """(warm-up seconds, timed seconds per repetition)."""
    times = []
    for _ in range(1 + reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return round(times[0], 3), rounded(times[1:], 3)


def section_official_vae(sizes: Sizes, device: torch.device, dtype: torch.dtype) -> dict:
    vae = official_model(sizes, device).to(device, dtype).eval().vae
    pixels = (torch.rand(sizes.vae_frames, 3, sizes.vae_pixels, sizes.vae_pixels, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device, dtype)
    reset_peak(device)
    with torch.no_grad():
        latents = vae.encode_frames(pixels)
        encode = _timed_reps(lambda: vae.encode_frames(pixels), sizes.vae_reps, device)
        # 14 frames per decoder call: the pipeline's default (DubOptions.decode_frames)
        decode = _timed_reps(lambda: vae.decode_frames(latents, sizes.vae_frames), sizes.vae_reps, device)
    frames = sizes.vae_frames
    return {
        "dtype": str(dtype).removeprefix("torch."), "frames": frames, "pixels": sizes.vae_pixels, "latent_shape": list(latents.shape),
        "encode_warmup_s": encode[0], "encode_s": encode[1], "decode_warmup_s": decode[0], "decode_s": decode[1],
        "encode_ms_per_frame": round(1000 * min(encode[1]) / frames, 2), "decode_ms_per_frame": round(1000 * min(decode[1]) / frames, 2),
        "peak_gib": peak_gib(device),
    }


def section_official_audio(sizes: Sizes, device: torch.device) -> dict:
    from transformers import HubertConfig, HubertModel, WavLMConfig, WavLMModel

    from keysync.audio import SAMPLE_RATE, SpeechEncoderFeatures, num_frames

    # HuBERT-base and WavLM-Base+ share these shapes; the quick run shrinks the transformer and conv widths
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7) if sizes.audio_tiny else {}
    wave = torch.randn(int(sizes.audio_seconds * SAMPLE_RATE), generator=torch.Generator().manual_seed(0)).numpy() * 0.1
    frames = num_frames(len(wave))
    out = {"seconds": sizes.audio_seconds, "frames": frames, "dtype": "float32 (as the pipeline runs them)"}
    for name, config, cls, normalize in (("hubert", HubertConfig, HubertModel, True), ("wavlm", WavLMConfig, WavLMModel, False)):
        torch.manual_seed(0)
        model = cls(config(**small)).to(device)
        features = SpeechEncoderFeatures(model, normalize=normalize, name=name)
        warm, reps = _timed_reps(lambda: features(wave, frames=frames), 2 if not sizes.audio_tiny else 1, device)
        rows = features(wave, frames=frames)
        out[name] = {"params": sum(p.numel() for p in model.parameters()), "warmup_s": warm, "s": reps,
                     "shape": list(rows.shape), "finite": bool(torch.isfinite(rows).all())}
        del model, features
        free_memory()
    return out


# --- summary -----------------------------------------------------------------------------------------------


def _line(r: dict) -> str:
    s = r["section"]
    if not r.get("ok"):
        extra = f" (partial: {r['frame_evals_done']} frame evals in {r['spent_s']} s, extrapolated {r['extrapolated_wall_s']} s)" if "extrapolated_wall_s" in r else ""
        what = "STOPPED" if r.get("error_type") in ("BudgetExceeded", "Skipped") else "FAILED"
        return f"- **{s}** {r.get('stage', '')}: {what} {r.get('error_type')}: {str(r.get('error'))[:300]}{extra}"
    if s == "env":
        gpu = f"{r.get('gpu')} ({r.get('gpu_memory_gib')} GiB)" if r.get("gpu") else "no GPU"
        return (f"- **env**: {r['device']}, {gpu}; torch {r['torch']} (CUDA {r['cuda']}), diffusers {r['diffusers']}, "
                f"transformers {r['transformers']}, accelerate {r['accelerate']}; keysync core import {r['keysync_import_s']} s, "
                f"pulled in {r['imported_avoided'] or 'none'} of {list(AVOIDED)}")
    if s == "train_small_cuda":
        return (f"- **train_small_cuda** {r['stage']} ({r['preset']} on {r['device_used']}, precision {r['mixed_precision']}, gradient checkpointing "
                f"{r['gradient_checkpointing']}): {r['step_s_median']} s/step (first {r['first_step_s']} s, setup {r['setup_s']} s); "
                f"resumed at step {r['resumed_at']}: {r['resumed']}, max |loss diff| after resume {r['max_abs_diff_after_resume']:.3g} "
                f"(before {r['max_abs_diff_before_resume']:.3g}), log rows ok {r['log_steps_ok']}, finite {r['all_finite']}; "
                f"losses {r['losses_whole']}")
    if s == "official_train_step":
        return (f"- **official_train_step** {r['stage']}: {r['params'] / 1e9:.3f} B params ({r['trainable'] / 1e9:.3f} B trainable), "
                f"bf16 autocast + checkpointing: {r['step_s']} s/step after a {r['warmup_step_s']} s warm-up; losses {rounded(r['losses'], 4)} "
                f"finite {r['finite']}; peak {r['peak_gib']} GiB ({r['resident_gib_before']} GiB resident before); model built in {r['build_s']} s")
    if s == "official_sampling":
        return (f"- **official_sampling** {r['frames']} frames ({r['dtype']}, {r['euler_steps']} Euler steps, 3-way guidance, "
                f"{r['clips_per_call']} clips/call): **{r['wall_s']} s**, {r['s_per_output_frame']} s per output frame "
                f"(keyframes {r['stage_s']['keyframe']} s, interpolation {r['stage_s']['interpolation']} s); UNet calls "
                f"{r['unet_calls']}, {r['frame_evals_per_output_frame']} frame-evals per output frame, {r['ms_per_frame_eval']} ms per "
                f"frame-eval; warm-up {r['warmup_s']} s; peak {r['peak_gib']} GiB; output finite {r['output_finite']}")
    if s == "official_vae":
        return (f"- **official_vae** {r['frames']} frames at {r['pixels']} px ({r['dtype']}): encode {r['encode_s']} s "
                f"({r['encode_ms_per_frame']} ms/frame), decode {r['decode_s']} s ({r['decode_ms_per_frame']} ms/frame); peak {r['peak_gib']} GiB")
    if s == "official_audio":
        parts = ", ".join(f"{k} {r[k]['s']} s ({r[k]['params'] / 1e6:.3g} M params)" for k in ("hubert", "wavlm"))
        return f"- **official_audio** {r['seconds']} s of audio, {r['dtype']}: {parts}"
    return f"- **{s}**: `{json.dumps(r, default=str)[:400]}`"


def _estimate(records: list[dict]) -> list[str]:
    """Sampling + VAE + audio features for the sampled clip, from the parts measured (the pipeline also
    tracks faces, cuts crops, pastes and encodes video, all on the CPU)."""
    ok = {r["section"]: r for r in records if r.get("ok")}
    if not {"official_sampling", "official_vae", "official_audio"} <= ok.keys():
        return []
    sampling, vae, audio = ok["official_sampling"], ok["official_vae"], ok["official_audio"]
    frames = sampling["frames"]
    vae_s = (vae["encode_ms_per_frame"] + vae["decode_ms_per_frame"]) * frames / 1000
    audio_s = (min(audio["hubert"]["s"]) + min(audio["wavlm"]["s"])) * frames / audio["frames"]
    total = sampling["wall_s"] + vae_s + audio_s
    return ["", f"Estimated model work for {frames} frames: sampling {sampling['wall_s']} s + VAE {vae_s:.1f} s + "
                f"audio features {audio_s:.1f} s = **{total:.1f} s** ({total / frames:.3f} s per output frame)."]


def summary(header: list[str], records: list[dict]) -> str:
    return "\n".join(header + [_line(r) for r in records] + _estimate(records) + [""])


# --- main --------------------------------------------------------------------------------------------------


SECTIONS = ("train_small_cuda", "official_train_step", "official_vae", "official_audio", "official_sampling")


def main() -> int:
    global DEADLINE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for results.jsonl and summary.md")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few steps: a plumbing check that runs on a CPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budget-s", type=float, default=320.0,
                        help="seconds from the start: later sections are skipped and sampling stops (with an estimate)")
    parser.add_argument("--only", help=f"comma-separated sections to run (env always runs): {', '.join(SECTIONS)}")
    parser.add_argument("--clips-per-call", type=lambda t: [int(v) for v in t.split(",")], default=[2],
                        help="official_sampling once per value (comma-separated): clips per network call, dub's --batch-size")
    parser.add_argument("--sample-dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16",
                        help="sampling and VAE dtype (float16 overflows in the sampler: sigma_max**2 = 490000 > 65504)")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    if only - set(SECTIONS):
        parser.error(f"unknown sections {sorted(only - set(SECTIONS))}; choose from {', '.join(SECTIONS)}")
    sizes, device, dtype = QUICK if args.quick else FULL, torch.device(args.device), getattr(torch, args.sample_dtype)
    DEADLINE = START + args.budget_s
    header = [
        f"# gpu_check ({time.strftime('%Y-%m-%d %H:%M')}, {'--quick, ' if args.quick else ''}device {device})",
        "",
        "All networks have **random weights** (presets built from scratch, no checkpoint): timings and memory are",
        "valid, the outputs are noise. Training batches and sampling inputs are random tensors of the real shapes.",
        "",
    ]
    report = Report(Path(args.out), header)
    log(f"gpu_check on {device} ({'quick' if args.quick else 'full'}), budget {args.budget_s:.0f} s")
    run_section(report, "env", section_env, device, args.quick)
    # the cheap measurements first; sampling last, since it can stop at the budget with an estimate
    for stage in ("keyframe", "interpolation"):
        if "train_small_cuda" in only:
            run_section(report, "train_small_cuda", section_train_small, sizes, device, stage=stage)
    for stage in ("keyframe", "interpolation"):
        if "official_train_step" in only:
            run_section(report, "official_train_step", section_official_train, sizes, device, stage=stage)
    if "official_vae" in only:
        run_section(report, "official_vae", section_official_vae, sizes, device, dtype)
    if "official_audio" in only:
        run_section(report, "official_audio", section_official_audio, sizes, device)
    for clips_per_call in args.clips_per_call:
        if "official_sampling" in only:
            run_section(report, "official_sampling", section_official_sampling, sizes, device, dtype, clips_per_call=clips_per_call)
    log(f"done: {Path(args.out) / 'summary.md'}")
    print(summary(header, report.records), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
