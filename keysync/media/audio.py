"""Audio from any audio or video file as 16 kHz mono float32, placed by timestamp.

Decoded frames are put where their timestamps say, counted from the container's start as FFmpeg does
(``container_start``), so AAC encoder priming (which shifts naive concatenation by 1024+ samples), an
mp3's encoder delay (its stream starts 25-70 ms after the container's time 0, and the decoder has
already cut the delay) and a late audio start in a video are all handled; the result ends at the
stream's stated duration.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from ..constants import SAMPLE_RATE, SAMPLES_PER_FRAME  # noqa: F401 (SAMPLES_PER_FRAME: keysync.media's)
from ..errors import KeySyncError
from .video import container_start, open_media


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, mono: bool = True) -> np.ndarray:
    """Decode the first audio stream of ``path``, resampled to ``sample_rate``.

    Returns float32 in [-1, 1]: shape (samples,) when ``mono``, else (2, samples) stereo. Sample ``n`` is
    ``n / sample_rate`` after the container's start. Raises KeySyncError for a missing file, unreadable data or a file
    without audio.
    """
    layout = "mono" if mono else "stereo"
    with open_media(path) as container:
        if not container.streams.audio:
            raise KeySyncError(f"{path} has no audio stream; give a file that contains speech")
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
        chunks: list[np.ndarray] = []
        first_time = None
        try:
            for frame in container.decode(stream):
                if first_time is None and frame.time is not None:
                    first_time = float(frame.time)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        except av.FFmpegError as err:
            raise KeySyncError(f"{path}: audio decoding failed ({err}); the file may be damaged")
        if not chunks:
            raise KeySyncError(f"{path}: the audio stream holds no samples; give a file that contains speech")
        audio = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
        origin = container_start(container)
        offset = int(round(((first_time if first_time is not None else origin) - origin) * sample_rate))
        if offset > 0:
            audio = np.pad(audio, ((0, 0), (offset, 0)))
        elif offset < 0:
            audio = audio[:, -offset:]
        if stream.duration is not None and stream.time_base is not None:
            start = float((stream.start_time or 0) * stream.time_base) - origin
            end = int(round((start + float(stream.duration * stream.time_base)) * sample_rate))
            audio = audio[:, : max(end, 0)]
    return np.ascontiguousarray(audio[0] if mono else audio)


def resample_to_16k(audio, sample_rate: int) -> np.ndarray:
    """A waveform ((samples,) or (channels, samples), at ``sample_rate``) as 16 kHz mono float32."""
    from scipy.signal import resample_poly

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=0)
    if audio.ndim != 1 or audio.size == 0:
        raise KeySyncError(f"audio of shape {audio.shape}: give a waveform of shape (samples,) or (channels, samples)")
    if sample_rate != SAMPLE_RATE:
        from math import gcd

        g = gcd(int(sample_rate), SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, int(sample_rate) // g).astype(np.float32)
    return audio


def fit_audio_to_frames(
    audio: np.ndarray,
    num_frames: int,
    start: float = 0.0,
    sample_rate: int = SAMPLE_RATE,
    samples_per_frame: int = SAMPLES_PER_FRAME,
) -> np.ndarray:
    """Mono audio as (num_frames, 640): row k is the sound of model frame k.

    ``start`` is the time of model frame 0 (``ModelFramePlan.start``: a video's first timestamp need not
    be 0); the audio is cut or zero-padded to exactly ``num_frames`` frames from there.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError("fit_audio_to_frames expects mono audio of shape (samples,)")
    offset = int(round(start * sample_rate))
    audio = audio[offset:] if offset >= 0 else np.pad(audio, (-offset, 0))
    need = num_frames * samples_per_frame
    audio = audio[:need] if len(audio) >= need else np.pad(audio, (0, need - len(audio)))
    return audio.reshape(num_frames, samples_per_frame)
