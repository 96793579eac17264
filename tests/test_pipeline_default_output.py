"""The default dub stays what it was: speed work (stages that overlap, presets) may not move it by more than
float rounding. ``data/default_dub.npz`` holds the region a default dub changed (micro model, frames API)
as the code of 45bbe5e made it, before the pipeline was split into concurrent stages, given the face
track in ``data/default_dub_face.npz``.

The track is stored, not tracked again: MediaPipe's landmarks are not float rounding away from one machine
to another (with the same code, an AVX-512 machine with OpenCV 5.1 tracked this clip so that the dub
moved by up to 115 levels against the AVX2 machine that first recorded it), and what this test holds
still is everything after tracking.

Tolerance: pixels are uint8 made by rounding the VAE's float output, so a summation-order difference
(another CPU's kernels, thread count) far below one level moves a pixel by at most one level, and only
where the float value sits near a rounding boundary. The parity tests bound each network evaluation at
2^-14 of its largest magnitude; over 11 steps x 2 stages and the decoder that stays below 0.05 of a level
(127.5 x 22 x 2^-14 ~ 0.17 before the decoder's contraction), so at most one level, on at most 1 % of
the pixels."""

from pathlib import Path

import numpy as np

from keysync.faces.frontend import load_location
from keysync.pipeline.dub import KeySyncPipeline

from .faces_media_clips import astronaut, moving_frames, tone
from .micro import micro_model

GOLDEN = Path(__file__).parent / "data" / "default_dub.npz"
FACE = Path(__file__).parent / "data" / "default_dub_face.npz"


def test_default_dub_equals_the_recorded_one_to_float_rounding():
    golden = np.load(GOLDEN)
    top, bottom, left, right = golden["box"]
    frames = np.stack(list(moving_frames(astronaut(), 192, 144, 30, photo_height=130)))
    out = KeySyncPipeline(micro_model(audio_window=1))(frames, tone(1.2), fps=25, progress=False, face=load_location(FACE))
    dubbed = np.stack(list(out.frames))
    assert dubbed.shape == frames.shape
    outside = np.ones(frames.shape[1:3], bool)
    outside[top:bottom, left:right] = False
    assert np.array_equal(dubbed[:, outside], frames[:, outside])  # nothing outside the recorded region moved
    diff = np.abs(dubbed[:, top:bottom, left:right].astype(int) - golden["region"].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() <= 0.01, (diff.max(), (diff > 0).mean())
