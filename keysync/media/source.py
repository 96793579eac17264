"""Where a dub's frames come from: a video file (decoded twice, streaming) or frames held by the caller.

A dub reads its input twice: once whole, to track the face, then frame by frame, in any order (a video
played back and forth), to cut crops and to paste. A file is decoded each time (``FrameFetcher``); frames
given in memory are indexed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import KeySyncError
from .seek import FrameFetcher
from .video import Frame, VideoInfo, probe_video, read_frames


class VideoSource:
    """A video file."""

    def __init__(self, path: str | Path, info: VideoInfo | None = None):
        self.path, self.info = path, info or probe_video(path)

    def frames(self) -> Iterator[Frame]:
        return read_frames(self.path)

    def fetcher(self, times: np.ndarray):
        """``.fetch(i)`` -> frame i, in any order, with bounded memory."""
        return FrameFetcher(self.path, times)


class ArraySource:
    """Frames held by the caller: an (N, H, W, 3) array, or any iterable of (H, W, 3) RGB arrays or PIL
    images (an iterable that is not a sequence is read into a list). uint8, or floats in [0, 1]."""

    def __init__(self, frames, fps: float, start: float = 0.0):
        if fps is None or not fps > 0:
            raise KeySyncError(f"fps={fps!r}: give the frames' rate, e.g. fps=25")
        items = frames if hasattr(frames, "__getitem__") and hasattr(frames, "__len__") else list(frames)
        if len(items) == 0:
            raise KeySyncError("no frames given; pass at least one (H, W, 3) RGB frame")
        self.items, self.fps, self.start = items, float(fps), float(start)
        first = self.image(0)
        rate = Fraction(fps).limit_denominator(1001000)
        self.info = VideoInfo(
            path="<frames>", width=first.shape[1], height=first.shape[0], rotation=0, average_rate=rate,
            time_base=1 / (rate * 1000), frame_count=len(items), duration=len(items) / self.fps, pix_fmt="rgb24",
            has_audio=False, audio_rate=0, audio_channels=0, start=self.start,
        )

    def image(self, index: int) -> np.ndarray:
        image = self.items[index]
        if hasattr(image, "convert"):  # a PIL image
            image = image.convert("RGB")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise KeySyncError(f"frame {index} has shape {image.shape}; give (height, width, 3) RGB frames")
        if image.dtype != np.uint8:
            image = np.clip(np.rint(image.astype(np.float32) * 255), 0, 255).astype(np.uint8)
        if index and image.shape[:2] != (self.info.height, self.info.width):
            raise KeySyncError(f"frame {index} is {image.shape[1]}x{image.shape[0]}, frame 0 {self.info.width}x{self.info.height}; give frames of one size")
        return image

    def frames(self) -> Iterator[Frame]:
        for i in range(len(self.items)):
            yield Frame(i, self.start + i / self.fps, self.image(i))

    def fetcher(self, times: np.ndarray):
        return self

    def fetch(self, index: int) -> np.ndarray:
        return self.image(index)


def frame_source(frames: str | Path | Iterable, fps: float | None = None):
    """A path is a video file; anything else is frames in memory at ``fps``."""
    return VideoSource(frames) if isinstance(frames, (str, Path)) else ArraySource(frames, fps)
