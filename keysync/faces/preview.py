"""Pictures of what the tracker found: every face's box and index, and what `keysync dub` pastes on the face to dub."""

from __future__ import annotations

import cv2
import numpy as np

from .crops import CropBox, cut_crop
from .masks import build_mask
from .paste import above_line, paste_back
from .tracking import TargetFace, TrackingResult

TARGET_COLOUR = (0, 220, 0)
OTHER_COLOUR = (255, 200, 0)
MASK_COLOUR = np.array([255, 0, 0], np.float32)


def boxes_by_frame(result: TrackingResult) -> dict[int, list[tuple[int, np.ndarray]]]:
    """frame index -> [(track index, box)] for every face seen on that frame."""
    table: dict[int, list[tuple[int, np.ndarray]]] = {}
    for track in result.tracks:
        for f, box in zip(track.frames, track.boxes):
            table.setdefault(f, []).append((track.index, box))
    return table


def tint_mask(crop: np.ndarray, mask: np.ndarray, strength: float = 0.45) -> np.ndarray:
    """The crop with the mask region tinted red."""
    out = crop.astype(np.float32)
    sel = mask > 0.5
    out[sel] = (1 - strength) * out[sel] + strength * MASK_COLOUR
    return out.astype(np.uint8)


def draw_faces(image: np.ndarray, faces: list[tuple[int, np.ndarray]], target_track: int) -> np.ndarray:
    """Boxes and "face K" labels; the target's in green."""
    out = image.copy()
    thick = max(2, image.shape[0] // 360)
    for index, box in faces:
        colour = TARGET_COLOUR if index == target_track else OTHER_COLOUR
        x0, y0, x1, y1 = (int(round(v)) for v in box[:4])
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick)
        label = f"face {index}" + (" (dub)" if index == target_track else "")
        cv2.putText(out, label, (x0, max(12, y0 - 6)), cv2.FONT_HERSHEY_SIMPLEX, thick / 3, colour, thick)
    return out


def preview_frame(
    image: np.ndarray,
    frame_index: int,
    faces: list[tuple[int, np.ndarray]],
    target: TargetFace,
    crop: CropBox | None,
    mask_kind: str = "box",
    limit: np.ndarray | None = None,
) -> np.ndarray:
    """One annotated frame: the region `keysync dub` pastes (the mask, above the jaw line ``limit`` if
    given: ``jaw_limits``) tinted through the real crop/paste path, then the boxes."""
    if crop is not None:
        mask = build_mask(mask_kind, crop.to_crop(target.landmarks[frame_index]), crop.size)
        if limit is not None:
            mask = mask * above_line(crop.to_crop(limit), crop.size)
        image = paste_back(image, tint_mask(cut_crop(image, crop), mask), crop, mask)
        for x, y in target.landmarks[frame_index]:
            cv2.circle(image, (int(round(x)), int(round(y))), max(1, image.shape[0] // 540), (255, 255, 255), -1)
    return draw_faces(image, faces, int(target.track_index[frame_index]))
