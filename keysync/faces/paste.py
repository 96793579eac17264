"""Paste the regenerated lower face back into the original frame.

Only the mask, grown by ``dilate`` and softened by a Gaussian ``blur`` (both as fractions of the crop
size), is blended in. The blend weight also fades to 0 before the crop's own border (the box mask runs
to the crop's bottom edge, which must not show as a seam), and it is exactly 0 beyond that, so every
other pixel is the decoded input pixel, bit for bit. Optional colour matching removes the generator's
colour drift by shifting the crop's mean colour to the original's in the ring just outside the mask,
where both should agree.
"""

from __future__ import annotations

import cv2
import numpy as np

from .crops import CropBox, cut_crop
from .geometry import warp_area


def feather(mask: np.ndarray, dilate: float = 0.02, blur: float = 0.02) -> np.ndarray:
    """Soft blend weights in [0, 1] from a (size, size) mask: dilate, clear the border band, Gaussian blur."""
    size = mask.shape[0]
    alpha = (np.asarray(mask) > 0.5).astype(np.float32)
    radius = int(round(dilate * size))
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        alpha = cv2.dilate(alpha, kernel)
    sigma = blur * size
    half = int(np.ceil(3 * sigma)) if sigma > 0 else 0
    band = half + 1
    alpha[:band], alpha[-band:], alpha[:, :band], alpha[:, -band:] = 0, 0, 0, 0
    if sigma > 0:
        alpha = cv2.GaussianBlur(alpha, (2 * half + 1, 2 * half + 1), sigma, borderType=cv2.BORDER_CONSTANT)
    alpha[alpha < 1e-3] = 0.0
    return alpha


def match_colors(generated: np.ndarray, original: np.ndarray, mask: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Shift ``generated``'s mean colour to ``original``'s over the ring where ``alpha > 0`` but the mask is 0."""
    ring = (alpha > 0) & (np.asarray(mask) < 0.5)
    if ring.sum() < 16:
        return generated
    shift = original[ring].astype(np.float32).mean(axis=0) - generated[ring].astype(np.float32).mean(axis=0)
    return np.clip(generated.astype(np.float32) + shift, 0, 255).astype(np.uint8)


def _to_region(image: np.ndarray, box: CropBox, rows: slice, cols: slice, border) -> np.ndarray:
    """Warp a crop-space image back onto the frame region ``[rows, cols]``."""
    inverse = box.inverse
    inverse[:, 2] -= [cols.start, rows.start]
    return warp_area(image, inverse, cols.stop - cols.start, rows.stop - rows.start, border=border)


def frame_weights(frame_shape, box: CropBox, mask: np.ndarray, dilate: float = 0.02, blur: float = 0.02):
    """The feathered blend weights in frame space: ``(rows, cols, alpha)``, ``alpha`` float32 over
    ``frame[rows, cols]`` (the crop's footprint clipped to the frame); 0 means "input pixel"."""
    rows, cols = box.frame_bounds(*frame_shape[:2])
    return rows, cols, _weights_in_region(feather(mask, dilate, blur), box, rows, cols)


def _weights_in_region(alpha: np.ndarray, box: CropBox, rows: slice, cols: slice) -> np.ndarray:
    if rows.stop <= rows.start or cols.stop <= cols.start:
        return np.zeros((0, 0), np.float32)
    weights = _to_region(alpha, box, rows, cols, cv2.BORDER_CONSTANT)
    weights[weights < 1e-3] = 0.0
    return weights


def paste_back(
    frame: np.ndarray,
    crop: np.ndarray,
    box: CropBox,
    mask: np.ndarray,
    dilate: float = 0.02,
    blur: float = 0.02,
    color_match: bool = False,
) -> np.ndarray:
    """A copy of ``frame`` with ``crop`` (size, size, 3) blended in through the feathered ``mask``.

    ``box`` is the CropBox the crop was cut with; ``mask`` is in crop space (1 = regenerated).
    """
    alpha = feather(mask, dilate, blur)
    if color_match:
        crop = match_colors(crop, cut_crop(frame, box), mask, alpha)
    out = frame.copy()
    rows, cols = box.frame_bounds(*frame.shape[:2])
    weights = _weights_in_region(alpha, box, rows, cols)
    if weights.size == 0:
        return out
    back = _to_region(crop, box, rows, cols, cv2.BORDER_REPLICATE).astype(np.float32)
    a = weights[..., None]
    roi = out[rows, cols]
    blended = roi.astype(np.float32) + a * (back - roi)
    out[rows, cols] = np.where(a > 0, np.clip(np.rint(blended), 0, 255), roi).astype(np.uint8)
    return out
