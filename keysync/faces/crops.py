"""Stabilised square face crops at model resolution, upright, with their exact inverse.

A crop is a square of ``side`` frame pixels centred on the face and turned by the face's roll so that
the eyes are level, resampled to ``size`` x ``size`` (512 for the official model, smaller for small
presets). Levelling matters: the reference's box mask is axis-aligned, so on a tilted head it would cover
the lower eye. Centre, side and roll follow the target's landmarks, smoothed more strongly than the
landmarks themselves so that the crop does not shake, and placed from the points that do not move with
the mouth, so that the crop does not move with it either (see ``plan_crops``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .geometry import warp_area
from .tracking import TargetFace, present_runs, smooth_runs

LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)
# the nose and the eye corners: they move with the head, not with the mouth, the brows or the eyelids
SKULL_POINTS = [*range(27, 36), 36, 39, 42, 45]
CROP_PLANS = ("head", "landmarks")  # see plan_crops


@dataclass(frozen=True)
class CropBox:
    """A square of ``side`` frame pixels around (cx, cy), turned by ``angle`` radians, seen at ``size`` px.

    ``matrix`` maps frame pixel coordinates to crop pixel coordinates (cv2 convention: pixel centres are
    integers); the square may reach outside the frame, where the crop repeats the frame's edge pixels and
    paste-back ignores it.
    """

    cx: float
    cy: float
    side: float
    angle: float
    size: int

    @property
    def scale(self) -> float:
        return self.size / self.side

    @property
    def matrix(self) -> np.ndarray:
        c, s = np.cos(self.angle) * self.scale, np.sin(self.angle) * self.scale
        half = self.size / 2 - 0.5
        return np.array([[c, s, half - c * self.cx - s * self.cy], [-s, c, half + s * self.cx - c * self.cy]])

    @property
    def inverse(self) -> np.ndarray:
        return cv2.invertAffineTransform(self.matrix)

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Frame pixel coordinates (..., 2) -> crop pixel coordinates."""
        m = self.matrix
        return np.asarray(points, dtype=np.float64) @ m[:, :2].T + m[:, 2]

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Crop pixel coordinates (..., 2) -> frame pixel coordinates (the inverse of ``to_crop``)."""
        m = self.inverse
        return np.asarray(points, dtype=np.float64) @ m[:, :2].T + m[:, 2]

    def frame_bounds(self, height: int, width: int) -> tuple[slice, slice]:
        """Rows and columns of the frame that the square touches (clipped to the frame)."""
        corners = self.to_frame(np.array([[-1, -1], [self.size, -1], [-1, self.size], [self.size, self.size]]))
        x0, y0 = np.floor(corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
        return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


@dataclass(frozen=True)
class SkullFrame:
    """Coordinates that move with the head and not with the mouth: the face turned upright by its roll
    ``angle``, centred on the ``SKULL_POINTS`` (``middle``) and measured in their spread per axis."""

    angle: float
    middle: np.ndarray  # (2,) upright pixels
    spread: np.ndarray  # (2,) upright pixels

    @classmethod
    def of(cls, landmarks: np.ndarray, level_eyes: bool = True) -> "SkullFrame":
        dx, dy = landmarks[RIGHT_EYE].mean(axis=0) - landmarks[LEFT_EYE].mean(axis=0)
        angle = float(np.arctan2(dy, dx)) if level_eyes else 0.0
        c, s = np.cos(angle), np.sin(angle)
        points = (landmarks @ np.array([[c, -s], [s, c]]))[SKULL_POINTS]
        # per axis: a turning head narrows the face, not its height
        return cls(angle, points.mean(axis=0), np.maximum(points.std(axis=0), 1e-6))

    def upright(self, points: np.ndarray) -> np.ndarray:
        """Frame pixels -> upright pixels (rotated by -angle)."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        return np.asarray(points, np.float64) @ np.array([[c, -s], [s, c]])

    def rotate_back(self, upright: np.ndarray) -> np.ndarray:
        """Upright pixels -> frame pixels."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        return np.asarray(upright, np.float64) @ np.array([[c, s], [-s, c]])

    def to_skull(self, points: np.ndarray) -> np.ndarray:
        """Frame pixels -> skull units."""
        return (self.upright(points) - self.middle) / self.spread

    def to_frame(self, skull: np.ndarray) -> np.ndarray:
        """Skull units -> frame pixels."""
        return self.rotate_back(self.middle + np.asarray(skull, np.float64) * self.spread)


def plan_crops(
    target: TargetFace,
    times: np.ndarray,
    size: int = 512,
    scale: float = 1.8,
    smooth_seconds: float = 0.2,
    level_eyes: bool = True,
    follow: str = "head",
) -> list[CropBox | None]:
    """One crop per frame (None where the target is absent).

    The square is ``scale`` times the larger side of the landmarks' box (measured in the face's own
    upright frame), centred on that box; roll, centre and side are Gaussian-smoothed over
    ``smooth_seconds`` within each visible run, never across a scene cut. ``level_eyes=False`` keeps the
    crop axis-aligned.

    ``follow`` (``CROP_PLANS``): ``"head"`` takes the box once per visible run (its median) relative to
    the nose and the eye corners (``SKULL_POINTS``) and carries it with them frame to frame;
    ``"landmarks"`` frames each frame's own box. Why the first: the box's lower edge is the chin, so a
    crop framed on each frame's box moves and grows as the jaw opens, and the visible upper face then
    shows the network how the source mouth moves, which is what the lower-face mask is there to hide (on
    synthetic validation clips the nose's height in such a crop correlated -0.34 to -0.86 with the
    mouth opening, even after smoothing). A model is dubbed with the plan it was trained on
    (``KeySyncModel.crop_plan``): the small model shipped so far, trained on ``"landmarks"`` crops, loses
    SSIM in the box (0.005 on the test split) when given the other.
    """
    if follow not in CROP_PLANS:
        raise ValueError(f"unknown crop plan {follow!r}; choose one of {', '.join(CROP_PLANS)}")
    present = np.asarray(target.present, bool)
    geometry = np.full((len(present), 4), np.nan)
    skull = np.full((len(present), 5), np.nan)  # skull points' centre (upright), spread per axis, roll
    framing = np.full((len(present), 4), np.nan)  # the box's centre offset and extent, in skull spreads
    for i in np.flatnonzero(present):
        frame = SkullFrame.of(target.landmarks[i], level_eyes)
        upright = frame.upright(target.landmarks[i])
        lo, hi = upright.min(axis=0), upright.max(axis=0)
        centre = frame.rotate_back((lo + hi) / 2)
        geometry[i] = [centre[0], centre[1], scale * float(np.max(hi - lo)), frame.angle]
        if follow == "head":
            skull[i] = [*frame.middle, *frame.spread, frame.angle]
            framing[i] = [*(((lo + hi) / 2 - frame.middle) / frame.spread), *((hi - lo) / frame.spread)]
    if follow == "head":  # each frame's box above is replaced by its run's median box, carried by the skull
        for start, end in present_runs(present, target.shot_starts):
            offset, extent = np.split(np.median(framing[start:end], axis=0), 2)
            for i in range(start, end):
                frame = SkullFrame(skull[i, 4], skull[i, :2], skull[i, 2:4])
                centre = frame.to_frame(offset)
                geometry[i] = [centre[0], centre[1], scale * float(np.max(extent * frame.spread)), frame.angle]
    if len(times) > 1 and smooth_seconds > 0:
        step = float(np.median(np.diff(times)))
        geometry = smooth_runs(geometry, present, target.shot_starts, sigma=smooth_seconds / max(step, 1e-6))
    return [
        CropBox(float(cx), float(cy), max(8.0, float(side)), float(angle), size) if present else None
        for present, (cx, cy, side, angle) in zip(target.present, geometry)
    ]


def cut_crop(image: np.ndarray, box: CropBox) -> np.ndarray:
    """The crop's pixels: (size, size, C) uint8."""
    return warp_area(image, box.matrix, box.size, box.size)
