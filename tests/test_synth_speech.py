"""Speech of the synthetic world: espeak-ng over ctypes, phoneme timings, other sounds."""

import numpy as np
import pytest

from keysync.synth.dataset import clip_audio, plan_dataset
from keysync.synth.speech import SAMPLE_RATE, espeak_events, noise, synthesize, tones

TEXT = "Maybe the people will open the boat soon."


def test_phoneme_starts_within_10ms_of_espeak_events():
    speech = synthesize(TEXT, "en-us+f3", 170, 60)
    _, events = espeak_events(TEXT, "en-us+f3", 170, 60)
    spoken = [e for e in events if not e.symbol.startswith("_")]
    assert [p.symbol for p in speech.phonemes] == [e.symbol for e in spoken]
    assert len(spoken) > 20
    for p, e in zip(speech.phonemes, spoken):
        assert abs(p.start - e.audio_position_ms / 1000) <= 0.010
        assert p.end > p.start


def test_clip_timeline_matches_events_and_waveform():
    spec = next(s for s in plan_dataset(12, 5, 64, 64) if s.sound == "speech")
    audio, phonemes, n_frames = clip_audio(spec)
    assert len(audio) == n_frames * SAMPLE_RATE // 25
    _, events = espeak_events(spec.sentence, spec.identity.voice, spec.rate, spec.pitch)
    spoken = [e for e in events if not e.symbol.startswith("_")]
    for p, e in zip(phonemes, spoken):
        assert abs(p.start - (spec.lead + e.audio_position_ms / 1000)) <= 0.010
    # the waveform is where the timeline says: quiet before the first phoneme, loud during the sentence
    first = int((phonemes[0].start - 0.01) * SAMPLE_RATE)
    last = int(phonemes[-1].end * SAMPLE_RATE)
    assert np.sqrt(np.mean(audio[:first] ** 2)) < 1e-3
    assert np.sqrt(np.mean(audio[first:last] ** 2)) > 0.02


def test_speech_is_deterministic_and_voices_differ():
    a = synthesize("Hello there.", "en-us+m3")
    b = synthesize("Hello there.", "en-us+m3")
    c = synthesize("Hello there.", "en-gb-x-rp+f2", pitch=70)
    assert np.array_equal(a.waveform, b.waveform)
    assert a.phonemes == b.phonemes
    assert len(a.waveform) != len(c.waveform) or not np.allclose(a.waveform, c.waveform)


def test_unknown_voice_is_an_error():
    with pytest.raises(ValueError, match="no voice"):
        synthesize("Hello.", "xx-nonexistent")


def test_non_speech_sounds():
    for make in (noise, tones):
        x = make(2.0, np.random.default_rng(1))
        y = make(2.0, np.random.default_rng(1))
        assert x.dtype == np.float32 and len(x) == 2 * SAMPLE_RATE
        assert np.array_equal(x, y)
        assert 0.05 < np.abs(x).max() <= 1.0
