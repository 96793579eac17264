"""LipLeak and mouth jitter: the one implementation that ``keysync eval`` (on landmarks of any video) and
``keysync bench`` (also on the synthetic world's mouth reader) share.

How "speaking" is decided. A frame is *speaking* when the mouth opening, maxed over a centred window of
7 frames (280 ms, ``SPEAKING_WINDOW`` = 3 on each side), exceeds a threshold. The window bridges the brief
closures inside speech (/p/, /b/, /m/), which are speech too. The driving audio is *silent* in a frame when
its RMS over that frame's 640 samples is below ``SILENCE_DBFS`` and so are the ``SPEAKING_WINDOW`` frames on
each side (120 ms): the short gaps between words, and the frames whose window reaches into speech, are
not silences a mouth should keep closed in. LipLeak = share of silent, readable frames that are speaking.

On landmarks (real video), the opening is the inner-lip mouth aspect ratio (``mouth_aspect_ratio``) of
68-point landmarks from any face front end, with ``SPEAKING_MAR`` = 0.08 as the threshold: above 99 % of
the synthetic world's mouths at rest (0.066) and below the median at jaw 0.15 (0.106); on real footage,
check it against a closed mouth of the person. The benchmark's mouth reader has its own threshold
(``keysync.bench.metrics``).
"""

from __future__ import annotations

import numpy as np

from ..constants import SAMPLES_PER_FRAME

SPEAKING_WINDOW = 3
SILENCE_DBFS = -45.0
SPEAKING_MAR = 0.08


def silent_frames(audio: np.ndarray, n_frames: int, margin: int = SPEAKING_WINDOW) -> np.ndarray:
    """(T,) bool: the audio's RMS over each frame's 640 samples, and over the ``margin`` frames each side
    (within the clip), is below ``SILENCE_DBFS``."""
    from scipy.ndimage import binary_erosion

    audio = np.asarray(audio, np.float64)
    padded = np.zeros(n_frames * SAMPLES_PER_FRAME)
    padded[: min(len(audio), len(padded))] = audio[: len(padded)]
    rms = np.sqrt((padded.reshape(n_frames, SAMPLES_PER_FRAME) ** 2).mean(1))
    quiet = 20 * np.log10(rms + 1e-12) < SILENCE_DBFS
    return binary_erosion(quiet, np.ones(2 * margin + 1, bool), border_value=1) if margin and n_frames else quiet


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


def mouth_jitter(opening: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean absolute second difference of the opening: frame-to-frame shake that smooth speech lacks."""
    o = np.asarray(opening, np.float64)
    if len(o) < 3:
        return float("nan")
    d2 = np.abs(o[2:] - 2 * o[1:-1] + o[:-2])
    if valid is not None:
        d2 = d2[valid[2:] & valid[1:-1] & valid[:-2]]
    return float(d2.mean()) if d2.size else float("nan")


def mouth_aspect_ratio(landmarks: np.ndarray) -> np.ndarray:
    """(T,) inner-lip opening over inner-lip width from iBUG 68 points: (|61-67| + |62-66| + |63-65|) / (3 |60-64|)."""
    lm = np.asarray(landmarks, np.float64)
    height = sum(np.linalg.norm(lm[:, a] - lm[:, b], axis=-1) for a, b in ((61, 67), (62, 66), (63, 65))) / 3
    return height / np.maximum(np.linalg.norm(lm[:, 60] - lm[:, 64], axis=-1), 1e-6)
