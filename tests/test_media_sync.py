"""30 fps and variable-frame-rate input through decode -> track -> crop -> paste -> encode: the output keeps
every frame and timestamp, and sound stays within one frame of the picture."""

import numpy as np
import pytest

from keysync.faces.backends import MediaPipeBackend
from keysync.faces.crops import plan_crops
from keysync.faces.render import render_through_crops
from keysync.faces.tracking import select_target, track_faces
from keysync.media import load_audio, read_frames

from .faces_media_clips import astronaut, clicks, moving_frames, write_clip
from .test_media_audio import _onsets

FLASHES = [9, 31, 50]  # frames with a white corner block and a click on the soundtrack


def _times(kind):
    if kind == "30fps":
        return np.arange(60) / 30.0
    steps = np.tile([1 / 30, 1 / 20, 1 / 45, 1 / 24], 15)  # irregular, as phones record
    steps[25] = 0.2  # and a stall
    return np.concatenate([[0.0], np.cumsum(steps)[:59]])


def _flash_frames(frames):
    return [f.index for f in frames if f.image[:32, :32].mean() > 200]


@pytest.mark.parametrize("kind", ["30fps", "vfr"])
def test_frames_timestamps_and_audio_sync_survive_the_round_trip(tmp_path, kind):
    times = _times(kind)
    frames = list(moving_frames(astronaut(), 640, 360, len(times), 300, amplitude=20))
    for i in FLASHES:
        frames[i][:48, :48] = 255
    rate = 44100
    audio = clicks(float(times[-1]) + 0.1, [float(times[i]) for i in FLASHES], rate=rate)
    source = write_clip(tmp_path / f"{kind}.mp4", frames, times=list(times), rate=30, audio=audio, audio_rate=rate)

    result = track_faces(read_frames(source), MediaPipeBackend())
    target = select_target(result)
    assert target.present.all()
    out = render_through_crops(source, tmp_path / "out.mp4", target, plan_crops(target, result.times, size=256))

    before, after = list(read_frames(source)), list(read_frames(out))
    assert len(after) == len(before) == len(times)
    assert np.allclose([f.time for f in after], [f.time for f in before], atol=1e-6)
    assert np.allclose([f.time for f in after], times, atol=1e-4)
    assert _flash_frames(after) == FLASHES
    onsets = _onsets(load_audio(out), level=0.3)
    assert len(onsets) == len(FLASHES)
    frame_gap = np.min(np.diff(times))
    print("audio - picture offsets (ms):", np.round(1000 * (onsets - times[FLASHES]), 2))
    assert np.all(np.abs(onsets - times[FLASHES]) < frame_gap), (onsets, times[FLASHES])
