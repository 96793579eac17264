"""Lip-sync metrics on frames whose ground truth is known (the synthetic world), plus landmark-only
versions for real footage.

PSNR, SSIM, LipLeak, mouth jitter and the mouth aspect ratio are ``keysync eval``'s own code
(``keysync.eval.psnr_ssim`` and ``keysync.eval.lipleak``, re-exported here), so that the benchmark and
``keysync eval`` give the same number for what both measure. How "speaking" is decided is written there.

The mouth reader's threshold. With the reader's jaw opening in place of the landmarks' mouth aspect
ratio, a frame is speaking when the opening (maxed over the 7-frame window) exceeds the reader's
``speaking_threshold``. It is calibrated when the reader is trained: the 99th percentile of what it reads
on mouths at rest (true jaw < 0.1) plus 0.03, and at least 0.15 (the world's rest jaw is 0.03; vowels open
it to 0.3-0.9).

Frames where an occluder covers more than ``OCCLUDED_SHARE`` of the source's mouth are not readable and
are left out of the mouth metrics (LipLeak, sync, cross-leak, mouth jitter).
"""

from __future__ import annotations

import numpy as np

from ..constants import SAMPLES_PER_FRAME  # noqa: F401 (used as M.SAMPLES_PER_FRAME)
from ..eval.lipleak import (  # noqa: F401 (the shared definitions, re-exported)
    SILENCE_DBFS,
    SPEAKING_MAR,
    SPEAKING_WINDOW,
    lipleak,
    mouth_aspect_ratio,
    mouth_jitter,
    silent_frames,
    speaking_frames,
)
from ..eval.psnr_ssim import (  # noqa: F401 (re-exported)
    PSNR_CAP,
    psnr,
    regenerated_box,
    region_mean,
    ssim,
    ssim_maps,
)

OCCLUDED_SHARE = 0.1


def pearson(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Correlation of two series over valid frames; NaN when either is (nearly) constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if valid is not None:
        a, b = a[valid], b[valid]
    if len(a) < 3 or a.std() < 1e-3 or b.std() < 1e-3:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def partial_pearson(a: np.ndarray, b: np.ndarray, given: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Correlation of ``a`` and ``b`` once what ``given`` explains linearly is taken out of both (partial
    correlation). Cross-leak given the target mouth: two speech clips' jaws correlate by chance (both rest
    in pauses), so a perfect dub correlates with the source as much as the new speech does; this counts
    only what follows the source beyond that; 0 when ``given`` explains ``a`` or ``b`` entirely. With a
    constant ``given`` (silence) it is ``pearson``."""
    a, b, given = (np.asarray(x, np.float64) for x in (a, b, given))
    if valid is not None:
        a, b, given = a[valid], b[valid], given[valid]
    if len(a) < 4 or given.std() < 1e-3:
        return pearson(a, b)
    design = np.stack([given, np.ones_like(given)], 1)

    def residual(x):
        return x - design @ np.linalg.lstsq(design, x, rcond=None)[0]

    rest_a, rest_b = residual(a), residual(b)
    if min(rest_a.std(), rest_b.std()) < 1e-3 <= min(a.std(), b.std()):
        return 0.0  # the target explains one of them entirely: nothing left that could follow the other
    return pearson(rest_a, rest_b)


def mean_abs(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> float:
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    d = d if valid is None else d[valid]
    return float(d.mean()) if d.size else float("nan")


def upper_face_box(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W) bool: from above the brows down to point 28, between the landmarks' extremes."""
    lm = np.asarray(landmarks)
    masks = np.zeros((len(lm), height, width), bool)
    for i, p in enumerate(lm):
        x0, x1 = int(np.floor(p[:, 0].min())), int(np.ceil(p[:, 0].max())) + 1
        y1 = int(np.floor(p[28, 1]))
        y0 = int(np.floor(p[17:27, 1].min() - 0.3 * (p[28, 1] - p[17:27, 1].min())))
        masks[i, max(y0, 0) : max(y1, 0), max(x0, 0) : max(min(x1, width), 0)] = True
    return masks


def high_frequency_ratio(output: np.ndarray, source: np.ndarray, region: np.ndarray) -> float:
    """High-frequency energy of the output over that of the source, inside ``region``: the mean squared
    Laplacian of the grey image (3x3), pooled over all frames. Above 1 the output is noisier or grainier
    than the source; below 1 it is smoother."""
    import cv2

    if not region.any():
        return float("nan")
    energy = []
    for frames in (output, source):
        total = 0.0
        for frame, r in zip(frames, region):
            grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float64)
            total += float((cv2.Laplacian(grey, cv2.CV_64F, ksize=1)[r] ** 2).sum())
        energy.append(total)
    return energy[0] / energy[1] if energy[1] > 0 else float("nan")


def colour_shift(output: np.ndarray, source: np.ndarray, region: np.ndarray) -> float:
    """Tint: the CIE76 colour difference (Delta E, CIE Lab) between the mean colours of ``region`` in the
    output and in the source, per frame, averaged over frames. Texture and motion inside the region barely
    move it; a skin regenerated a shade too yellow or too dark does (about 2.3 is a just noticeable
    difference)."""
    import cv2

    shifts = []
    for out, src, r in zip(output, source, region):
        if not r.any():
            continue
        means = [cv2.cvtColor(f[r].astype(np.float32)[None] / 255.0, cv2.COLOR_RGB2LAB)[0].mean(axis=0) for f in (out, src)]
        shifts.append(float(np.linalg.norm(means[0] - means[1])))
    return float(np.mean(shifts)) if shifts else float("nan")


def edge_jitter(output: np.ndarray, source: np.ndarray, region: np.ndarray, band: int = 2) -> float:
    """Mean frame-to-frame change (8-bit levels) of the output-minus-source difference on a band of
    ``band`` pixels either side of the regenerated region's border: a flickering paste seam."""
    import cv2

    kernel = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    diff = output.astype(np.float32) - source.astype(np.float32)
    values = []
    for t in range(1, len(output)):
        m = region[t].astype(np.uint8)
        ring = (cv2.dilate(m, kernel) - cv2.erode(m, kernel)).astype(bool)
        if ring.any():
            values.append(np.abs(diff[t][ring] - diff[t - 1][ring]).mean())
    return float(np.mean(values)) if values else float("nan")


def occluder_error(output: np.ndarray, source: np.ndarray, occluder: np.ndarray) -> float:
    """Mean absolute error (8-bit levels) on the occluder's pixels; NaN when there is no occluder."""
    m = occluder.astype(bool)
    if not m.any():
        return float("nan")
    return float(np.abs(output.astype(np.float64)[m] - source.astype(np.float64)[m]).mean())


def readable_frames(landmarks: np.ndarray, occluder: np.ndarray) -> np.ndarray:
    """(T,) bool: the occluder covers at most ``OCCLUDED_SHARE`` of the mouth (outer-lip polygon)."""
    import cv2

    ok = np.ones(len(landmarks), bool)
    for i, (p, occ) in enumerate(zip(landmarks, occluder)):
        if not occ.any():
            continue
        mouth = np.zeros(occ.shape, np.uint8)
        cv2.fillPoly(mouth, [np.round(p[48:60]).astype(np.int32)], 1)
        area = mouth.sum()
        ok[i] = area == 0 or (mouth & occ).sum() <= OCCLUDED_SHARE * area
    return ok
