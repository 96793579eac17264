"""Paste the regenerated lower face back into the original frame.

Only the mask, grown by ``dilate`` and softened by a Gaussian ``blur`` (both as fractions of the crop
size), is blended in. The blend weight also fades to 0 before the crop's own border (the box mask runs
to the crop's bottom edge, which must not show as a seam), and it is exactly 0 beyond that, so every
other pixel is the decoded input pixel, bit for bit. Optional colour matching removes the generator's
colour drift by shifting the crop's mean colour to the original's in the ring just outside the mask,
where both should agree.

Gray footage stays gray: the network regenerates colour (it was trained on colour faces), so on a gray
source the pasted lower face came back with purple and green tints, which colour matching (a mean shift)
cannot remove. Where the source's pasted area is gray (``is_gray``), only the regenerated pixels' luma is
pasted, so R = G = B there too; colour footage is pasted exactly as before, bit for bit.

What is pasted (``PASTE_REGIONS``): ``mask`` blends in everything the network regenerated, which for the
box mask runs down to the crop's bottom edge and takes in the neck, hair and background beside it, all
redrawn softer than they were. ``jaw`` (the default) blends in only the part of the mask above a line
under the jaw (``jaw_limits``), so the rest of the frame stays the source's. That line must not move with
the source's jaw, or the seam would show how the original mouth moved: it is the lowest each jaw point
reaches over the face's visible run, in coordinates that follow the head (``SkullFrame``), lowered by a
margin that leaves room for the new speech to open the jaw wider than the source did.
"""

from __future__ import annotations

import cv2
import numpy as np

from .crops import CropBox, SkullFrame, cut_crop
from .geometry import warp_area
from .tracking import TargetFace, present_runs

PASTE_REGIONS = ("jaw", "mask")
JAW = slice(0, 17)  # iBUG points 0-16: the jaw line from ear to ear
JAW_MARGIN = 0.15  # below the lowest jaw, as a share of the face's height (nose bridge 27 to chin 8)
LUMA = np.float32([0.299, 0.587, 0.114])  # ITU-R BT.601: the RGB -> Y weights the encoder (swscale's default) uses
GRAY_TOLERANCE = 4  # levels of max - min channel a gray pixel may show (about one chroma code of decoder noise)
GRAY_OUTLIERS = 0.01  # share of pixels allowed over it: stray noise does not make a gray frame colour


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


def jaw_limits(target: TargetFace, margin: float = JAW_MARGIN) -> list[np.ndarray | None]:
    """Per frame, the (17, 2) line in frame pixels below which nothing is pasted (None where the face is
    absent): each jaw point at the lowest it reaches over the visible run, carried by the head, then
    ``margin`` face heights lower."""
    limits: list[np.ndarray | None] = [None] * len(target.present)
    for start, end in present_runs(np.asarray(target.present, bool), target.shot_starts):
        frames = [SkullFrame.of(target.landmarks[i]) for i in range(start, end)]
        jaws = np.stack([f.to_skull(target.landmarks[i][JAW]) for f, i in zip(frames, range(start, end))])
        bridges = np.stack([f.to_skull(target.landmarks[i][27]) for f, i in zip(frames, range(start, end))])
        lowest = np.stack([np.median(jaws[..., 0], axis=0), jaws[..., 1].max(axis=0)], axis=1)
        lowest[:, 1] += margin * float(np.median(jaws[:, 8, 1] - bridges[:, 1]))
        for f, i in zip(frames, range(start, end)):
            limits[i] = f.to_frame(lowest)
    return limits


def above_line(line: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float32: 1 above the crop-space ``line`` (17 points, left to right), 0 below it."""
    line = np.asarray(line, np.float64)
    top = min(-1.0, float(line[:, 1].min()) - 1)
    polygon = np.concatenate([[[line[0, 0], top]], line, [[line[-1, 0], top]]])
    region = np.zeros((size, size), np.uint8)
    cv2.fillPoly(region, [np.round(polygon * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return region.astype(np.float32)


def match_colors(generated: np.ndarray, original: np.ndarray, mask: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Shift ``generated``'s mean colour to ``original``'s over the ring where ``alpha > 0`` but the mask is 0."""
    ring = (alpha > 0) & (np.asarray(mask) < 0.5)
    if ring.sum() < 16:
        return generated
    shift = original[ring].astype(np.float32).mean(axis=0) - generated[ring].astype(np.float32).mean(axis=0)
    return np.clip(generated.astype(np.float32) + shift, 0, 255).astype(np.uint8)


def is_gray(pixels: np.ndarray) -> bool:
    """Whether (..., 3) uint8 pixels are gray: all but ``GRAY_OUTLIERS`` of them have R, G and B within
    ``GRAY_TOLERANCE``. Sepia or merely desaturated colour (a skin tone's channels differ by tens of
    levels) is colour, and is pasted unchanged."""
    pixels = np.asarray(pixels).reshape(-1, 3)
    r, g, b = pixels[:, 0], pixels[:, 1], pixels[:, 2]  # (max over a 3-long axis is ~5x slower)
    spread = np.maximum(np.maximum(r, g), b).astype(np.int16) - np.minimum(np.minimum(r, g), b)
    return bool(np.mean(spread > GRAY_TOLERANCE) <= GRAY_OUTLIERS) if len(spread) else True


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

    ``box`` is the CropBox the crop was cut with; ``mask`` is in crop space (1 = regenerated). Where the
    frame's pasted area is gray (``is_gray``), the crop's luma alone is pasted, so gray stays gray.
    """
    alpha = feather(mask, dilate, blur)
    out = frame.copy()
    rows, cols = box.frame_bounds(*frame.shape[:2])
    weights = _weights_in_region(alpha, box, rows, cols)
    if weights.size == 0:
        return out
    if color_match:
        crop = match_colors(crop, cut_crop(frame, box), mask, alpha)
    back = _to_region(crop, box, rows, cols, cv2.BORDER_REPLICATE)
    # blend only within the bounding box of the weights (the lower face: about a third of the crop)
    used_rows, used_cols = np.flatnonzero(weights.max(axis=1) > 0), np.flatnonzero(weights.max(axis=0) > 0)
    if not len(used_rows):
        return out
    inner = slice(used_rows[0], used_rows[-1] + 1), slice(used_cols[0], used_cols[-1] + 1)
    roi = out[rows, cols][inner]
    weights, back = weights[inner], back[inner].astype(np.float32)
    if is_gray(roi[weights > 0]):
        back = np.repeat(back @ LUMA[:, None], 3, axis=2)  # equal channels blend into equal channels
    a = weights[..., None]
    blended = roi.astype(np.float32) + a * (back - roi)
    roi[...] = np.where(a > 0, np.clip(np.rint(blended), 0, 255), roi).astype(np.uint8)
    return out
