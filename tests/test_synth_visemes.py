"""Phonemes -> visemes -> mouth parameters with coarticulation."""

import numpy as np

from keysync.synth.speech import Phoneme
from keysync.synth.visemes import MOUTH_PARAMS, REST, mouth_track, viseme_sequence


def _timeline(symbols, start=0.2, step=0.1):
    return [Phoneme(s, start + i * step, start + (i + 1) * step) for i, s in enumerate(symbols)]


def test_silence_is_rest():
    m = mouth_track([], 20)
    assert m.shape == (20, len(MOUTH_PARAMS))
    assert np.allclose(m, REST, atol=1e-6)


def test_bilabial_closes_and_open_vowel_opens():
    ph = _timeline(["m", "'A:", "m", "'A:", "m"], step=0.15)  # vowels at 0.35-0.5 s and 0.65-0.8 s
    jaw = mouth_track(ph, 30)[:, 0]
    assert jaw[10] > 0.5  # 0.40-0.44 s: inside the first vowel
    assert jaw[14] < jaw[10] - 0.3  # 0.56-0.60 s: the /m/ between the vowels closes the mouth
    assert jaw[25:].max() < 0.1  # rest after speech


def test_rounding_and_teeth_follow_visemes():
    rounded = mouth_track(_timeline(["w", "u:", "w"]), 15)
    spread = mouth_track(_timeline(["s", "i:", "s"]), 15)
    assert rounded[7, 2] > spread[7, 2] + 0.4  # lip rounding
    assert spread[7, 1] > rounded[7, 1] + 0.4  # lip width
    assert spread[7, 3] > rounded[7, 3]  # teeth show on /s i:/
    tongue = mouth_track(_timeline(["'a", "T", "'a"]), 15)
    assert tongue[:, 4].max() > 0.3  # /T/ shows the tongue


def test_coarticulation_is_smooth_and_deterministic():
    ph = _timeline(["h", "@", "l", "'oU", "w", "'3:", "l", "d"], step=0.07)
    a, b = mouth_track(ph, 30), mouth_track(ph, 30)
    assert np.array_equal(a, b)
    assert np.abs(np.diff(a, axis=0)).max() < 0.5
    assert (a >= 0).all() and (a <= 1).all()
    # /h/ takes the shape of its neighbour rather than its own
    assert viseme_sequence("h") == ("glottal",)
    assert viseme_sequence("'aI") == ("open", "close_front")
    assert viseme_sequence(",oU") == ("mid_back", "close_back")
