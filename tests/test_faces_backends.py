"""Landmark back ends: the MediaPipe -> iBUG 68 table against dlib's native 68 points, and set-up errors."""

import importlib.util

import numpy as np
import pytest

from keysync.errors import KeySyncError
from keysync.faces.backends import load_backend, non_max_suppression
from keysync.faces.ibug68 import MEDIAPIPE_TO_IBUG68

from .faces_media_clips import astronaut


def test_mapping_table_is_68_distinct_mesh_vertices():
    assert len(MEDIAPIPE_TO_IBUG68) == 68 == len(set(MEDIAPIPE_TO_IBUG68.tolist()))
    assert MEDIAPIPE_TO_IBUG68.min() >= 0 and MEDIAPIPE_TO_IBUG68.max() < 468


@pytest.mark.skipif(importlib.util.find_spec("dlib") is None, reason="optional dlib back end not installed")
def test_mediapipe_points_agree_with_dlib_on_a_real_face():
    image = astronaut()
    dlib_backend, mp_backend = load_backend("dlib"), load_backend("mediapipe")
    (box,) = dlib_backend.detect(image)
    reference = dlib_backend.landmarks(image, box)
    mapped = mp_backend.landmarks(image, mp_backend.detect(image)[0])
    iod = np.linalg.norm(reference[36:42].mean(0) - reference[42:48].mean(0))
    error = np.linalg.norm(reference - mapped, axis=1) / iod
    assert error.mean() < 0.08 and error[[28, 30, 33, 48, 54, 57, 8]].max() < 0.15


def test_unknown_or_missing_back_ends_are_user_errors():
    with pytest.raises(KeySyncError, match="unknown landmark back end"):
        load_backend("opencv")
    if importlib.util.find_spec("face_alignment") is None:
        with pytest.raises(KeySyncError, match="pip install face-alignment"):
            load_backend("face-alignment")


def test_non_max_suppression_drops_overlaps_and_boxes_inside_boxes():
    boxes = np.array([[0, 0, 100, 100, 0.9], [5, 5, 105, 105, 0.8], [20, 20, 60, 60, 0.95], [200, 0, 260, 60, 0.7]])
    kept = non_max_suppression(boxes)
    assert kept[:, 4].tolist() == [0.95, 0.7]  # the small box wins over the two it lies inside


def test_mediapipe_loads_without_importing_matplotlib_and_its_drawing_helpers_still_work():
    """MediaPipe's solutions import matplotlib.pyplot for drawing helpers; the back end keeps that import
    out of a dub (stand-ins during the import), and the helpers import the real pyplot when used."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from keysync.faces.backends import load_backend\n"
        "load_backend('mediapipe')\n"
        "assert 'matplotlib' not in sys.modules and 'matplotlib.pyplot' not in sys.modules, 'matplotlib was imported'\n"
        "from mediapipe.python.solutions import drawing_utils\n"
        "import matplotlib.pyplot\n"
        "assert drawing_utils.plt.figure is matplotlib.pyplot.figure\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
