"""The face crops SyncNet sees, framed as the reference pipeline frames them, from the project's tracker.

The reference (syncnet_python's ``run_pipeline.py``) detects faces with S3FD, median-filters each track's
box centre and half-size ``s`` over 13 frames, and cuts the square from ``s`` above the centre to 1.8 ``s``
below it, 2.8 ``s`` wide (its ``crop_scale`` 0.4), resized to 224 px. Here the box is the target face's
68-landmark box from ``keysync.faces`` (brows to chin, jaw to jaw: close to S3FD's face box, not equal to
it), filtered the same way; outside the frame the crop repeats the edge pixels where the reference pads
with grey 110, and the crop is resampled by pixel area where the reference resizes bilinearly. See
docs/eval.md for what these differences do to the scores.
"""

from __future__ import annotations

from scipy.signal import medfilt

from ..faces.crops import CropBox
from ..faces.frontend import FaceLocation
from .syncnet import FACE_SIZE

CROP_SCALE = 0.4  # run_pipeline.py's --crop_scale
SMOOTHING = 13  # frames of the median filter over the box track (run_pipeline.py)


def syncnet_boxes(face: FaceLocation) -> list[CropBox]:
    """One 224 px crop box per frame of the located face; frames without the face take the nearest
    present frame's box."""
    landmarks = face.target.landmarks[face.fill]  # (T, 68, 2), every frame filled
    lo, hi = landmarks.min(axis=1), landmarks.max(axis=1)
    # scipy's medfilt pads with zeros, as in the reference; a kernel no longer than the clip keeps the
    # median on real values
    kernel = min(SMOOTHING, len(landmarks) - 1 + len(landmarks) % 2)
    half = medfilt((hi - lo).max(axis=1) / 2, kernel)
    cx, cy = (medfilt((lo[:, a] + hi[:, a]) / 2, kernel) for a in (0, 1))
    # rows cy - s .. cy + s (1 + 2 scale), columns cx +- s (1 + scale): a square centred scale * s below
    return [
        CropBox(float(x), float(y + CROP_SCALE * s), float(2 * s * (1 + CROP_SCALE)), 0.0, FACE_SIZE)
        for x, y, s in zip(cx, cy, half)
    ]
