"""Decode -> crop -> (edit the crop) -> paste back -> encode, one frame at a time.

This is the front end's whole round trip: with no ``edit`` it shows that crops and paste-back leave the
video intact; ``keysync faces -o preview.mp4`` uses it to tint the mask. Memory is one frame plus the
per-frame landmark table, whatever the length of the video.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..media.audio import SAMPLE_RATE, load_audio
from ..media.video import probe_video, read_frames
from ..media.writer import VideoWriter
from .crops import CropBox, cut_crop
from .masks import build_mask
from .paste import paste_back
from .tracking import TargetFace

CropEdit = Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # (crop, mask, frame index) -> new crop
FrameDecoration = Callable[[np.ndarray, int], np.ndarray]  # (frame, frame index) -> frame


def render_through_crops(
    video: str | Path,
    output: str | Path,
    target: TargetFace,
    crops: list[CropBox | None],
    mask_kind: str = "box",
    edit: CropEdit | None = None,
    decorate: FrameDecoration | None = None,
    audio_path: str | Path | None = None,
    dilate: float = 0.02,
    blur: float = 0.02,
    color_match: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write ``output``: every frame of ``video`` with the target's crop (edited by ``edit``) pasted back.

    Frames without a target face are written unchanged; the input's size and timestamps are kept, and
    its audio, or the audio of ``audio_path`` (16 kHz mono) when given.
    """
    info = probe_video(video)
    audio, audio_rate = None, SAMPLE_RATE
    if audio_path is not None:
        audio = load_audio(audio_path)
    elif info.has_audio:
        audio_rate = info.audio_rate
        audio = load_audio(video, sample_rate=audio_rate, mono=info.audio_channels == 1)
    with VideoWriter(
        output, info.width, info.height, rate=info.average_rate, time_base=info.time_base,
        audio=audio, audio_rate=audio_rate, overwrite=overwrite,
    ) as writer:
        for frame in read_frames(video):
            image = frame.image
            box = crops[frame.index] if frame.index < len(crops) else None
            if box is not None:
                crop = cut_crop(image, box)
                mask = build_mask(mask_kind, box.to_crop(target.landmarks[frame.index]), box.size)
                new = edit(crop, mask, frame.index) if edit else crop
                image = paste_back(image, new, box, mask, dilate=dilate, blur=blur, color_match=color_match)
            if decorate is not None:
                image = decorate(image, frame.index)
            writer.write(image, frame.time)
    return Path(output)
