"""CSIM: the cosine between ArcFace embeddings of the source's face and the output's, frame by frame.

The network is insightface's ``w600k_r50.onnx`` (ResNet-50 ArcFace trained on WebFace600K, the recognition
model of its ``buffalo_l`` pack), run by onnxruntime. Its input is what insightface's ``ArcFaceONNX`` feeds it
for this model: the face aligned to 112 x 112 by a similarity transform of 5 points onto ArcFace's template
(``norm_crop``: scikit-image's least-squares similarity, bilinear warp, black outside the frame), RGB, as
(x - 127.5) / 127.5, NCHW. The 5 points come from the project's 68 landmarks (the eyes' centres, the nose
tip, the mouth corners) where insightface takes them from its own detector. Both frames are aligned with
the output's landmarks, so the two crops cover the same pixels.
"""

from __future__ import annotations

import numpy as np

from ..errors import KeySyncError

ARCFACE_SIZE = 112
# where the 5 points (left eye, right eye, nose tip, left and right mouth corner, as seen) sit in a 112 px
# crop: ArcFace's alignment template (insightface's ``arcface_dst``)
ARCFACE_POINTS = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                           [70.7299, 92.2041]])


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """(5, 2) ArcFace points from iBUG 68 landmarks (0-based): the centres of points 36-41 and 42-47 (the eye
    on the image's left first), the nose tip 30, the mouth corners 48 and 54."""
    lm = np.asarray(landmarks, np.float64)
    return np.stack([lm[36:42].mean(axis=0), lm[42:48].mean(axis=0), lm[30], lm[48], lm[54]])


def alignment(points: np.ndarray) -> np.ndarray:
    """(2, 3) the similarity transform taking ``points`` onto ``ARCFACE_POINTS`` (least squares)."""
    from skimage.transform import SimilarityTransform

    points = np.asarray(points, np.float64)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        tform = SimilarityTransform.from_estimate(points, ARCFACE_POINTS)
        if not tform:
            raise KeySyncError("the face's 5 points do not fix a similarity transform; the landmarks are degenerate")
    else:
        tform = SimilarityTransform()
        if not tform.estimate(points, ARCFACE_POINTS):
            raise KeySyncError("the face's 5 points do not fix a similarity transform; the landmarks are degenerate")
    return tform.params[:2]


def align(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(112, 112, 3) uint8: ``image`` warped so that its face's 5 ``points`` land on ArcFace's template."""
    import cv2

    return cv2.warpAffine(np.ascontiguousarray(image), alignment(points), (ARCFACE_SIZE, ARCFACE_SIZE), borderValue=0.0)


class ArcFace:
    """An ArcFace ONNX model on onnxruntime's CPU provider: ``embed`` (N, 112, 112, 3) uint8 RGB -> (N, D)."""

    def __init__(self, path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 (onnxruntime's errors, e.g. InvalidProtobuf, derive from Exception only)
            raise KeySyncError(f"cannot read {path} as an ONNX model ({' '.join(str(err).split())[:200]}); "
                               "give w600k_r50.onnx from buffalo_l.zip") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != [3, ARCFACE_SIZE, ARCFACE_SIZE]:
            raise KeySyncError(f"{path} takes {[tuple(i.shape) for i in inputs]}, not one (N, 3, 112, 112) face; "
                               "give w600k_r50.onnx")
        self.input = inputs[0].name
        self.batch = inputs[0].shape[0] if isinstance(inputs[0].shape[0], int) else None  # None: any batch size

    def embed(self, crops: np.ndarray) -> np.ndarray:
        blob = (np.asarray(crops, np.float32).transpose(0, 3, 1, 2) - 127.5) / 127.5
        step = self.batch or max(len(blob), 1)
        out = [self.session.run(None, {self.input: blob[i : i + step]})[0] for i in range(0, len(blob), step)]
        return np.concatenate(out).reshape(len(blob), -1).astype(np.float64)


def load_arcface(path) -> ArcFace:
    """insightface's ``w600k_r50.onnx`` (from ``buffalo_l.zip``) by path."""
    from .weights import require_file

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise KeySyncError("CSIM needs onnxruntime; pip install 'keysync[eval]'") from None
    return ArcFace(require_file(path, "arcface"))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (N, D) embeddings (insightface's ``compute_sim``)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
