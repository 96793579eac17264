"""Resampling helpers shared by face detection, crops and paste-back."""

from __future__ import annotations

import cv2
import numpy as np


def padded_region(image: np.ndarray, x0: int, y0: int, n: int, m: int | None = None) -> np.ndarray:
    """``image[y0:y0+m, x0:x0+n]`` (m defaults to n), edge-replicated where it leaves the image."""
    h, w = image.shape[:2]
    m = n if m is None else m
    region = image[max(0, y0) : min(h, y0 + m), max(0, x0) : min(w, x0 + n)]
    if region.size == 0:
        return np.zeros((m, n) + image.shape[2:], image.dtype)
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = max(0, y0 + m - h), max(0, x0 + n - w)
    if top or left or bottom or right:
        region = cv2.copyMakeBorder(region, top, bottom, left, right, cv2.BORDER_REPLICATE)
    return region


def warp_area(image: np.ndarray, matrix: np.ndarray, out_w: int, out_h: int, border=cv2.BORDER_REPLICATE) -> np.ndarray:
    """``cv2.warpAffine`` that area-filters when it shrinks (warpAffine alone would alias): the source
    region is first area-resized to about the output's scale, then warped bilinearly. It enlarges
    bicubically: a small model's 64 px crop pasted onto a large face stays sharper (SSIM in the pasted box
    of the synthetic test clips, source crops pasted back: 0.943 bilinear, 0.951 bicubic)."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale >= 0.75:
        flags = cv2.INTER_CUBIC if scale > 1.25 else cv2.INTER_LINEAR
        return cv2.warpAffine(image, matrix, (out_w, out_h), flags=flags, borderMode=border)
    inv = cv2.invertAffineTransform(matrix)
    corners = np.array([[-1, -1], [out_w, -1], [-1, out_h], [out_w, out_h]], np.float64) @ inv[:, :2].T + inv[:, 2]
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
    region = padded_region(image, x0, y0, x1 - x0, y1 - y0)
    sw, sh = max(1, int(round((x1 - x0) * scale))), max(1, int(round((y1 - y0) * scale)))
    small = cv2.resize(region, (sw, sh), interpolation=cv2.INTER_AREA)
    fx, fy = sw / (x1 - x0), sh / (y1 - y0)
    # pixel u of ``small`` is frame pixel (u + 0.5) / f - 0.5 + origin
    to_frame = np.array([[1 / fx, 0, 0.5 / fx - 0.5 + x0], [0, 1 / fy, 0.5 / fy - 0.5 + y0], [0, 0, 1]])
    return cv2.warpAffine(small, matrix @ to_frame, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=border)
