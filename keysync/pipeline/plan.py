"""Keyframe and segment planning (reference section 1.6, with its bugs fixed).

Frames are 25 fps model frames ``0 .. L-1``. Keyframes sit every 13 frames; the timeline is padded to
``14 + 13 k >= L`` frames (the pad repeats the last frame's picture and hears silence) and trimmed after
sampling, so no trailing frame is dropped and clips shorter than 14 frames work. Keyframes are sampled in
batches of 14 slots, and *every* batch starts with the identity anchor (the reference frame), as in
training; the last batch is filled up with repeats of its last keyframe. Consecutive keyframes bound the
14-frame interpolation segments.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..constants import CLIP, OFFICIAL_STEPS
from ..errors import KeySyncError

LONG_AUDIO = ("trim", "hold", "pingpong")  # audio longer than the video: cut it, hold the last frame, play back and forth
SHORT_AUDIO = ("pad", "trim")  # audio shorter than the video: pad it with silence, or cut the video
STEP = CLIP - 1  # 13: keyframe spacing, and keyframes per batch after the anchor


def check_steps(steps: int) -> None:
    """``--steps`` counts network calls per clip per stage (``keysync.diffusion.sampling_sigmas``)."""
    if steps < 1:
        raise KeySyncError(f"--steps {steps}: sampling needs at least 1 network call per stage ({OFFICIAL_STEPS} is the official schedule)")


def check_deep_cache(deep_cache: int) -> None:
    """``--deep-cache N``: the networks' deep levels run on one sampling step in N (``keysync.diffusion.speed``)."""
    if deep_cache < 1:
        raise KeySyncError(f"--deep-cache {deep_cache}: give 1 (off) or N > 1 (the deep levels run on one sampling step in N)")


@dataclass(frozen=True)
class KeyframeBatch:
    """One 14-slot keyframe sampling call: slot 0 is the anchor, then keyframe frame indices."""

    keyframes: tuple[int, ...]  # frame index of each real keyframe slot (1 .. 13 of them)

    def slots(self, anchor: int) -> list[int]:
        """Frame index per slot: [anchor, keyframes..., last keyframe repeated to fill 14]."""
        fill = [self.keyframes[-1]] * (STEP - len(self.keyframes))
        return [anchor, *self.keyframes, *fill]


@dataclass(frozen=True)
class Window:
    """A unit of streaming: its keyframe batches are sampled together, then its segments interpolated."""

    batches: tuple[KeyframeBatch, ...]
    segments: tuple[int, ...]  # start frame of each 14-frame segment
    first_frame: int  # first output frame this window produces
    stop_frame: int  # one past the last output frame it produces (within the real, unpadded timeline)

    @property
    def keyframes(self) -> list[int]:
        """The keyframes its batches sample, in order (the last one starts the next window)."""
        return [f for batch in self.batches for f in batch.keyframes]


def first_window_keyframes(batches_per_window: int = 1) -> list[int]:
    """The keyframes of a long video's first window; a shorter video's first window has the first of them."""
    return list(range(0, STEP * STEP * batches_per_window, STEP))


@dataclass(frozen=True)
class Plan:
    num_frames: int  # L: real output frames
    padded_frames: int  # 14 + 13 k >= L
    keyframes: tuple[int, ...]
    windows: tuple[Window, ...]

    @property
    def segments(self) -> list[int]:
        return [s for w in self.windows for s in w.segments]

    def source_frame(self, padded_index: int) -> int:
        """The real frame whose picture a (possibly padded) timeline position shows."""
        return min(padded_index, self.num_frames - 1)


def plan_frames(num_frames: int, batches_per_window: int = 1) -> Plan:
    """Plan keyframes, keyframe batches, segments and streaming windows for ``num_frames`` frames."""
    if num_frames < 1:
        raise ValueError("nothing to dub: the clip has no frames")
    if batches_per_window < 1:
        raise ValueError("batches_per_window must be at least 1")
    intervals = max(1, -(-(num_frames - 1) // STEP))  # ceil((L-1)/13), at least one segment
    padded = intervals * STEP + 1
    keyframes = tuple(range(0, padded, STEP))
    # Keyframe 0 opens the first batch; each batch then adds up to 13 new keyframes.
    batches = [KeyframeBatch(keyframes[i : i + STEP]) for i in range(0, len(keyframes), STEP)]
    windows = []
    for w in range(0, len(batches), batches_per_window):
        group = tuple(batches[w : w + batches_per_window])
        first_kf, last_kf = group[0].keyframes[0], group[-1].keyframes[-1]
        # A window interpolates from the previous window's last keyframe up to its own last keyframe.
        seg_start = max(0, first_kf - STEP)
        segments = tuple(range(seg_start, last_kf, STEP))
        first_frame = 0 if w == 0 else first_kf - STEP + 1
        windows.append(Window(group, segments, first_frame, min(num_frames, last_kf + 1)))
    return Plan(num_frames, padded, keyframes, tuple(windows))
