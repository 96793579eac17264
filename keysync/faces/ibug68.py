"""The iBUG 68-point layout, which the KeySync masks are defined on, and MediaPipe face mesh -> iBUG 68.

iBUG 68 (0-based): 0-16 jaw (image left to right, 8 = chin), 17-21 and 22-26 eyebrows, 27-30 nose bridge
(27 top, 28 is the reference's mask top, 30 nose tip), 31-35 nostrils, 36-41 and 42-47 eyes, 48-59 outer
lips (48 and 54 the corners), 60-67 inner lips.

``MEDIAPIPE_TO_IBUG68[i]`` is the MediaPipe face-mesh vertex (of 468) used as iBUG point ``i``. It was
measured, not hand-picked: dlib's 68-point predictor and MediaPipe were run on the real faces of
``skimage.data.astronaut()``, insightface's ``t1.jpg`` and ``Tom_Hanks_54745.png`` and their mirror
images (16 faces), and for every iBUG point the vertex with the smallest mean distance to dlib's point
(in inter-ocular units) was kept. Mean distances: 0.03-0.09 for eyes, nose and lips, 0.09-0.2 on the jaw,
where dlib follows the silhouette and the mesh its surface. See docs/faces-and-media.md.
"""

from __future__ import annotations

import numpy as np

NUM_POINTS = 68

MEDIAPIPE_TO_IBUG68 = np.array(
    [
        # jaw 0-16
        127, 227, 177, 215, 138, 136, 149, 148, 152, 377, 378, 365, 397, 435, 401, 447, 356,
        # eyebrows 17-26
        70, 63, 105, 66, 55, 336, 296, 334, 293, 300,
        # nose bridge 27-30, nostrils 31-35
        168, 197, 195, 4, 240, 97, 2, 326, 289,
        # eyes 36-47
        7, 160, 158, 155, 145, 144, 362, 385, 386, 249, 373, 380,
        # outer lips 48-59
        61, 39, 37, 0, 267, 269, 291, 321, 314, 17, 84, 91,
        # inner lips 60-67
        76, 38, 12, 268, 292, 317, 14, 87,
    ],
    dtype=np.int64,
)
assert MEDIAPIPE_TO_IBUG68.shape == (NUM_POINTS,)


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """The (x0, y0, x1, y1) bounding box of a (68, 2) landmark set."""
    return np.concatenate([landmarks.min(axis=0), landmarks.max(axis=0)]).astype(np.float64)
