"""Short test clips made from real face photos that ship inside wheels, with synthetic head motion.

- ``skimage.data.astronaut()`` (scikit-image).
- insightface's ``t1.jpg`` group photo (six people): the file is read straight out of the installed
  ``insightface`` distribution (installed with ``pip install --no-deps insightface==2.1``, see README), via
  ``importlib.metadata`` so that insightface itself (which needs onnxruntime) is never imported.
"""

from __future__ import annotations

import importlib.metadata
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from keysync.media.writer import VideoWriter


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def group_photo() -> np.ndarray:
    """insightface's t1.jpg as RGB (886 x 1280, six faces)."""
    try:
        dist = importlib.metadata.distribution("insightface")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("the group photo comes from the insightface wheel: pip install --no-deps insightface==2.1")
    path = Path(dist.locate_file("insightface/data/images/t1.jpg"))
    image = cv2.imread(str(path))
    if image is None:
        pytest.fail(f"{path} is missing from the insightface wheel")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def motion(photo_shape, width: int, height: int, count: int, photo_height: int, amplitude: float = 40.0) -> list[np.ndarray]:
    """Per-frame 2x3 photo -> frame matrices: the photo scaled to ``photo_height``, drifting and zooming."""
    ph, pw = photo_shape[:2]
    base = photo_height / ph
    matrices = []
    for k in range(count):
        phase = 2 * np.pi * k / max(count, 1)
        s = base * (1.0 + 0.04 * np.sin(phase))
        tx = width / 2 - pw * s / 2 + amplitude * np.sin(phase)
        ty = height / 2 - ph * s / 2 + 0.5 * amplitude * np.cos(phase)
        matrices.append(np.float64([[s, 0, tx], [0, s, ty]]))
    return matrices


def moving_frames(photo: np.ndarray, width: int, height: int, count: int, photo_height: int, amplitude: float = 40.0):
    """Frames of ``photo`` moved by ``motion`` on a grey canvas."""
    for matrix in motion(photo.shape, width, height, count, photo_height, amplitude):
        yield cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=(96, 96, 96))


def clicks(duration: float, at: list[float], rate: int = 16000) -> np.ndarray:
    """Silence with a short 1 kHz burst starting at each time in ``at``."""
    audio = np.zeros(int(round(duration * rate)), np.float32)
    burst = 0.8 * np.sin(2 * np.pi * 1000 * np.arange(int(0.02 * rate)) / rate).astype(np.float32)
    for t in at:
        i = int(round(t * rate))
        audio[i : i + len(burst)] = burst[: len(audio) - i]
    return audio


def write_clip(path, frames, times=None, rate=25, audio=None, audio_rate=16000, crf=16) -> Path:
    """Encode frames (optionally at explicit timestamps, for variable frame rate) with our writer."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    tb = Fraction(1, 90000) if times is not None else None
    with VideoWriter(path, w, h, rate=rate, time_base=tb, audio=audio, audio_rate=audio_rate, crf=crf, preset="ultrafast") as out:
        for k, image in enumerate(frames):
            out.write(image, None if times is None else times[k])
    return Path(path)


def tone(seconds: float) -> np.ndarray:
    """A 220 Hz tone switched on and off three times a second: speech-like bursts at 16 kHz."""
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)


def write_wav(path, audio) -> Path:
    with VideoWriter(path, 2, 2, audio=audio) as w:  # an .m4a-free way to make an audio file: mp4 with AAC
        w.write(np.zeros((2, 2, 3), np.uint8), 0.0)
    return Path(path)
