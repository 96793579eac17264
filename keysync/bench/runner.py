"""Run a lip-sync method on held-out synthetic clips and score it.

Three modes per source clip: ``reconstruction`` (its own audio), ``cross`` (another held-out clip's
speech: a different voice and sentence) and ``silent`` (room tone only). Every mode scores sync against
the mouth its driving audio asks for; ``cross`` and ``silent`` also score leakage of the source's mouth.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..synth.dataset import ClipRecord, load_split, plan_dataset, write_dataset
from ..synth.speech import SAMPLE_RATE, Phoneme, room_tone
from ..synth.visemes import mouth_track
from . import metrics as M
from .methods import LipSyncMethod, LipSyncTask, MethodOutput

if TYPE_CHECKING:
    from .mouth_reader import LoadedReader

MODES = ("reconstruction", "cross", "silent")
QUICK_CLIPS = 3
FULL_CLIPS = 20

SUMMARY_METRICS = (
    "lipleak", "sync_corr", "sync_mae", "cross_leak", "cross_leak_partial",
    "psnr_outside", "ssim_outside", "psnr_upper", "ssim_upper", "ssim_mask", "hf_ratio",
    "colour_shift", "mouth_jitter", "edge_jitter", "occluder_mae",
    "lipleak_lm", "sync_corr_lm", "cross_leak_lm",
)


def benchmark_data(folder: Path, n_clips: int, seed: int, size: int) -> list[ClipRecord]:
    """Held-out speech clips for the benchmark, each with its own face: rendered once into ``folder`` and
    reused while the request (clips, seed, size) is the same."""
    request = {"clips": n_clips, "seed": seed, "size": size, "clips_per_identity": 1}
    stamp = folder / "request.json"
    if not (stamp.is_file() and json.loads(stamp.read_text()) == request):
        specs = plan_dataset(n_clips, seed, size, size, clips_per_identity=1, sound_mix=(1.0, 0.0, 0.0, 0.0), only_split="test")
        write_dataset(folder, specs, seed, overwrite=True)
        stamp.write_text(json.dumps(request) + "\n")
    return load_split(folder, "test")


def speech_clips(data_dir: Path, limit: int | None, split: str = "test") -> list[ClipRecord]:
    """The speech clips of an existing dataset's (``keysync synth``) test split, or val to tune on, taken
    one identity at a time (``spread_over_identities``)."""
    from ..errors import KeySyncError

    records = [r for r in load_split(data_dir, split) if r.spec().sound == "speech"]
    if len(records) < 2:
        raise KeySyncError(f"{data_dir} has fewer than 2 speech clips in its {split} split; write a larger dataset")
    records = spread_over_identities(records)
    return records[:limit] if limit else records


def spread_over_identities(records: list[ClipRecord]) -> list[ClipRecord]:
    """The records round-robin over their identities (each identity's clips in name order). A split holds
    several clips per face and scores vary more between faces than between clips, so the first few
    clips should show as many faces as they can."""
    by_identity: dict[str, list[ClipRecord]] = {}
    for record in records:
        by_identity.setdefault(record.spec().identity_id, []).append(record)
    queues = list(by_identity.values())
    return [q[k] for k in range(max(map(len, queues))) for q in queues if k < len(q)]


@dataclass
class BenchResult:
    summary: dict[str, dict[str, float]]  # {mode: {metric: mean over clips}}
    rows: list[dict]  # one per clip and mode
    traces: dict[str, dict[str, np.ndarray]]  # first clip, per mode: read, target and source jaw opening


@dataclass
class Driving:
    audio: np.ndarray
    phonemes: list[Phoneme]


def driving_for(mode: str, index: int, records: list[ClipRecord], n_frames: int, seed: int) -> Driving:
    """The driving audio (exactly ``n_frames`` * 640 samples) and its phonemes for one source and mode."""
    from ..synth.clipio import read_wav

    if mode == "silent":
        return Driving(room_tone(n_frames * M.SAMPLES_PER_FRAME, np.random.default_rng([seed, index])), [])
    other = records[index] if mode == "reconstruction" else records[(index + 1) % len(records)]
    return speech_driving(read_wav(other.wav), other.phonemes(), n_frames, seed, index)


def speech_driving(audio: np.ndarray, phonemes: list[Phoneme], n_frames: int, seed: int, index: int) -> Driving:
    """A clip's speech as the driving audio of source ``index``: cut to ``n_frames``, or padded with room tone."""
    n = n_frames * M.SAMPLES_PER_FRAME
    audio = audio[:n]
    if len(audio) < n:
        audio = np.concatenate([audio, room_tone(n - len(audio), np.random.default_rng([seed, index]))])
    duration = n / SAMPLE_RATE
    return Driving(audio.astype(np.float32), [p for p in phonemes if p.start < duration])


def dub_clip(method: LipSyncMethod, record: ClipRecord, truth: dict, drive: Driving, wav: Path) -> tuple[MethodOutput, np.ndarray, float]:
    """``method``'s dub of ``record`` (its ground truth ``truth``) to ``drive``'s audio (written to ``wav``
    first): the output, the mouth track (T, 5) that speech asks of this speaker, and the method's seconds."""
    from ..synth.clipio import write_wav

    spec, frames = record.spec(), len(truth["mouth"])
    write_wav(wav, drive.audio)
    t0 = time.perf_counter()
    output = method(LipSyncTask(record.video, wav, frames, truth["landmarks"], record, drive.phonemes))
    seconds = time.perf_counter() - t0
    return output, mouth_track(drive.phonemes, frames, spec.fps, spec.identity.articulation), seconds


def score(
    output: MethodOutput,
    source_frames: np.ndarray,
    truth: dict,
    target_mouth: np.ndarray,
    driving_audio: np.ndarray,
    mode: str,
    reader: LoadedReader,
    output_landmarks: np.ndarray | None = None,
    source_landmarks: np.ndarray | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """All metrics of one output (see ``keysync.bench.metrics`` for their definitions), and the jaw
    opening read from it.

    The landmark-only metrics use ``output_landmarks`` (detected by a face front end; default: the exact
    landmarks a method returned, if any) and ``source_landmarks`` (default: the source's ground truth).
    Frames where detection failed (NaN) are left out."""
    frames = output.frames
    T, H, W = frames.shape[:3]
    src_lm, occluder = truth["landmarks"], truth["occluder"]
    valid = M.readable_frames(src_lm, occluder)
    read = reader.read(frames, src_lm)[:, 0]
    threshold = float(reader.metadata["speaking_threshold"])
    silent = M.silent_frames(driving_audio, T)
    target, source = target_mouth[:, 0], truth["mouth"][:, 0]
    regen = M.regenerated_box(src_lm, H, W)
    upper = M.upper_face_box(src_lm, H, W)
    ssim_maps = M.ssim_maps(frames, source_frames)  # once for the three regions
    out = {
        "lipleak": M.lipleak(read, silent, threshold, valid) if mode == "silent" else float("nan"),
        "sync_corr": M.pearson(read, target, valid),
        "sync_mae": M.mean_abs(read, target, valid),
        "cross_leak": M.pearson(read, source, valid) if mode != "reconstruction" else float("nan"),
        "cross_leak_partial": M.partial_pearson(read, source, target, valid) if mode != "reconstruction" else float("nan"),
        "psnr_outside": M.psnr(frames, source_frames, ~regen),
        "ssim_outside": M.region_mean(ssim_maps, ~regen),
        "psnr_upper": M.psnr(frames, source_frames, upper),
        "ssim_upper": M.region_mean(ssim_maps, upper),
        "ssim_mask": M.region_mean(ssim_maps, regen),
        "hf_ratio": M.high_frequency_ratio(frames, source_frames, regen),
        "colour_shift": M.colour_shift(frames, source_frames, regen),
        "mouth_jitter": M.mouth_jitter(read, valid),
        "edge_jitter": M.edge_jitter(frames, source_frames, regen),
        "occluder_mae": M.occluder_error(frames, source_frames, occluder),
        "lipleak_lm": float("nan"),
        "sync_corr_lm": float("nan"),
        "cross_leak_lm": float("nan"),
    }
    output_landmarks = output.landmarks if output_landmarks is None else output_landmarks
    if output_landmarks is not None:
        mar = M.mouth_aspect_ratio(output_landmarks)
        source_mar = M.mouth_aspect_ratio(src_lm if source_landmarks is None else source_landmarks)
        found = valid & np.isfinite(mar) & np.isfinite(source_mar)
        out["lipleak_lm"] = M.lipleak(np.nan_to_num(mar), silent, M.SPEAKING_MAR, found) if mode == "silent" else float("nan")
        out["sync_corr_lm"] = M.pearson(mar, target, found)
        if mode != "reconstruction":
            out["cross_leak_lm"] = M.pearson(mar, source_mar, found)
    return out, read


def detect_landmarks(frames: np.ndarray, backend, near: np.ndarray) -> np.ndarray:
    """(T, 68, 2) landmarks from a ``keysync.faces`` back end, taking in each frame the face whose box
    best overlaps the box of ``near`` (T, 68, 2); NaN where no face is found."""
    from ..faces.backends import box_iou

    out = np.full((len(frames), 68, 2), np.nan)
    for i, (frame, hint) in enumerate(zip(frames, near)):
        boxes = backend.detect(frame)
        if len(boxes) == 0:
            continue
        target = np.concatenate([hint.min(0), hint.max(0)])
        box = max(boxes, key=lambda b: box_iou(b[:4], target))
        found = backend.landmarks(frame, box)
        if found is not None:
            out[i] = found
    return out


def run_benchmark(
    method: LipSyncMethod,
    records: list[ClipRecord],
    work_dir: Path,
    seed: int = 0,
    modes: tuple[str, ...] = MODES,
    progress: bool = True,
    reader: LoadedReader | None = None,
    landmark_backend=None,
    on_output=None,
) -> BenchResult:
    """Score ``method`` on every record in every mode.

    ``reader``: the mouth reader (default: the shipped one). ``landmark_backend``: a ``keysync.faces``
    back end that detects landmarks on sources and outputs for the landmark-only metrics (default: use the
    exact landmarks a method returns, if any). ``on_output``: called as ``on_output(record, mode, output,
    driving_audio, source_frames, row)`` after each output is scored, e.g. to score it with ``keysync.eval``
    too (``benchmarks/eval_bench.py``)."""
    from tqdm import tqdm

    from ..errors import KeySyncError
    from ..synth.clipio import read_mp4_frames

    from .mouth_reader import LoadedReader

    reader = reader or LoadedReader()
    driving_dir = Path(work_dir) / "driving"
    driving_dir.mkdir(parents=True, exist_ok=True)
    rows, traces = [], {}
    bar = tqdm(total=len(records) * len(modes), desc=f"bench {method.name}", unit="run", disable=not progress)
    for i, record in enumerate(records):
        truth = record.truth()
        source_frames = read_mp4_frames(record.video)
        T = len(truth["mouth"])
        detected_source = None if landmark_backend is None else detect_landmarks(source_frames, landmark_backend, truth["landmarks"])
        for mode in modes:
            drive = driving_for(mode, i, records, T, seed)
            output, target, seconds = dub_clip(method, record, truth, drive, driving_dir / f"{record.name}_{mode}.wav")
            if output.frames.shape != source_frames.shape:
                raise KeySyncError(
                    f"method {method.name} returned frames of shape {output.frames.shape} for {record.name}; "
                    f"expected {source_frames.shape} (same count and size as the source)"
                )
            detected = None if landmark_backend is None else detect_landmarks(output.frames, landmark_backend, truth["landmarks"])
            values, read = score(output, source_frames, truth, target, drive.audio, mode, reader, detected, detected_source)
            if i == 0:
                traces[mode] = {"read": read, "target": target[:, 0], "source": truth["mouth"][:, 0]}
            rows.append({"mode": mode, "clip": record.name, "method_seconds": round(seconds, 3), **values})
            if on_output is not None:
                on_output(record, mode, output, drive.audio, source_frames, rows[-1])
            bar.update()
    bar.close()
    summary = {}
    for mode in modes:
        mode_rows = [r for r in rows if r["mode"] == mode]
        summary[mode] = {}
        for key in SUMMARY_METRICS:
            values = np.array([r[key] for r in mode_rows], np.float64)
            if np.isfinite(values).any():
                summary[mode][key] = float(np.nanmean(values))
    return BenchResult(summary, rows, traces)


def write_results(out_dir: Path, method_name: str, result: BenchResult) -> list[Path]:
    """``per_clip.csv``, ``summary.csv`` and ``plots.png`` in ``out_dir``."""
    summary, rows = result.summary, result.rows
    from ..files import write_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    per_clip = out_dir / "per_clip.csv"
    write_atomic(per_clip, lambda tmp: _write_csv(tmp, list(rows[0].keys()), rows))
    summary_csv = out_dir / "summary.csv"
    summary_rows = [{"method": method_name, "mode": m, **{k: v for k, v in vals.items()}} for m, vals in summary.items()]
    write_atomic(summary_csv, lambda tmp: _write_csv(tmp, ["method", "mode", *SUMMARY_METRICS], summary_rows))
    plots = out_dir / "plots.png"
    write_atomic(plots, lambda tmp: _plot(tmp, method_name, summary, result.traces))
    return [per_clip, summary_csv, plots]


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def _plot(path: Path, method_name: str, summary: dict, traces: dict) -> None:
    """Top: the mean metrics per mode. Bottom: the first clip's read jaw opening against what the
    driving audio asks for and what the source did, per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [
        ("mouth (0-1)", ("lipleak", "sync_corr", "sync_mae", "cross_leak", "cross_leak_partial", "lipleak_lm", "sync_corr_lm", "cross_leak_lm")),
        ("identity", ("ssim_outside", "ssim_upper")),
        ("PSNR (dB)", ("psnr_outside", "psnr_upper")),
        ("stability / occluder", ("mouth_jitter", "edge_jitter", "occluder_mae")),
    ]
    fig, axes = plt.subplots(2, len(groups), figsize=(4.2 * len(groups), 7.0))
    modes = list(summary)
    for ax, (title, keys) in zip(axes[0], groups):
        x = np.arange(len(keys))
        width = 0.8 / max(1, len(modes))
        for j, mode in enumerate(modes):
            vals = [summary[mode].get(k, np.nan) for k in keys]
            ax.bar(x + (j - (len(modes) - 1) / 2) * width, vals, width, label=mode)
        ax.set_xticks(x, keys, rotation=45, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
    axes[0, 0].legend(fontsize=8)
    for ax, mode in zip(axes[1], modes):
        t = traces[mode]
        ax.plot(t["target"], label="asked for by the audio", lw=2)
        ax.plot(t["source"], label="source video", ls="--")
        ax.plot(t["read"], label=f"read from {method_name}")
        ax.set_title(f"{mode}: jaw opening, first clip", fontsize=10)
        ax.set_xlabel("frame")
        ax.set_ylim(0, 1)
    axes[1, 0].legend(fontsize=7)
    for ax in axes[1, len(modes) :]:
        ax.axis("off")
    fig.suptitle(f"keysync bench: {method_name}")
    fig.tight_layout()
    with open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)


def format_table(method_name: str, summary: dict) -> str:
    keys = [k for k in SUMMARY_METRICS if any(k in v for v in summary.values())]
    lines = [f"{method_name:<16}" + "".join(f"{k:>14}" for k in keys)]
    for mode, vals in summary.items():
        lines.append(f"{mode:<16}" + "".join(f"{vals[k]:>14.4g}" if k in vals else f"{'-':>14}" for k in keys))
    return "\n".join(lines)
