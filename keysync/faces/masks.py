"""Lower-face masks on iBUG 68 landmarks (1 = region to regenerate), in crop space and at latent size.

The kinds follow the reference implementation (keysync-reference.md section 1.5), with landmarks given
in the same pixel space as the mask:
- ``box`` (the paper's): from the nose-bridge point 28 down to the bottom edge, across the landmarks'
  x-extent. Nothing of the source mouth or jaw shape survives outside it.
- ``heart``: the box from point 29 down, minus a rectangle around the nose (31-35, 29-33).
- ``mouth``: from point 28 minus a margin down to the lowest landmark plus the margin (1% of the width).
- ``full``: every row below point 28, at full width.
An occluder mask (1 = something in front of the face, e.g. a hand) is removed: mask AND NOT occluder,
so the model keeps the occluder's original pixels and inpaints around them.
"""

from __future__ import annotations

import numpy as np

MASK_KINDS = ("box", "heart", "mouth", "full")
NOSE_INDEX = 28


def _fill(mask: np.ndarray, x0: float, x1: float, y0: float, y1: float, value: float = 1.0) -> None:
    """Set the pixels whose centres lie in [x0, x1] x [y0, y1] (clipped to the image)."""
    h, w = mask.shape
    c0, c1 = max(0, int(np.ceil(x0))), min(w, int(np.floor(x1)) + 1)
    r0, r1 = max(0, int(np.ceil(y0))), min(h, int(np.floor(y1)) + 1)
    if c1 > c0 and r1 > r0:
        mask[r0:r1, c0:c1] = value


def build_mask(kind: str, landmarks: np.ndarray, size: int, occluder: np.ndarray | None = None) -> np.ndarray:
    """One (size, size) float32 mask from (68, 2) landmarks in the mask's own pixel coordinates."""
    lm = np.asarray(landmarks, dtype=np.float64)
    mask = np.zeros((size, size), dtype=np.float32)
    bottom = size - 1
    x_min, x_max = lm[:, 0].min(), lm[:, 0].max()
    if kind == "box":
        _fill(mask, x_min, x_max, lm[NOSE_INDEX, 1], bottom)
    elif kind == "full":
        _fill(mask, 0, size - 1, lm[NOSE_INDEX, 1], bottom)
    elif kind == "heart":
        _fill(mask, x_min, x_max, lm[29, 1], bottom)
        margin = 0.1 * abs(lm[2, 0] - lm[29, 0])
        _fill(mask, lm[31, 0] - margin, lm[35, 0] + margin, lm[29, 1], lm[33, 1], value=0.0)
    elif kind == "mouth":
        e = 0.01 * size
        _fill(mask, x_min - e, x_max + e, lm[NOSE_INDEX, 1] - e, lm[:, 1].max() + e)
    else:
        raise ValueError(f"unknown mask kind {kind!r}; choose one of {', '.join(MASK_KINDS)}")
    if occluder is not None:
        mask[np.asarray(occluder) > 0.5] = 0.0
    return mask


def build_masks(kind: str, landmarks: np.ndarray, size: int, occluders: np.ndarray | None = None) -> np.ndarray:
    """(T, size, size) masks from (T, 68, 2) landmarks; ``occluders`` (T, size, size) optional."""
    return np.stack(
        [build_mask(kind, lm, size, None if occluders is None else occluders[t]) for t, lm in enumerate(landmarks)]
    )


def latent_mask(mask: np.ndarray, factor: int = 8) -> np.ndarray:
    """Nearest-neighbour downsample of (..., H, W) masks by the VAE factor (512 -> 64), as the reference
    does (torch ``interpolate(mode="nearest")`` keeps pixel ``factor * i``)."""
    return np.ascontiguousarray(mask[..., ::factor, ::factor])
