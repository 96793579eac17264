"""Streaming video decoding: every frame as upright RGB uint8 with its own timestamp.

Rotation metadata is applied, any pixel format (10-bit, grayscale, odd sizes) is converted to RGB by
FFmpeg's swscale, and timestamps come from the file, so variable frame rate survives.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from ..errors import KeySyncError


@dataclass(frozen=True)
class VideoInfo:
    """What the rest of the tool needs to know about a video file before decoding it."""

    path: str
    width: int  # as displayed, i.e. after rotation
    height: int
    rotation: int  # counter-clockwise degrees applied to the decoded pixels
    average_rate: Fraction  # mean frames per second (the file may still be variable-rate)
    time_base: Fraction
    frame_count: int  # from the container; 0 when it does not say
    duration: float  # seconds; 0.0 when unknown
    pix_fmt: str
    has_audio: bool
    audio_rate: int  # sample rate of the first audio stream; 0 without audio
    audio_channels: int
    start: float = 0.0  # the container's start time (seconds): what a separate soundtrack's time 0 lines up with


@dataclass
class Frame:
    """One decoded frame: its position in the file, its presentation time and its pixels."""

    index: int
    time: float  # seconds, from the stream's timestamps
    image: np.ndarray  # (H, W, 3) uint8 RGB, upright


@contextlib.contextmanager
def open_media(path: str | Path):
    """Open a media file for reading, turning FFmpeg failures into one-line user errors."""
    path = Path(path)
    if not path.is_file():
        raise KeySyncError(f"{path} does not exist; give the path of a video or audio file")
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise KeySyncError(f"{path} cannot be read as media ({err.strerror or err}); check that the file is complete")
    try:
        yield container
    finally:
        container.close()


def _video_stream(container, path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise KeySyncError(f"{path} has no video stream; give a video file")
    return container.streams.video[0]


def _rotation_of(frame: av.VideoFrame) -> int:
    rot = frame.rotation or 0
    return int(round(rot / 90.0)) * 90 % 360


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    if rotation == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=rotation // 90))


def container_start(container) -> float:
    """The earliest start of a container's streams, in seconds. FFmpeg counts every input's time from it,
    and so do we: an mp3's start is its encoder delay, already cut by the decoder, not a silence to add."""
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's geometry, rate and duration (decodes the first frame to learn its rotation)."""
    with open_media(path) as container:
        stream = _video_stream(container, path)
        try:
            first = next(container.decode(stream))
        except (StopIteration, av.FFmpegError) as err:
            raise KeySyncError(f"{path}: no decodable video frame ({err}); check that the file is complete")
        rotation = _rotation_of(first)
        w, h = first.width, first.height
        if rotation in (90, 270):
            w, h = h, w
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        return VideoInfo(
            path=str(path),
            width=w,
            height=h,
            rotation=rotation,
            average_rate=Fraction(rate),
            time_base=Fraction(stream.time_base or Fraction(1, 90000)),
            frame_count=int(stream.frames or 0),
            duration=duration,
            pix_fmt=first.format.name,
            has_audio=bool(container.streams.audio),
            audio_rate=int(container.streams.audio[0].sample_rate or 0) if container.streams.audio else 0,
            audio_channels=int(container.streams.audio[0].channels or 0) if container.streams.audio else 0,
            start=container_start(container),
        )


def read_frames(path: str | Path) -> Iterator[Frame]:
    """Yield every frame of the first video stream, upright RGB, with its presentation time in seconds.

    Frames come one at a time (decoder threads on), so memory stays flat however long the video is.
    A frame without a timestamp gets the previous one plus one average frame interval; a repeated
    timestamp is moved 1 ms after the previous one, so times always increase.
    """
    with open_media(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        step = 1.0 / float(stream.average_rate or stream.guessed_rate or 25)
        last_time = None
        index = 0
        try:
            for frame in container.decode(stream):
                time = frame.time
                if time is None:
                    time = 0.0 if last_time is None else last_time + step
                elif last_time is not None and time <= last_time:
                    time = last_time + 0.001  # a repeated timestamp (broken muxer): keep times increasing
                last_time = time
                image = _upright(frame.to_ndarray(format="rgb24"), _rotation_of(frame))
                yield Frame(index=index, time=float(time), image=image)
                index += 1
        except av.FFmpegError as err:
            raise KeySyncError(f"{path}: decoding failed at frame {index} ({err}); the file may be damaged")
        if index == 0:
            raise KeySyncError(f"{path}: no decodable video frame; check that the file is complete")
