"""Lip-sync metrics on frames whose ground truth is known (the synthetic world), plus landmark-only
versions for real footage.

How "speaking" is decided (LipLeak). A frame is *speaking* when the mouth reader's jaw opening, maxed
over a centred window of 7 frames (280 ms, ``SPEAKING_WINDOW`` = 3 on each side), exceeds the reader's
``speaking_threshold``. The threshold is calibrated when the reader is trained: the 99th percentile of
what it reads on mouths at rest (true jaw < 0.1) plus 0.03, and at least 0.15 (the world's rest jaw is
0.03; vowels open it to 0.3-0.9). The window bridges the brief closures inside speech (/p/, /b/, /m/),
which are speech too. The driving audio is *silent* in a frame when its RMS over that frame's 640
samples is below ``SILENCE_DBFS``. LipLeak = share of silent, readable frames that are speaking.

Frames where an occluder covers more than ``OCCLUDED_SHARE`` of the source's mouth are not readable and
are left out of the mouth metrics (LipLeak, sync, cross-leak, mouth jitter).

The landmark-only versions replace the reader's jaw opening by the inner-lip mouth aspect ratio
(``mouth_aspect_ratio``) of 68-point landmarks from any face front end, with ``SPEAKING_MAR`` = 0.08 as
the threshold: above 99 % of the world's mouths at rest (0.066) and below the median at jaw 0.15 (0.106);
on real footage, check it against a closed mouth of the person.
"""

from __future__ import annotations

import numpy as np

SPEAKING_WINDOW = 3
SILENCE_DBFS = -45.0
OCCLUDED_SHARE = 0.1
SPEAKING_MAR = 0.08
PSNR_CAP = 100.0  # dB reported for identical pixels
from ..constants import SAMPLES_PER_FRAME


def silent_frames(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """(T,) bool: the audio's RMS over each frame's 640 samples is below ``SILENCE_DBFS``."""
    audio = np.asarray(audio, np.float64)
    padded = np.zeros(n_frames * SAMPLES_PER_FRAME)
    padded[: min(len(audio), len(padded))] = audio[: len(padded)]
    rms = np.sqrt((padded.reshape(n_frames, SAMPLES_PER_FRAME) ** 2).mean(1))
    return 20 * np.log10(rms + 1e-12) < SILENCE_DBFS


def speaking_frames(opening: np.ndarray, threshold: float, window: int = SPEAKING_WINDOW) -> np.ndarray:
    """(T,) bool: the opening, maxed over a centred window of 2*window+1 frames, exceeds ``threshold``."""
    from scipy.ndimage import maximum_filter1d

    return maximum_filter1d(np.asarray(opening, np.float64), 2 * window + 1, mode="nearest") > threshold


def lipleak(opening: np.ndarray, silent: np.ndarray, threshold: float, valid: np.ndarray | None = None) -> float:
    """Share of silent (and readable) frames whose mouth is speaking; NaN when no frame is silent."""
    keep = silent if valid is None else silent & valid
    if not keep.any():
        return float("nan")
    return float(speaking_frames(opening, threshold)[keep].mean())


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


def mouth_jitter(opening: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean absolute second difference of the opening: frame-to-frame shake that smooth speech lacks."""
    o = np.asarray(opening, np.float64)
    if len(o) < 3:
        return float("nan")
    d2 = np.abs(o[2:] - 2 * o[1:-1] + o[:-2])
    if valid is not None:
        d2 = d2[valid[2:] & valid[1:-1] & valid[:-2]]
    return float(d2.mean()) if d2.size else float("nan")


def regenerated_box(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W) bool: KeySync's lower-face box (x between the landmarks' extremes, from point 28 down)."""
    lm = np.asarray(landmarks)
    masks = np.zeros((len(lm), height, width), bool)
    for i, p in enumerate(lm):
        x0, x1 = int(np.floor(p[:, 0].min())), int(np.ceil(p[:, 0].max())) + 1
        y0 = int(np.floor(p[28, 1]))
        masks[i, max(y0, 0) :, max(x0, 0) : max(min(x1, width), 0)] = True
    return masks


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


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """PSNR (dB, 8-bit) over the pixels in ``region`` (T, H, W); ``PSNR_CAP`` when they are identical."""
    if not region.any():
        return float("nan")
    diff = a.astype(np.float64)[region] - b.astype(np.float64)[region]
    mse = float((diff**2).mean())
    return PSNR_CAP if mse == 0 else float(min(PSNR_CAP, 10 * np.log10(255.0**2 / mse)))


def ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Mean SSIM (grey, Gaussian window sigma 1.5) over the pixels in ``region``."""
    import cv2

    if not region.any():
        return float("nan")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for fa, fb, r in zip(a, b, region):
        if not r.any():
            continue
        x = cv2.cvtColor(fa, cv2.COLOR_RGB2GRAY).astype(np.float64)
        y = cv2.cvtColor(fb, cv2.COLOR_RGB2GRAY).astype(np.float64)

        def blur(z):
            return cv2.GaussianBlur(z, (11, 11), 1.5)

        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        values.append(s[r])
    return float(np.concatenate(values).mean())


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


def mouth_aspect_ratio(landmarks: np.ndarray) -> np.ndarray:
    """(T,) inner-lip opening over inner-lip width from iBUG 68 points: (|61-67| + |62-66| + |63-65|) / (3 |60-64|)."""
    lm = np.asarray(landmarks, np.float64)
    height = sum(np.linalg.norm(lm[:, a] - lm[:, b], axis=-1) for a, b in ((61, 67), (62, 66), (63, 65))) / 3
    return height / np.maximum(np.linalg.norm(lm[:, 60] - lm[:, 64], axis=-1), 1e-6)
