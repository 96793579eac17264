"""Score one dubbed clip (frames and a waveform in memory, or files) and sum clips up with 95 % intervals.

A clip's face is tracked once on the output; from that track come SyncNet's crops (``crops``), the
regenerated box that PSNR / SSIM are also measured inside, and the mouth opening LipLeak reads. One more
pass decodes the output (and the source, frame by frame beside it), so memory holds only the 224 px crops.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..constants import SAMPLE_RATE, SAMPLES_PER_FRAME
from ..errors import KeySyncError
from ..media.frames import plan_model_frames
from .lipleak import (
    SPEAKING_MAR,
    lipleak,
    mouth_aspect_ratio,
    mouth_jitter,
    silent_frames,
)
from .psnr_ssim import psnr_from_mse, regenerated_box, ssim_map
from .syncnet import FACE_SIZE, WINDOW, SyncNet, SyncScores, score_sync

log = logging.getLogger("keysync.eval")

# metric name -> what it is (the order of tables and files)
METRICS = {
    "lse_d": "LSE-D: SyncNet's mean distance at the best offset (lower is better)",
    "lse_c": "LSE-C: SyncNet's confidence, median minus min distance (higher is better)",
    "av_offset": "SyncNet's audio-video offset in frames (0 is in sync; positive: audio leads)",
    "psnr_box": "PSNR (dB) against the source inside the regenerated lower-face box",
    "ssim_box": "SSIM against the source inside the regenerated lower-face box",
    "psnr_frame": "PSNR (dB) against the source over the whole frame",
    "ssim_frame": "SSIM against the source over the whole frame",
    "lipleak": "share of the driving audio's silent frames where the mouth looks like speech",
    "mouth_jitter": "mean |second difference| of the mouth aspect ratio, frame to frame",
    "fid": "FID between the clip's output frames and its source frames (Inception pool features; biased with few frames)",
    "fid_set": "FID over every clip's frames together: one value for the set",
    "fvd": "FVD between the clip's output and source 16-frame windows (I3D features; biased with few windows)",
    "fvd_set": "FVD over every clip's windows together: one value for the set",
    "csim": "ArcFace identity similarity: cosine of the output's and the source's face embeddings, mean over frames",
    "lpips_box": "LPIPS (AlexNet, v0.1) against the source inside the regenerated lower-face box (lower is better)",
    "lpips_frame": "LPIPS (AlexNet, v0.1) against the source over the whole frame (lower is better)",
}
# --metrics name -> the metrics it gives
METRIC_GROUPS = {
    "lse": ("lse_d", "lse_c", "av_offset"), "psnr": ("psnr_box", "psnr_frame"), "ssim": ("ssim_box", "ssim_frame"),
    "lipleak": ("lipleak",), "jitter": ("mouth_jitter",), "fid": ("fid", "fid_set"), "fvd": ("fvd", "fvd_set"),
    "csim": ("csim",), "lpips": ("lpips_box", "lpips_frame"),
}


@dataclass
class ClipResult:
    """One clip's metrics (NaN where not measured) and the SyncNet details (``sync``, None without weights)."""

    name: str
    values: dict[str, float] = field(default_factory=lambda: dict.fromkeys(METRICS, math.nan))
    sync: SyncScores | None = None
    error: str | None = None  # why the clip could not be scored
    # (window, its confidence, the 224 px face crop SyncNet saw at the window's middle frame) of the least
    # confident windows, lowest first (``least_confident_windows``); empty without SyncNet
    low_sync: list[tuple[int, float, np.ndarray]] = field(default_factory=list)
    # {"fid" / "fvd": (output's, source's) features}, which the set's FID / FVD pool (``quality.set_totals``)
    features: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


LOW_SYNC_FRAMES = 4


def least_confident_windows(confidence: np.ndarray, count: int = LOW_SYNC_FRAMES, apart: int = WINDOW) -> list[int]:
    """The ``count`` SyncNet windows of lowest per-window confidence, lowest first, each at least ``apart``
    windows from those before it (the confidence is median filtered: one moment, not its neighbours)."""
    chosen: list[int] = []
    for k in np.argsort(np.asarray(confidence), kind="stable"):
        if len(chosen) == count:
            break
        if all(abs(int(k) - c) >= apart for c in chosen):
            chosen.append(int(k))
    return chosen


