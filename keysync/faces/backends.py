"""Landmark back ends. Each finds faces in a frame and gives iBUG 68-point landmarks for one face.

- ``mediapipe`` (default): MediaPipe 0.10.21 full-range face detector + face mesh; its models ship inside
  the wheel, so it works offline. Mesh vertices are mapped to iBUG 68 (see ``ibug68``).
- ``dlib``: dlib's HOG detector and 68-point shape predictor (``pip install dlib-bin face-recognition-models``).
- ``face-alignment``: FAN, as the official KeySync code uses (``pip install face-alignment``; it
  downloads its weights on first use).

A back end has two methods: ``detect(image) -> (n, 5)`` boxes ``x0, y0, x1, y1, score`` in pixels, and
``landmarks(image, box) -> (68, 2)`` pixel coordinates, or None when no face is found around ``box``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import types
from typing import Protocol

import cv2
import numpy as np

from ..errors import KeySyncError
from .geometry import warp_area
from .ibug68 import MEDIAPIPE_TO_IBUG68

BACKENDS = ("mediapipe", "dlib", "face-alignment")


class LandmarkBackend(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> np.ndarray: ...

    def landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray | None: ...


def load_backend(name: str = "mediapipe") -> LandmarkBackend:
    """Build the named back end; a missing optional package is reported with its install command."""
    if name == "mediapipe":
        return MediaPipeBackend()
    if name == "dlib":
        return DlibBackend()
    if name == "face-alignment":
        return FaceAlignmentBackend()
    raise KeySyncError(f"unknown landmark back end {name!r}; choose one of {', '.join(BACKENDS)}")


def square_around(box, scale: float) -> tuple[float, float, float]:
    """Centre and side of a square ``scale`` times the larger side of ``box`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box[:4]
    return (x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0)


def warp_square(image: np.ndarray, cx: float, cy: float, side: float, size: int) -> tuple[np.ndarray, float, float, float]:
    """Resample the square (cx, cy, side) of ``image`` to size x size; returns it and (scale, x0, y0) to map back."""
    scale = size / side
    x0, y0 = cx - side / 2, cy - side / 2
    matrix = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]])
    return warp_area(image, matrix, size, size), scale, x0, y0


def non_max_suppression(boxes: np.ndarray, iou_threshold: float = 0.4, inside_threshold: float = 0.6) -> np.ndarray:
    """Keep the highest-scoring of overlapping (n, 5) boxes. A box mostly inside another (the same face
    found at two tile scales) counts as overlapping too."""
    if len(boxes) == 0:
        return boxes.reshape(0, 5)
    boxes = boxes[np.argsort(-boxes[:, 4])]
    keep = []
    for box in boxes:
        if all(box_iou(box, k) < iou_threshold and _inside(box, k) < inside_threshold for k in keep):
            keep.append(box)
    return np.array(keep)


def _inside(a, b) -> float:
    """Intersection over the smaller box's area."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(ix * iy / smaller) if smaller > 0 else 0.0


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


_MUTING = threading.RLock()  # one thread at a time swaps file descriptor 2, or one could restore another's /dev/null


@contextlib.contextmanager
def _muted_stderr():
    """Send file descriptor 2 (where native libraries write) to /dev/null for the duration."""
    with _MUTING:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


class _ImportedOnUse(types.ModuleType):
    """Stands in for a module while another one is imported; imports the real one when first used."""

    def __getattr__(self, name: str):
        if sys.modules.get(self.__name__) is self:  # still standing in: ``import a.b as c`` then finds a.b in sys.modules
            raise AttributeError(name)
        return getattr(importlib.import_module(self.__name__), name)


def _mediapipe_solutions():
    """MediaPipe's face detection and face mesh modules. Importing them imports all of MediaPipe's
    solutions, whose drawing helpers import matplotlib.pyplot: 0.35 s of the 0.5 s import, in every process
    that tracks a face, for plotting functions keysync never calls. Where matplotlib is not yet imported,
    stand-ins that import it on first use take its place during the import."""
    stand_ins = {name: _ImportedOnUse(name) for name in ("matplotlib", "matplotlib.pyplot") if name not in sys.modules}
    sys.modules.update(stand_ins)
    try:
        from mediapipe.python.solutions import face_detection, face_mesh
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
    return face_detection, face_mesh


class MediaPipeBackend:
    """MediaPipe's full-range detector, run on the whole frame and on overlapping tiles (so that small
    faces in a group shot are found), then the face mesh on a 256 px square around each face.

    The tiles of a frame are detected side by side, one detector graph per thread (MediaPipe releases the
    GIL while a graph runs): a 1080p frame has 16 tiles, and detection is the largest part of the tracker's
    time. A graph holds no state between images, so the boxes are the same whichever graph sees a tile."""

    name = "mediapipe"
    detect_ahead = True  # the tracker may detect on a frame ahead while the mesh runs here (``detect`` holds a lock)
    mesh_size = 256
    mesh_scale = 1.7  # crop side / face box side given to the mesh
    detect_size = 384  # tile size, in pixels, after the frame is shrunk for detection

    def __init__(self, min_score: float = 0.5, threads: int | None = None):
        os.environ.setdefault("GLOG_minloglevel", "2")
        try:
            face_detection, face_mesh = _mediapipe_solutions()
        except ImportError as err:
            raise KeySyncError(f"mediapipe is not installed ({err}); run: pip install --no-deps mediapipe==0.10.21")
        # MediaPipe's C++ side prints start-up notices to stderr from its own threads while a graph starts
        # and the first time each subgraph really runs: mute them (start, plus one idle run to let the
        # threads settle) so that a user sees only keysync's own messages.
        blank = np.zeros((self.mesh_size, self.mesh_size, 3), np.uint8)
        threads = threads or min(4, os.cpu_count() or 1)
        with _muted_stderr():
            self._detectors = [face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_score) for _ in range(threads)]
            self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, min_detection_confidence=min_score)
            for graph in (*self._detectors, self._mesh):
                graph.process(blank)
        self._found: set[int] = set()  # the graphs that have found a face once (they print nothing new after)
        self._pool = None  # a thread per detector graph, started at the first frame with several tiles
        self._detecting = threading.Lock()  # one frame at a time on the detector graphs

    def _muted_until_found(self, graphs):
        """Mute stderr (see ``__init__``) while one of ``graphs`` has not yet found a face. Only the
        calling thread switches file descriptor 2, around the whole call, as the graphs' threads share it."""
        return contextlib.nullcontext() if all(id(g) in self._found for g in graphs) else _muted_stderr()

    def _note_found(self, graph, result) -> None:
        if getattr(result, "detections", None) or getattr(result, "multi_face_landmarks", None):
            self._found.add(id(graph))

    def _windows(self, h: int, w: int):
        yield 0, 0, w, h
        tile = int(0.6 * min(h, w))
        step = tile // 2
        for y in range(0, max(h - tile, 0) + step, step):
            for x in range(0, max(w - tile, 0) + step, step):
                yield min(x, w - tile), min(y, h - tile), tile, tile

    def _detect_tiles(self, graph, tiles: list[np.ndarray]) -> list:
        results = [graph.process(tile) for tile in tiles]
        for result in results:
            self._note_found(graph, result)
        return results

    def detect(self, image: np.ndarray) -> np.ndarray:
        with self._detecting:
            return self._detect(image)

    def _detect(self, image: np.ndarray) -> np.ndarray:
        # shrink the frame once so that a tile is about ``detect_size`` pixels (the model sees 192)
        shrink = min(1.0, self.detect_size / (0.6 * min(image.shape[:2])))
        small = image if shrink == 1.0 else cv2.resize(image, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        h, w = small.shape[:2]
        windows = list(self._windows(h, w))
        tiles = [np.ascontiguousarray(small[y0 : y0 + hh, x0 : x0 + ww]) for x0, y0, ww, hh in windows]
        graphs = self._detectors[: len(tiles)]
        with self._muted_until_found(graphs):
            if len(graphs) == 1:
                results = self._detect_tiles(graphs[0], tiles)
            else:
                if self._pool is None:
                    from concurrent.futures import ThreadPoolExecutor

                    self._pool = ThreadPoolExecutor(len(self._detectors), thread_name_prefix="keysync-detect")
                shares = list(self._pool.map(lambda k: self._detect_tiles(graphs[k], tiles[k :: len(graphs)]), range(len(graphs))))
                results = [shares[i % len(graphs)][i // len(graphs)] for i in range(len(tiles))]  # back in tile order
        found = []
        for (x0, y0, ww, hh), result in zip(windows, results):
            for det in result.detections or []:
                rb = det.location_data.relative_bounding_box
                bx0, by0 = x0 + rb.xmin * ww, y0 + rb.ymin * hh
                found.append([bx0 / shrink, by0 / shrink, (bx0 + rb.width * ww) / shrink, (by0 + rb.height * hh) / shrink, det.score[0]])
        return non_max_suppression(np.array(found, dtype=np.float64).reshape(-1, 5))

    def landmarks(self, image: np.ndarray, box) -> np.ndarray | None:
        cx, cy, side = square_around(box, self.mesh_scale)
        crop, scale, x0, y0 = warp_square(image, cx, cy, side, self.mesh_size)
        with self._muted_until_found([self._mesh]):
            result = self._mesh.process(crop)
        self._note_found(self._mesh, result)
        if not result.multi_face_landmarks:
            return None
        mesh = result.multi_face_landmarks[0].landmark
        points = np.array([[mesh[i].x, mesh[i].y] for i in MEDIAPIPE_TO_IBUG68], dtype=np.float64)
        return points * self.mesh_size / scale + [x0, y0]


class DlibBackend:
    """dlib's HOG face detector and 68-point predictor (the iBUG layout natively)."""

    name = "dlib"
    min_score = 0.25  # HOG detector margin; weaker hits are mostly not faces

    def __init__(self):
        try:
            import importlib.metadata

            import dlib

            dist = importlib.metadata.distribution("face-recognition-models")
        except (ImportError, importlib.metadata.PackageNotFoundError) as err:
            raise KeySyncError(f"the dlib back end needs extra packages ({err}); run: pip install dlib-bin face-recognition-models")
        model = dist.locate_file("face_recognition_models/models/shape_predictor_68_face_landmarks.dat")
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model))

    def detect(self, image: np.ndarray) -> np.ndarray:
        rects, scores, _ = self._detector.run(image, 1, self.min_score)
        return np.array([[r.left(), r.top(), r.right(), r.bottom(), s] for r, s in zip(rects, scores)], dtype=np.float64).reshape(-1, 5)

    def landmarks(self, image: np.ndarray, box) -> np.ndarray | None:
        x0, y0, x1, y1 = (int(round(v)) for v in box[:4])
        shape = self._predictor(image, self._dlib.rectangle(x0, y0, x1, y1))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


class FaceAlignmentBackend:
    """FAN 2-D landmarks (face-alignment), the official code's choice; downloads weights on first use."""

    name = "face-alignment"

    def __init__(self):
        try:
            import face_alignment
        except ImportError as err:
            raise KeySyncError(f"the face-alignment back end is not installed ({err}); run: pip install face-alignment")
        self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device="cpu")

    def detect(self, image: np.ndarray) -> np.ndarray:
        boxes = self._fa.face_detector.detect_from_image(image[..., ::-1].copy())
        return np.array([b[:5] for b in boxes], dtype=np.float64).reshape(-1, 5)

    def landmarks(self, image: np.ndarray, box) -> np.ndarray | None:
        found = self._fa.get_landmarks_from_image(image, detected_faces=[np.asarray(box[:4])])
        return None if not found else np.asarray(found[0][:, :2], dtype=np.float64)
