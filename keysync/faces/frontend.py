"""The one face front end: frames -> the target face's track and one crop box per frame.

``keysync dub``, ``keysync prepare`` (training shards) and the benchmark all call ``locate_face``, so the
crops a model is trained on are cut exactly as the crops it dubs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import KeySyncError
from ..media.video import Frame
from .crops import CropBox, plan_crops
from .tracking import TargetFace, TrackingResult, select_target, track_faces


@dataclass
class FaceLocation:
    tracked: TrackingResult
    target: TargetFace
    boxes: list[CropBox]  # one per frame; where the face is absent, the nearest present frame's box
    fill: np.ndarray  # per frame, the nearest frame where the face is present


def nearest_present(present: np.ndarray) -> np.ndarray:
    """For each frame, the nearest frame where the face is present (ties go to the earlier one)."""
    idx = np.flatnonzero(present)
    pos = np.clip(np.searchsorted(idx, np.arange(len(present))), 1, max(1, len(idx) - 1))
    before, after = idx[np.maximum(pos - 1, 0)], idx[np.minimum(pos, len(idx) - 1)]
    frames = np.arange(len(present))
    return np.where(np.abs(frames - before) <= np.abs(after - frames), before, after)


def locate_face(frames: Iterable[Frame], backend, size: int, follow: str, face_index: int | None = None,
                point=None, name: str = "the video", observe=None) -> FaceLocation:
    """Track every face, pick the target (``face_index``, ``point``, else the largest per shot) and plan its
    ``size``-pixel crops by the model's crop plan ``follow``. ``observe``: as for ``track_faces``."""
    return place_crops(track_faces(frames, backend, observe=observe), size, follow, face_index, point, name)


def place_crops(tracked: TrackingResult, size: int, follow: str, face_index: int | None = None, point=None,
                name: str = "the video") -> FaceLocation:
    """``locate_face`` after its tracking pass: tracking needs no model, so it may run elsewhere first
    (``keysync demo`` tracks in the process that renders the clip, while the model loads)."""
    target = select_target(tracked, face_index=face_index, point=point)
    if not target.present.any():
        raise KeySyncError(f"no face found in {name}; give a video in which the speaker's face is visible")
    boxes = plan_crops(target, tracked.times, size=size, follow=follow)
    fill = nearest_present(target.present)
    return FaceLocation(tracked, target, [boxes[i] if boxes[i] is not None else boxes[fill[i]] for i in range(len(boxes))], fill)


def save_location(location: FaceLocation, path) -> None:
    """Write what ``locate_face`` found to an .npz file (plain arrays, no pickle), so that other processes
    (the pieces of a long video in ``keysync batch --split-long``) dub with the very same track and crops."""
    from ..files import write_atomic

    tracked, target = location.tracked, location.target
    boxes = np.array([[b.cx, b.cy, b.side, b.angle] for b in location.boxes], dtype=np.float64)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, size=[tracked.width, tracked.height], times=tracked.times, shot_starts=tracked.shot_starts,
                     landmarks=target.landmarks, present=target.present, track_index=target.track_index,
                     target_shot_starts=target.shot_starts, boxes=boxes, crop_size=location.boxes[0].size, fill=location.fill)

    write_atomic(path, write)


def load_location(path) -> FaceLocation:
    """What ``save_location`` wrote (the face tracks other than the target's are not kept)."""
    with np.load(path, allow_pickle=False) as data:
        width, height = (int(v) for v in data["size"])
        tracked = TrackingResult(width, height, data["times"], [int(i) for i in data["shot_starts"]], [])
        target = TargetFace(data["landmarks"], data["present"], data["track_index"], [int(i) for i in data["target_shot_starts"]])
        size = int(data["crop_size"])
        boxes = [CropBox(*(float(v) for v in row), size) for row in data["boxes"]]
        return FaceLocation(tracked, target, boxes, data["fill"])