class _Quality:
    """PSNR from the squared error pooled over the clip's pixels (capped at ``PSNR_CAP`` for identical
    pixels, as the benchmark does); SSIM per frame as scikit-image gives it, in the box the mean of its map
    over the box's pixels; both averaged over frames."""

    def __init__(self, ssim: bool = True):
        self.sums = {k: [0.0, 0.0, 0] for k in ("box", "frame")}  # squared error, SSIM, pixels
        self.ssim_frames: list[float] = []
        self.ssim = ssim  # False: SSIM is not computed (--metrics without it)

    def add(self, output: np.ndarray, source: np.ndarray, box: np.ndarray | None) -> None:
        if output.shape != source.shape:
            raise KeySyncError(f"the output's frames are {output.shape[1]}x{output.shape[0]} and the source's "
                               f"{source.shape[1]}x{source.shape[0]}; compare videos of the same size")
        error = ((output.astype(np.float64) - source.astype(np.float64)) ** 2).mean(axis=2)
        mean, ssim = ssim_map(output, source) if self.ssim else (math.nan, np.zeros(error.shape))
        self.ssim_frames.append(mean)
        for name, region in (("frame", np.ones(error.shape, bool)), ("box", box)):
            if region is not None and region.any():
                s = self.sums[name]
                s[0] += float(error[region].sum())
                s[1] += float(ssim[region].sum())
                s[2] += int(region.sum())

    def values(self) -> dict[str, float]:
        out = {}
        for name, (squared, ssim, count) in self.sums.items():
            out[f"psnr_{name}"] = psnr_from_mse(squared / count if count else math.nan)
            out[f"ssim_{name}"] = ssim / count if count and self.ssim else math.nan
        out["ssim_frame"] = float(np.mean(self.ssim_frames)) if self.ssim_frames else math.nan
        return out


