"""Phonemes -> visemes -> continuous mouth parameters per video frame, with coarticulation.

Each phoneme maps to a viseme: a target mouth shape and a dominance (how strongly it holds that shape
against its neighbours). The mouth at time t is the dominance-weighted mean of all targets, each
dominance decaying exponentially with the distance from t to its phoneme (the Cohen-Massaro
coarticulation model), so a /p/ closes the lips firmly while an /h/ takes the shape of the vowel after
it. Where nothing is spoken the mouth rests. The result is a deterministic function of the phoneme
timeline, which is what lets the benchmark know the mouth any audio asks for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..constants import MODEL_FPS as FPS  # noqa: I001 (the world is rendered at the model's own rate)
from .speech import Phoneme

"""Video frame rate of the world (the model's rate)."""

MOUTH_PARAMS = ("jaw", "width", "round", "teeth", "tongue")
"""Mouth parameters, each in [0, 1]: jaw opening, lip width (spread), lip rounding, teeth and tongue visibility."""

REST = np.array([0.03, 0.45, 0.15, 0.0, 0.0], np.float32)
"""The mouth at rest (closed lips, relaxed)."""

# viseme name -> (target [jaw, width, round, teeth, tongue], dominance, time constant in seconds)
VISEMES: dict[str, tuple[tuple[float, ...], float, float]] = {
    "rest": (tuple(REST), 1.0, 0.06),
    "bilabial": ((0.0, 0.45, 0.2, 0.0, 0.0), 4.0, 0.03),
    "labiodental": ((0.1, 0.5, 0.1, 1.0, 0.0), 3.0, 0.03),
    "dental": ((0.2, 0.55, 0.1, 0.8, 1.0), 2.0, 0.03),
    "alveolar": ((0.2, 0.55, 0.1, 0.6, 0.3), 0.8, 0.03),
    "lateral": ((0.25, 0.55, 0.1, 0.5, 0.8), 0.8, 0.03),
    "sibilant": ((0.12, 0.6, 0.05, 1.0, 0.0), 2.0, 0.03),
    "postalveolar": ((0.15, 0.35, 0.65, 0.8, 0.0), 2.0, 0.03),
    "velar": ((0.3, 0.5, 0.15, 0.3, 0.1), 0.5, 0.03),
    "glottal": ((0.3, 0.5, 0.15, 0.2, 0.0), 0.2, 0.03),
    "approximant_r": ((0.2, 0.35, 0.55, 0.2, 0.0), 1.0, 0.04),
    "approximant_w": ((0.12, 0.15, 1.0, 0.0, 0.0), 2.0, 0.04),
    "approximant_j": ((0.18, 0.75, 0.0, 0.6, 0.1), 1.0, 0.04),
    "open": ((0.9, 0.6, 0.1, 0.3, 0.2), 2.0, 0.05),
    "mid_front": ((0.55, 0.75, 0.05, 0.6, 0.1), 2.0, 0.05),
    "close_front": ((0.25, 0.95, 0.0, 0.8, 0.0), 2.0, 0.05),
    "central": ((0.45, 0.55, 0.15, 0.3, 0.1), 1.5, 0.05),
    "open_back": ((0.75, 0.4, 0.5, 0.2, 0.1), 2.0, 0.05),
    "mid_back": ((0.55, 0.3, 0.75, 0.2, 0.0), 2.0, 0.05),
    "close_back": ((0.2, 0.2, 0.95, 0.1, 0.0), 2.0, 0.05),
}

_CONSONANTS = {
    "p": "bilabial", "b": "bilabial", "m": "bilabial",
    "f": "labiodental", "v": "labiodental",
    "T": "dental", "D": "dental",
    "t": "alveolar", "d": "alveolar", "n": "alveolar", "t#": "alveolar", "n-": "alveolar",
    "l": "lateral", "L": "lateral", "l/": "lateral", "l/2": "lateral",
    "s": "sibilant", "z": "sibilant",
    "S": "postalveolar", "Z": "postalveolar", "tS": "postalveolar", "dZ": "postalveolar",
    "k": "velar", "g": "velar", "N": "velar", "x": "velar",
    "h": "glottal", "?": "glottal",
    "r": "approximant_r", "r-": "approximant_r", "R": "approximant_r",
    "w": "approximant_w", "W": "approximant_w",
    "j": "approximant_j", "C": "approximant_j",
}

_VOWELS = {
    "a": "open", "A": "open", "aa": "open", "a#": "open", "A:": "open", "A@": "open",
    "E": "mid_front", "e": "mid_front", "e@": "mid_front",
    "i": "close_front", "i:": "close_front", "I": "close_front", "I2": "close_front", "I#": "close_front",
    "@": "central", "@2": "central", "@5": "central", "3": "central", "3:": "central", "V": "central",
    "@L": "central", "@r": "central",
    "0": "open_back", "O": "open_back", "O:": "open_back", "O@": "open_back",
    "o": "mid_back", "o@": "mid_back",
    "u": "close_back", "u:": "close_back", "U": "close_back", "U@": "close_back",
}

_DIPHTHONGS = {
    "aI": ("open", "close_front"), "aI@": ("open", "close_front"), "aI3": ("open", "close_front"),
    "aU": ("open", "close_back"), "eI": ("mid_front", "close_front"), "oU": ("mid_back", "close_back"),
    "OI": ("mid_back", "close_front"), "i@": ("close_front", "central"), "i@3": ("close_front", "central"),
    "e@": ("mid_front", "central"), "U@": ("close_back", "central"), "aU@": ("open", "close_back"),
}


def viseme_sequence(phoneme: str) -> tuple[str, ...]:
    """The viseme(s) of an espeak phoneme mnemonic (stress marks ignored); diphthongs give two."""
    key = phoneme.lstrip("',%=")
    if key in _DIPHTHONGS:
        return _DIPHTHONGS[key]
    for table in (_CONSONANTS, _VOWELS):
        if key in table:
            return (table[key],)
    # unknown mnemonics (rare variants such as "@3" or "I2#"): fall back on their first letter
    for table in (_CONSONANTS, _VOWELS):
        if key[:1] in table:
            return (table[key[:1]],)
    return ("central",)


def mouth_track(
    phonemes: Sequence[Phoneme],
    n_frames: int,
    fps: float = FPS,
    articulation: float = 1.0,
    substeps: int = 4,
) -> np.ndarray:
    """Mouth parameters (``n_frames``, 5) for a phoneme timeline; frame t covers [t/fps, (t+1)/fps).

    ``articulation`` scales how far the mouth moves from rest (a speaker's style). Each frame is the mean
    over ``substeps`` instants inside it, as a camera integrates over its exposure.
    """
    segments: list[tuple[float, float, str]] = []
    for ph in phonemes:
        visemes = viseme_sequence(ph.symbol)
        step = (ph.end - ph.start) / len(visemes)
        segments += [(ph.start + i * step, ph.start + (i + 1) * step, v) for i, v in enumerate(visemes)]
    # rest wherever nothing is spoken: before, between (gaps) and after the phonemes
    duration = n_frames / fps
    spoken = sorted(segments)
    cursor = -1.0
    for start, end, _ in spoken + [(duration + 1.0, duration + 1.0, "")]:
        if start - cursor > 1e-3:
            segments.append((cursor, start, "rest"))
        cursor = max(cursor, end)

    starts = np.array([s[0] for s in segments])
    ends = np.array([s[1] for s in segments])
    targets = np.array([VISEMES[s[2]][0] for s in segments], np.float64)
    dominance = np.array([VISEMES[s[2]][1] for s in segments])
    tau = np.array([VISEMES[s[2]][2] for s in segments])

    t = (np.arange(n_frames)[:, None] + (np.arange(substeps) + 0.5) / substeps).reshape(-1) / fps
    distance = np.maximum(0.0, np.maximum(starts[None] - t[:, None], t[:, None] - ends[None]))
    weights = dominance[None] * np.exp(-distance / tau[None])
    mouth = weights @ targets / weights.sum(axis=1, keepdims=True)
    mouth = REST + articulation * (mouth - REST)
    mouth = mouth.reshape(n_frames, substeps, -1).mean(axis=1)
    return np.clip(mouth, 0.0, 1.0).astype(np.float32)


def shift_phonemes(phonemes: Sequence[Phoneme], offset: float) -> list[Phoneme]:
    """The same phonemes ``offset`` seconds later (negative: earlier)."""
    return [Phoneme(p.symbol, p.start + offset, p.end + offset) for p in phonemes]
