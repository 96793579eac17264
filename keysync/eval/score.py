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
from .syncnet import FACE_SIZE, SyncNet, SyncScores, score_sync

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
}


@dataclass
class ClipResult:
    """One clip's metrics (NaN where not measured) and the SyncNet details (``sync``, None without weights)."""

    name: str
    values: dict[str, float] = field(default_factory=lambda: dict.fromkeys(METRICS, math.nan))
    sync: SyncScores | None = None
    error: str | None = None  # why the clip could not be scored


def _ssim(a: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray]:
    """SSIM of two RGB uint8 images with Wang et al.'s settings (Gaussian sigma 1.5, population covariance):
    scikit-image's mean (which leaves out a 5-pixel border) and its per-pixel map averaged over channels."""
    from skimage.metrics import structural_similarity

    mean, full = structural_similarity(
        a, b, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True
    )
    return float(mean), full.mean(axis=2)


class _Quality:
    """PSNR from the squared error pooled over the clip's pixels (capped at ``PSNR_CAP`` for identical
    pixels, as the benchmark does); SSIM per frame as scikit-image gives it, in the box the mean of its map
    over the box's pixels; both averaged over frames."""

    def __init__(self):
        self.sums = {k: [0.0, 0.0, 0] for k in ("box", "frame")}  # squared error, SSIM, pixels
        self.ssim_frames: list[float] = []

    def add(self, output: np.ndarray, source: np.ndarray, box: np.ndarray | None) -> None:
        if output.shape != source.shape:
            raise KeySyncError(f"the output's frames are {output.shape[1]}x{output.shape[0]} and the source's "
                               f"{source.shape[1]}x{source.shape[0]}; compare videos of the same size")
        error = ((output.astype(np.float64) - source.astype(np.float64)) ** 2).mean(axis=2)
        mean, ssim = _ssim(output, source)
        self.ssim_frames.append(mean)
        for name, region in (("frame", np.ones(error.shape, bool)), ("box", box)):
            if region is not None and region.any():
                s = self.sums[name]
                s[0] += float(error[region].sum())
                s[1] += float(ssim[region].sum())
                s[2] += int(region.sum())

    def values(self) -> dict[str, float]:
        from ..bench.metrics import PSNR_CAP

        out = {}
        for name, (squared, ssim, count) in self.sums.items():
            mse = squared / count if count else math.nan
            out[f"psnr_{name}"] = PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255.0**2 / mse)) if count else math.nan
            out[f"ssim_{name}"] = ssim / count if count else math.nan
        out["ssim_frame"] = float(np.mean(self.ssim_frames)) if self.ssim_frames else math.nan
        return out


def score_clip(output, audio: np.ndarray, source=None, syncnet: SyncNet | None = None, backend=None,
               face_index: int | None = None, name: str = "the output") -> ClipResult:
    """Every metric of one clip. ``output`` and ``source`` are frame sources (``keysync.media.source``:
    a video file or frames in memory); ``audio`` is the driving speech, 16 kHz mono float32, sample 0 at
    the output's time 0."""
    from ..bench.metrics import SPEAKING_MAR, lipleak, mouth_aspect_ratio, mouth_jitter, regenerated_box, silent_frames
    from ..faces.backends import load_backend
    from ..faces.crops import cut_crop
    from ..faces.frontend import locate_face
    from .crops import syncnet_boxes

    face = locate_face(output.frames(), backend or load_backend(), FACE_SIZE, "landmarks", face_index=face_index, name=name)
    times = face.tracked.times
    plan = plan_model_frames(times)
    boxes = syncnet_boxes(face)
    ticks = [[] for _ in times]  # the 25 fps ticks each decoded frame is shown at
    for k, i in enumerate(plan.source_index):
        ticks[i].append(k)
    crops = np.empty((plan.num_model_frames, FACE_SIZE, FACE_SIZE, 3), np.uint8)
    quality = _Quality() if source is not None else None
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
    if source_frames is not None and next(source_frames, None) is not None:
        raise KeySyncError(f"{name} has {len(times)} frames, fewer than its source; give the whole dubbed video")

    result = ClipResult(name)
    if quality is not None:
        result.values.update(quality.values())
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
    return result


def score_frames(frames, audio: np.ndarray, fps: float, sample_rate: int = SAMPLE_RATE, source_frames=None,
                 syncnet: SyncNet | str | Path | None = None, backend: str = "mediapipe", face_index: int | None = None) -> ClipResult:
    """``score_clip`` on frames held in memory: ``frames`` (and ``source_frames``, the video before
    dubbing) as (N, H, W, 3) uint8 RGB at ``fps``, ``audio`` the driving speech at ``sample_rate``;
    ``syncnet`` a loaded net or a weight file's path (None: no LSE scores)."""
    from ..faces.backends import load_backend
    from ..media.audio import resample_to_16k
    from ..media.source import ArraySource
    from .syncnet import load_syncnet

    net = load_syncnet(syncnet) if isinstance(syncnet, (str, Path)) else syncnet
    source = ArraySource(source_frames, fps) if source_frames is not None else None
    return score_clip(ArraySource(frames, fps), resample_to_16k(audio, sample_rate), source, net,
                      load_backend(backend), face_index, name="the frames")


def score_files(pairs, net: SyncNet | None = None, backend_name: str = "mediapipe", face_index: int | None = None) -> list[ClipResult]:
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
                                face_index, name=str(output))
            result.name = name
        except KeySyncError as err:
            log.warning(f"{name}: {err}")
            result = ClipResult(name, error=str(err))
        results.append(result)
    return results


def summarise(results: list[ClipResult]) -> dict[str, dict[str, float]]:
    """Per metric over the scored clips: mean, the 95 % interval of the mean (Student's t over clips; NaN
    with fewer than 2) and the number of clips that have it."""
    from scipy import stats

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
    return total