def score_clip(output, audio: np.ndarray, source=None, syncnet: SyncNet | None = None, backend=None,
               face_index: int | None = None, name: str = "the output", quality_nets=None, metrics=None) -> ClipResult:
    """Every metric of one clip. ``output`` and ``source`` are frame sources (``keysync.media.source``:
    a video file or frames in memory); ``audio`` is the driving speech, 16 kHz mono float32, sample 0 at
    the output's time 0. ``quality_nets`` (``quality.QualityNets``): the networks of FID, FVD, CSIM and
    LPIPS, measured against the source; ``metrics``: the ``METRIC_GROUPS`` names to give (None: all)."""
    from ..faces.backends import load_backend
    from ..faces.crops import cut_crop
    from ..faces.frontend import locate_face
    from .crops import syncnet_boxes
    from .quality import QualityScorer

    face = locate_face(output.frames(), backend or load_backend(), FACE_SIZE, "landmarks", face_index=face_index, name=name)
    times = face.tracked.times
    plan = plan_model_frames(times)
    boxes = syncnet_boxes(face)
    ticks = [[] for _ in times]  # the 25 fps ticks each decoded frame is shown at
    for k, i in enumerate(plan.source_index):
        ticks[i].append(k)
    crops = np.empty((plan.num_model_frames, FACE_SIZE, FACE_SIZE, 3), np.uint8)
    quality = _Quality(ssim=metrics is None or "ssim" in metrics) if source is not None else None
    scorer = QualityScorer(quality_nets) if source is not None and quality_nets else None
    source_frames = source.frames() if source is not None else None
    landmarks, present = face.target.landmarks, face.target.present
    for frame in output.frames():
        for k in ticks[frame.index]:
            crops[k] = cut_crop(frame.image, boxes[frame.index])
        original = next(source_frames, None) if source_frames is not None else None
        if original is not None:  # an output running on past its source is compared where both show
            h, w = frame.image.shape[:2]
            box = regenerated_box(landmarks[frame.index][None], h, w)[0] if present[frame.index] else None
            quality.add(frame.image, original.image, box)
            if scorer is not None:
                scorer.add(frame.image, original.image, box, landmarks[frame.index] if present[frame.index] else None,
                           len(ticks[frame.index]))
    if source_frames is not None and next(source_frames, None) is not None:
        raise KeySyncError(f"{name} has {len(times)} frames, fewer than its source; give the whole dubbed video")

    result = ClipResult(name)
    if quality is not None:
        result.values.update(quality.values())
    if scorer is not None:
        result.values.update(scorer.values())
        result.features = scorer.features
    start = int(round(plan.start * SAMPLE_RATE))
    speech = np.asarray(audio, np.float32)[max(start, 0) : max(start, 0) + plan.num_model_frames * SAMPLES_PER_FRAME]
    ticks_landmarks, ticks_present = landmarks[plan.source_index], present[plan.source_index]
    opening = np.nan_to_num(mouth_aspect_ratio(ticks_landmarks))
    silent = silent_frames(speech, plan.num_model_frames)
    result.values["lipleak"] = lipleak(opening, silent, SPEAKING_MAR, valid=ticks_present)
    result.values["mouth_jitter"] = mouth_jitter(opening, valid=ticks_present)
    if syncnet is not None:
        result.sync = score_sync(syncnet, crops, speech)
        result.values.update(lse_d=result.sync.min_dist, lse_c=result.sync.confidence, av_offset=float(result.sync.offset))
        confidence = result.sync.framewise_confidence
        result.low_sync = [(k, float(confidence[k]), crops[k + WINDOW // 2].copy()) for k in least_confident_windows(confidence)]
    if metrics is not None:  # what --metrics left out
        for group, names in METRIC_GROUPS.items():
            if group not in metrics:
                result.values.update(dict.fromkeys(names, math.nan))
                result.features.pop(group, None)
    return result


def score_frames(frames, audio: np.ndarray, fps: float, sample_rate: int = SAMPLE_RATE, source_frames=None,
                 syncnet: SyncNet | str | Path | None = None, backend: str = "mediapipe", face_index: int | None = None,
                 weights: dict | None = None, quality_nets=None) -> ClipResult:
    """``score_clip`` on frames held in memory: ``frames`` (and ``source_frames``, the video before
    dubbing) as (N, H, W, 3) uint8 RGB at ``fps``, ``audio`` the driving speech at ``sample_rate``;
    ``syncnet`` a loaded net or a weight file's path (None: no LSE scores); ``weights`` {key: path} of
    the quality metrics' weight files (keys of ``keysync.eval.weights.WEIGHTS``: inception, i3d, arcface,
    lpips_alexnet + lpips_linear), or ``quality_nets`` already loaded."""
    from ..faces.backends import load_backend
    from ..media.audio import resample_to_16k
    from ..media.source import ArraySource
    from .quality import load_quality_nets
    from .syncnet import load_syncnet

    net = load_syncnet(syncnet) if isinstance(syncnet, (str, Path)) else syncnet
    source = ArraySource(source_frames, fps) if source_frames is not None else None
    nets = quality_nets if quality_nets is not None else load_quality_nets(weights) if weights else None
    return score_clip(ArraySource(frames, fps), resample_to_16k(audio, sample_rate), source, net,
                      load_backend(backend), face_index, name="the frames", quality_nets=nets)


def score_files(pairs, net: SyncNet | None = None, backend_name: str = "mediapipe", face_index: int | None = None,
                quality_nets=None, metrics=None) -> list[ClipResult]:
    """``score_clip`` on each (name, output, source, audio) file; a clip that fails is a note and an
    error row, and the others are still scored."""
    from ..faces.backends import load_backend
    from ..media.audio import load_audio
    from ..media.source import VideoSource

    backend = load_backend(backend_name)
    results = []
    for name, output, source, audio in pairs:
        try:
            speech = load_audio(audio if audio is not None else output)
            result = score_clip(VideoSource(output), speech, VideoSource(source) if source else None, net, backend,
                                face_index, name=str(output), quality_nets=quality_nets, metrics=metrics)
            result.name = name
        except KeySyncError as err:
            log.warning(f"{name}: {err}")
            result = ClipResult(name, error=str(err))
        results.append(result)
    return results


def summarise(results: list[ClipResult]) -> dict[str, dict[str, float]]:
    """Per metric over the scored clips: mean, the 95 % interval of the mean (Student's t over clips; NaN
    with fewer than 2) and the number of clips that have it; ``fid_set`` / ``fvd_set`` are the distance over
    all clips' features together (``quality.set_totals``; no interval)."""
    from scipy import stats

    from .quality import set_totals

    total = {}
    for metric in METRICS:
        values = np.array([r.values[metric] for r in results if r.error is None], np.float64)
        values = values[np.isfinite(values)]
        row = {"mean": float(values.mean()) if len(values) else math.nan, "low": math.nan, "high": math.nan, "clips": len(values)}
        if len(values) >= 2:
            spread = stats.sem(values)
            row["low"], row["high"] = (row["mean"], row["mean"]) if spread == 0 else map(
                float, stats.t.interval(0.95, len(values) - 1, loc=row["mean"], scale=spread))
        total[metric] = row
    total.update(set_totals(results))
    return total
