"""The model runs at 25 fps; the input may be 24, 30, 60 fps or variable. Map between the two by timestamp."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constants import MODEL_FPS


@dataclass(frozen=True)
class ModelFramePlan:
    """Which source frame the model sees at each 25 fps tick, and which tick each source frame gets back.

    ``times[k] = start + k / fps``; ``source_index[k]`` is the source frame on screen at that time (the last
    one whose timestamp is not later); ``model_index[i]`` is the tick nearest to source frame ``i``'s
    timestamp (halves round up), i.e. the generated frame to paste onto it. Every source frame gets exactly one model frame,
    so the output keeps the input's frame count and timestamps.
    """

    fps: int
    start: float
    times: np.ndarray  # (K,) float64 seconds
    source_index: np.ndarray  # (K,) int64
    model_index: np.ndarray  # (N,) int64

    @property
    def num_model_frames(self) -> int:
        return len(self.times)


def plan_model_frames(source_times, duration: float | None = None, fps: int = MODEL_FPS) -> ModelFramePlan:
    """Plan the 25 fps model frames for a video whose frames have timestamps ``source_times`` (seconds).

    ``duration`` is the video's length from its first timestamp; by default the last timestamp plus the
    median frame interval. The number of model frames is ``round(duration * fps)`` (at least 1).
    """
    times_in = np.asarray(source_times, dtype=np.float64)
    if times_in.ndim != 1 or len(times_in) == 0:
        raise ValueError("source_times must be a non-empty 1-D sequence of seconds")
    if np.any(np.diff(times_in) <= 0):
        raise ValueError("source_times must be strictly increasing")
    start = float(times_in[0])
    if duration is None:
        step = float(np.median(np.diff(times_in))) if len(times_in) > 1 else 1.0 / fps
        duration = float(times_in[-1] - start) + step
    count = max(1, int(round(duration * fps)))
    model_times = start + np.arange(count, dtype=np.float64) / fps
    eps = 1e-6
    source_index = np.searchsorted(times_in, model_times + eps, side="right") - 1
    source_index = np.clip(source_index, 0, len(times_in) - 1)
    model_index = np.clip(np.floor((times_in - start) * fps + 0.5), 0, count - 1).astype(np.int64)
    return ModelFramePlan(fps, start, model_times, source_index.astype(np.int64), model_index)
