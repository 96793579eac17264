"""Audio to 16 kHz mono, placed by timestamp (AAC priming trimmed), cut into 640-sample model frames."""

from fractions import Fraction

import av
import numpy as np
import pytest

from keysync.errors import KeySyncError
from keysync.media import SAMPLES_PER_FRAME, fit_audio_to_frames, load_audio

from .faces_media_clips import clicks, write_clip


def _write_audio_only(path, audio, rate, layout="mono", codec="aac"):
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        data = np.ascontiguousarray(audio if audio.ndim == 2 else audio[None], dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _onsets(audio, rate=16000, level=0.2):
    """Start times of the bursts: first loud sample after at least 0.1 s of quiet."""
    loud = np.flatnonzero(np.abs(audio) > level)
    starts = [loud[0]] + [b for a, b in zip(loud[:-1], loud[1:]) if b - a > 0.1 * rate]
    return np.array(starts) / rate


def test_aac_priming_is_trimmed_and_length_is_exact(tmp_path):
    at = [0.5, 1.5]
    path = _write_audio_only(tmp_path / "speech.m4a", clicks(2.0, at), 16000)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == 32000  # naive decoding gives 32768 (priming + padding)
    assert np.allclose(_onsets(audio), at, atol=0.003)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_mp3_encoder_delay_is_not_a_late_start(tmp_path, rate):
    """An mp3's stream starts at its encoder delay (25 ms at 44.1 kHz, 69 ms at 16 kHz) after the
    container's time 0; the decoder already cuts the delay, so the speech must start on time."""
    at = [0.5, 1.5]
    t = np.arange(int(2.0 * rate)) / rate
    audio = np.interp(t, np.arange(32000) / 16000, clicks(2.0, at)).astype(np.float32)
    path = _write_audio_only(tmp_path / "speech.mp3", audio, rate, codec="libmp3lame")
    loaded = load_audio(path)
    assert np.abs(_onsets(loaded) - at).max() <= 0.002  # was 25 or 69 ms late
    assert abs(len(loaded) - 32000) <= 16


def test_stereo_44k_from_a_video_file_is_resampled_to_16k_mono(tmp_path):
    rate = 44100
    mono = clicks(2.0, [0.3, 1.2], rate=rate)
    stereo = np.stack([mono, 0.5 * mono])
    frames = [np.full((32, 32, 3), 128, np.uint8)] * 50
    path = write_clip(tmp_path / "clip.mp4", frames, audio=stereo, audio_rate=rate)
    audio = load_audio(path)
    assert abs(len(audio) - 32000) <= 16
    assert np.allclose(_onsets(audio, level=0.15), [0.3, 1.2], atol=0.003)


def test_fit_audio_to_frames_pads_and_cuts():
    audio = np.arange(1000, dtype=np.float32)
    framed = fit_audio_to_frames(audio, 3)
    assert framed.shape == (3, SAMPLES_PER_FRAME)
    assert np.array_equal(framed.reshape(-1)[:1000], audio) and not framed.reshape(-1)[1000:].any()
    assert fit_audio_to_frames(audio, 1).shape == (1, 640)
    late = fit_audio_to_frames(audio, 2, start=0.05)  # model frame 0 at 0.05 s = sample 800
    assert late[0, 0] == 800 and not late[0, 200:].any()


def test_missing_audio_stream_corrupt_and_absent_files_are_user_errors(tmp_path):
    silent_video = write_clip(tmp_path / "silent.mp4", [np.zeros((16, 16, 3), np.uint8)] * 3)
    with pytest.raises(KeySyncError, match="no audio stream"):
        load_audio(silent_video)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file" * 10)
    with pytest.raises(KeySyncError, match="cannot be read"):
        load_audio(junk)
    with pytest.raises(KeySyncError, match="does not exist"):
        load_audio(tmp_path / "nowhere.wav")
