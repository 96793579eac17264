"""PSNR and SSIM against the source, as scikit-image computes them: the one implementation that ``keysync
eval`` and ``keysync bench`` share.

PSNR pools the squared error over every pixel of a region in all the clip's frames (8-bit), capped at
``PSNR_CAP`` dB for identical pixels, where scikit-image's ``peak_signal_noise_ratio`` would be infinite.
SSIM is scikit-image's ``structural_similarity`` with Wang et al.'s settings (Gaussian window, sigma 1.5,
population covariance) on RGB. Over a region, SSIM is the mean of scikit-image's per-pixel map (averaged
over the three channels) over the region's pixels, pooled over frames; over a whole frame it is
scikit-image's own mean, which leaves out a 5-pixel border.

``regenerated_box`` is the region the "box" numbers are measured in: KeySync's lower-face box.
"""

from __future__ import annotations

import math
import os

import numpy as np

PSNR_CAP = 100.0  # dB reported for identical pixels
DATA_RANGE = 255


def psnr_from_mse(mse: float) -> float:
    """PSNR (dB) of an 8-bit mean squared error, ``PSNR_CAP`` for 0; NaN for NaN (nothing compared)."""
    if not math.isfinite(mse):
        return math.nan
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(DATA_RANGE**2 / mse))


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """PSNR (dB) of uint8 frames ``a`` against ``b`` (T, H, W, 3) over the pixels in ``region`` (T, H, W; None:
    all): scikit-image's ``peak_signal_noise_ratio`` on those pixels, capped at ``PSNR_CAP``; NaN for an
    empty region. The squared errors are summed in integers, exactly, where scikit-image sums exact float64s:
    the same mean, without copying the region's pixels to float64 (twice as fast)."""
    if region is not None and not region.any():
        return math.nan
    diff = np.maximum(a, b) - np.minimum(a, b)  # |a - b|, exact in uint8
    diff = diff if region is None else diff[region]
    return psnr_from_mse(int(np.square(diff, dtype=np.uint32).sum(dtype=np.int64)) / diff.size)


def ssim_map(a: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray]:
    """SSIM of two (H, W, 3) uint8 RGB images: scikit-image's mean and its per-pixel map (H, W), the mean of
    the three channels' maps."""
    from skimage.metrics import structural_similarity

    mean, full = structural_similarity(
        a, b, channel_axis=2, data_range=DATA_RANGE, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True
    )
    return float(mean), full.mean(axis=2)


def ssim_maps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T, H, W) float32: ``ssim_map`` of each pair of frames of ``a`` and ``b`` (T, H, W, 3). Frames are
    compared side by side in threads (SciPy's filters release the GIL): the same maps, in half the time
    on two cores."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(len(a), os.cpu_count() or 1) or 1, thread_name_prefix="keysync-ssim") as pool:
        return np.stack(list(pool.map(lambda pair: ssim_map(*pair)[1].astype(np.float32), zip(a, b))))


def region_mean(maps: np.ndarray, region: np.ndarray) -> float:
    """The mean of per-pixel ``maps`` (T, H, W) over the pixels in ``region`` (T, H, W), pooled over frames;
    NaN for an empty region."""
    if not region.any():
        return math.nan
    return float(maps[region].astype(np.float64).mean())


def ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """SSIM of frames ``a`` against ``b`` (T, H, W, 3) over the pixels in ``region`` (T, H, W)."""
    if not region.any():
        return math.nan
    frames = np.flatnonzero(region.reshape(len(region), -1).any(axis=1))
    return region_mean(ssim_maps(a[frames], b[frames]), region[frames])


def regenerated_box(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W) bool: KeySync's lower-face box (x between the landmarks' extremes, from point 28 down)."""
    lm = np.asarray(landmarks)
    masks = np.zeros((len(lm), height, width), bool)
    for i, p in enumerate(lm):
        x0, x1 = int(np.floor(p[:, 0].min())), int(np.ceil(p[:, 0].max())) + 1
        y0 = int(np.floor(p[28, 1]))
        masks[i, max(y0, 0) :, max(x0, 0) : max(min(x1, width), 0)] = True
    return masks
