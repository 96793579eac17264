"""FID, FVD, CSIM and LPIPS of one clip against its source, fed frame pair by frame pair as ``score_clip``
decodes them, and FID / FVD over a whole set of clips.

Per clip: FID between the output's frames and the source's (Inception features of every decoded frame),
FVD between their 16-frame windows at 25 fps (non-overlapping, from the first tick; a clip needs 2 windows,
32 frames, for a covariance), CSIM the mean over frames with a face of the cosine between the two
faces' ArcFace embeddings, LPIPS the mean over frames of the whole frames' distance and of the distance
between the regenerated box's crops (the box of ``regenerated_box``, as PSNR / SSIM use it). A Fréchet
distance over one clip's few frames is strongly biased (it grows as the frames get fewer; FID wants
thousands of images): compare clips of the same length, and read ``fid_set`` / ``fvd_set``, the distance
over all clips' frames (windows) together, for a set.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import KeySyncError

log = logging.getLogger("keysync.eval")

BATCH = 8  # frames per Inception / ArcFace call
SET_METRICS = {"fid_set": "fid", "fvd_set": "fvd"}  # the set-level metric and the features it pools


@dataclass
class QualityNets:
    """The loaded networks (None: that metric is not computed)."""

    inception: object = None
    i3d: object = None
    arcface: object = None
    lpips: object = None

    def __bool__(self) -> bool:
        return any(n is not None for n in (self.inception, self.i3d, self.arcface, self.lpips))


def load_quality_nets(weights: dict[str, str | Path], metrics=("fid", "fvd", "csim", "lpips")) -> QualityNets:
    """The networks of ``metrics`` whose weights ``weights`` names ({key: path}, keys as in
    ``keysync.eval.weights.WEIGHTS``); a metric without its weights is left out."""
    nets = QualityNets()
    if "fid" in metrics and weights.get("inception"):
        from .fid import load_inception

        nets.inception = load_inception(weights["inception"])
    if "fvd" in metrics and weights.get("i3d"):
        from .fvd import load_i3d

        nets.i3d = load_i3d(weights["i3d"])
    if "csim" in metrics and weights.get("arcface"):
        from .csim import load_arcface

        nets.arcface = load_arcface(weights["arcface"])
    if "lpips" in metrics and weights.get("lpips_alexnet") and weights.get("lpips_linear"):
        from .lpips import load_lpips

        nets.lpips = load_lpips(weights["lpips_alexnet"], weights["lpips_linear"])
    return nets


def _box_slices(box: np.ndarray | None):
    """The rows and columns of a box mask's bounding rectangle (None for an empty or absent box)."""
    if box is None or not box.any():
        return None
    rows, cols = np.flatnonzero(box.any(axis=1)), np.flatnonzero(box.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


class QualityScorer:
    """One clip's FID, FVD, CSIM and LPIPS, fed (output, source) frame pairs in order."""

    def __init__(self, nets: QualityNets, batch: int = BATCH):
        self.nets, self.batch = nets, batch
        self.fid_queue: list[tuple] = []
        self.fid_features: tuple[list, list] = ([], [])
        self.fvd_queue: tuple[list, list] = ([], [])
        self.fvd_features: tuple[list, list] = ([], [])
        self.face_queue: list[tuple] = []
        self.csim: list[float] = []
        self.lpips = {"frame": [], "box": []}

    def add(self, output: np.ndarray, source: np.ndarray, box: np.ndarray | None = None,
            landmarks: np.ndarray | None = None, ticks: int = 1) -> None:
        """One decoded frame pair (H, W, 3) uint8 RGB of the same size; ``box`` the regenerated box (H, W)
        bool, ``landmarks`` the output's 68 points (None: no face in this frame), ``ticks`` how many 25 fps
        ticks show this frame (FVD's windows are at 25 fps)."""
        nets = self.nets
        if nets.inception is not None:
            from .fid import prepare

            self.fid_queue.append((prepare(output), prepare(source)))
            if len(self.fid_queue) >= self.batch:
                self._flush_fid()
        if nets.i3d is not None and ticks:
            from .fvd import WINDOW_FRAMES, prepare

            prepared = prepare(output), prepare(source)
            for _ in range(ticks):
                for queue, x in zip(self.fvd_queue, prepared):
                    queue.append(x)
                if len(self.fvd_queue[0]) == WINDOW_FRAMES:
                    self._flush_fvd()
        if nets.arcface is not None and landmarks is not None and np.isfinite(landmarks).all():
            from .csim import align, five_points

            points = five_points(landmarks)
            self.face_queue.append((align(output, points), align(source, points)))
            if len(self.face_queue) >= self.batch:
                self._flush_faces()
        if nets.lpips is not None:
            from .lpips import MIN_SIZE, lpips_distance

            self.lpips["frame"].append(lpips_distance(nets.lpips, output, source))
            region = _box_slices(box)
            if region is not None and min(output[region].shape[:2]) >= MIN_SIZE:
                self.lpips["box"].append(lpips_distance(nets.lpips, output[region], source[region]))

    def _flush_fid(self):
        from .fid import inception_features

        if self.fid_queue:
            outs, srcs = zip(*self.fid_queue)
            features = inception_features(self.nets.inception, list(outs) + list(srcs))
            self.fid_features[0].append(features[: len(outs)])
            self.fid_features[1].append(features[len(outs) :])
            self.fid_queue = []

    def _flush_fvd(self):
        import torch

        from .fvd import i3d_features, window

        features = i3d_features(self.nets.i3d, torch.stack([window(q) for q in self.fvd_queue]))
        for store, f in zip(self.fvd_features, features):
            store.append(f[None])
        self.fvd_queue = ([], [])

    def _flush_faces(self):
        if self.face_queue:
            from .csim import cosine

            outs, srcs = (np.stack(x) for x in zip(*self.face_queue))
            embeddings = self.nets.arcface.embed(np.concatenate([outs, srcs]))
            self.csim.extend(cosine(embeddings[: len(outs)], embeddings[len(outs) :]).tolist())
            self.face_queue = []

    @property
    def features(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{"fid" / "fvd": (output's, source's) features}, float32 (what the set-level distances pool)."""
        self._flush_fid()
        out = {}
        for name, (a, b) in (("fid", self.fid_features), ("fvd", self.fvd_features)):
            if a:
                out[name] = (np.concatenate(a).astype(np.float32), np.concatenate(b).astype(np.float32))
        return out

    def values(self) -> dict[str, float]:
        """fid, fvd, csim, lpips_frame, lpips_box of the frames added (NaN where not measured)."""
        self._flush_fid()
        self._flush_faces()
        features = self.features
        out = {}
        if self.nets.inception is not None:
            out["fid"] = _frechet(*features["fid"], "FID") if "fid" in features else math.nan
        if self.nets.i3d is not None:
            out["fvd"] = _frechet(*features["fvd"], "FVD") if "fvd" in features else math.nan
        if self.nets.arcface is not None:
            out["csim"] = float(np.mean(self.csim)) if self.csim else math.nan
        if self.nets.lpips is not None:
            for name, values in self.lpips.items():
                out[f"lpips_{name}"] = float(np.mean(values)) if values else math.nan
        return out


def _frechet(a: np.ndarray, b: np.ndarray, what: str) -> float:
    """The Fréchet distance of two feature sets; NaN (with a note) where it cannot be taken."""
    from .fid import frechet_distance_of_features

    try:
        return frechet_distance_of_features(a.astype(np.float64), b.astype(np.float64))
    except KeySyncError as err:
        log.warning(f"{what} not measured: {err}")
        return math.nan


def set_totals(results) -> dict[str, dict]:
    """``fid_set`` and ``fvd_set``: the Fréchet distance over the features of every scored clip together
    ({"mean": value, "low": NaN, "high": NaN, "clips": clips pooled}, as ``summarise`` gives its rows)."""
    total = {}
    for metric, name in SET_METRICS.items():
        pooled = [r.features[name] for r in results if r.error is None and name in getattr(r, "features", {})]
        value = math.nan
        if pooled:
            value = _frechet(np.concatenate([a for a, _ in pooled]), np.concatenate([b for _, b in pooled]), metric.upper())
        total[metric] = {"mean": value, "low": math.nan, "high": math.nan, "clips": len(pooled) if math.isfinite(value) else 0}
    return total
