"""Frames by index, in any order, with bounded memory.

Playing forward is one decoder running ahead. Jumping back (a video played back and forth to cover a
longer audio) seeks to the nearest keyframe before a block of ``block`` frames and decodes that block,
so memory stays at one block of frames whatever the video's length.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from ..errors import KeySyncError
from .video import Frame, _rotation_of, _upright, _video_stream, open_media, read_frames


class FrameFetcher:
    """``fetch(i)`` -> frame ``i`` (upright RGB) of a video whose frame timestamps are ``times``."""

    def __init__(self, path: str | Path, times: np.ndarray, block: int = 32):
        self.path, self.times, self.block = path, np.asarray(times, np.float64), block
        self.cache: dict[int, np.ndarray] = {}
        self._forward = None
        self._position = 0  # index of the next frame the forward decoder yields

    def fetch(self, index: int) -> np.ndarray:
        if index in self.cache:
            return self.cache[index]
        if not 0 <= index < len(self.times):
            raise IndexError(f"frame {index} outside 0..{len(self.times) - 1}")
        if self._forward is None and index < self.block:
            self._forward, self._position = read_frames(self.path), 0
        if self._forward is not None and index >= self._position:
            while self._position <= index:
                frame: Frame = next(self._forward)
                self._position = frame.index + 1
                if frame.index > index - self.block:
                    self.cache[frame.index] = frame.image
            for old in [i for i in self.cache if i <= index - self.block]:
                del self.cache[old]
            return self.cache[index]
        # A jump: decode one block going the way playback goes (forward after the cache, else backward).
        if self.cache and index > max(self.cache):
            self._load_block(index, min(len(self.times) - 1, index + self.block - 1))
        else:
            self._load_block(max(0, index - self.block + 1), index)
        return self.cache[index]

    def _load_block(self, first: int, last: int) -> None:
        """Decode frames ``first .. last`` after seeking to a keyframe before them."""
        self.cache = {}
        with open_media(self.path) as container:
            stream = _video_stream(container, self.path)
            stream.thread_type = "AUTO"  # as read_frames: a block may start a whole group of pictures after its keyframe
            target = int(self.times[first] / stream.time_base) if stream.time_base else 0
            container.seek(max(0, target), stream=stream, backward=True, any_frame=False)
            try:
                for frame in container.decode(stream):
                    if frame.time is None:
                        continue
                    i = int(np.argmin(np.abs(self.times - frame.time)))
                    if abs(self.times[i] - frame.time) > 1e-3 or i < first:
                        continue
                    self.cache[i] = _upright(frame.to_ndarray(format="rgb24"), _rotation_of(frame))
                    if i >= last:
                        break
            except av.FFmpegError as err:
                raise KeySyncError(f"{self.path}: decoding failed near frame {first} ({err}); the file may be damaged")
        if not all(i in self.cache for i in range(first, last + 1)):
            raise KeySyncError(f"{self.path}: could not seek to frame {first}; re-encode the video or use --long-audio hold")
