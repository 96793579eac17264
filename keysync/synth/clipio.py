"""Byte-reproducible clip files: H.264 + AAC mp4, 16-bit wav, and ground-truth npz.

The encoders run single-threaded with fixed options and the containers carry no creation time, so the
same frames and samples always give the same bytes (the dataset's reproducibility promise).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import wave
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..files import write_atomic
from .speech import SAMPLE_RATE
from .visemes import FPS


@contextlib.contextmanager
def _defined_heap():
    """While encoding, glibc fills each fresh heap block with a fixed byte (``mallopt(M_PERTURB)``, as the
    ``MALLOC_PERTURB_`` variable does): the libx264 that PyAV bundles reads some memory it never wrote, which
    otherwise makes the same frames encode differently from run to run. Elsewhere than glibc: a no-op."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        yield
        return
    M_PERTURB = -6
    mallopt(M_PERTURB, 0x5A)
    try:
        yield
    finally:
        mallopt(M_PERTURB, 0)


def write_mp4(path: str | Path, frames: np.ndarray, audio: np.ndarray | None = None, fps: int = FPS, crf: int = 16) -> None:
    """Encode RGB frames (T, H, W, 3) uint8 (even H, W) as H.264 yuv420p, plus mono 16 kHz AAC audio."""

    def write(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
            video = container.add_stream("libx264", rate=fps)
            video.width, video.height = frames.shape[2], frames.shape[1]
            video.pix_fmt = "yuv420p"
            video.codec_context.thread_count = 1
            video.options = {"crf": str(crf), "preset": "fast", "threads": "1", "x264-params": "threads=1"}
            astream = None
            if audio is not None:
                astream = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
                astream.codec_context.thread_count = 1
            for i, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts = i
                frame.time_base = Fraction(1, fps)
                container.mux(video.encode(frame))
            container.mux(video.encode())
            if astream is not None:
                block = 1024
                for start in range(0, len(audio), block):
                    chunk = np.ascontiguousarray(audio[None, start : start + block], np.float32)
                    frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                    frame.sample_rate = SAMPLE_RATE
                    frame.pts = start
                    frame.time_base = Fraction(1, SAMPLE_RATE)
                    container.mux(astream.encode(frame))
                container.mux(astream.encode())

    with _defined_heap():
        write_atomic(Path(path), write)


def read_mp4_frames(path: str | Path) -> np.ndarray:
    """All video frames of a file as (T, H, W, 3) uint8 RGB."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])


def write_wav(path: str | Path, audio: np.ndarray) -> None:
    """Mono 16 kHz 16-bit PCM."""
    pcm = np.clip(np.round(np.asarray(audio) * 32767), -32768, 32767).astype("<i2")

    def write(tmp: Path) -> None:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(pcm.tobytes())

    write_atomic(Path(path), write)


def read_wav(path: str | Path) -> np.ndarray:
    """A 16-bit mono wav as float32 in [-1, 1] (the world's own files; use keysync.media for anything else)."""
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != SAMPLE_RATE:
            raise ValueError(f"{path}: expected mono 16-bit {SAMPLE_RATE} Hz")
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Compressed npz with fixed zip timestamps (numpy's own writer stamps the current time)."""
    buffers = {}
    for name, array in arrays.items():
        b = io.BytesIO()
        np.lib.format.write_array(b, np.asarray(array), allow_pickle=False)
        buffers[name] = b.getvalue()

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for name, data in buffers.items():
                z.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)

    write_atomic(Path(path), write)


def write_text(path: str | Path, text: str) -> None:
    write_atomic(Path(path), lambda tmp: tmp.write_text(text))
