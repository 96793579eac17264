"""Decoding (rotation, pixel formats, odd sizes, variable frame rate), 25 fps planning and the writer."""

from fractions import Fraction

import av
import numpy as np
import pytest

from keysync.errors import KeySyncError
from keysync.media import VideoWriter, plan_model_frames, probe_video, read_frames


def _encode(path, frames, codec, pix_fmt, rate=25, rotation=None):
    """Write frames with a given codec and pixel format straight through PyAV (inputs our writer never makes)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for image in frames:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=pix_fmt)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _marked(h, w):
    """Grey frame with a bright block in its top-left corner, to check orientation."""
    image = np.full((h, w, 3), 60, np.uint8)
    image[: h // 4, : w // 4] = 230
    return image


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied(tmp_path, rotation):
    path = _encode(tmp_path / "rot.mp4", [_marked(48, 80)] * 3, "libx264", "yuv420p", rotation=rotation)
    expected = np.rot90(_marked(48, 80), k=rotation // 90)
    info = probe_video(path)
    assert (info.width, info.height) == (expected.shape[1], expected.shape[0])
    frames = list(read_frames(path))
    assert frames[0].image.shape == expected.shape
    assert np.abs(frames[0].image.astype(int) - expected).mean() < 6


@pytest.mark.parametrize(
    "codec,pix_fmt,size,suffix",
    [("ffv1", "gray", (21, 33), "mkv"), ("ffv1", "yuv420p10le", (48, 64), "mkv"), ("libx264", "yuv444p", (49, 65), "mp4")],
)
def test_any_pixel_format_and_odd_size_decodes_to_rgb(tmp_path, codec, pix_fmt, size, suffix):
    h, w = size
    images = [np.full((h, w, 3), 40 * (k + 1), np.uint8) for k in range(3)]
    path = _encode(tmp_path / f"in.{suffix}", images, codec, pix_fmt)
    frames = list(read_frames(path))
    assert [f.image.shape for f in frames] == [(h, w, 3)] * 3
    assert all(f.image.dtype == np.uint8 for f in frames)
    for f, image in zip(frames, images):
        assert abs(float(f.image.mean()) - float(image.mean())) < 3


def test_writer_keeps_variable_timestamps_odd_size_and_is_atomic(tmp_path):
    times = [0.0, 0.04, 0.1, 0.13, 0.2, 0.35, 0.4]
    out = tmp_path / "vfr.mp4"
    with VideoWriter(out, 65, 49, rate=20, time_base=Fraction(1, 90000)) as writer:
        for k, t in enumerate(times):
            writer.write(np.full((49, 65, 3), 30 * k, np.uint8), t)
            assert not out.exists()  # nothing at the final path until complete
    frames = list(read_frames(out))
    assert [round(f.time, 6) for f in frames] == times
    assert frames[0].image.shape == (49, 65, 3)
    assert [int(f.image.mean() + 0.5) // 30 for f in frames] == list(range(7))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vfr.mp4"]


def test_writer_leaves_nothing_on_failure_and_never_overwrites(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 32, 32) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"keep me")
    with pytest.raises(KeySyncError, match="already exists"):
        VideoWriter(out, 32, 32)
    assert out.read_bytes() == b"keep me"
    assert list(tmp_path.iterdir()) == [out]


def test_model_frames_for_30_fps_and_back():
    times = np.arange(60) / 30.0  # 2 s at 30 fps
    plan = plan_model_frames(times)
    assert plan.num_model_frames == 50
    # the frame on screen at each 25 fps tick
    assert np.all(times[plan.source_index] <= plan.times + 1e-9)
    assert np.all(plan.times - times[plan.source_index] < 1 / 30)
    # every source frame gets the nearest tick, and every tick is used
    assert len(plan.model_index) == 60
    assert np.all(np.abs(plan.times[plan.model_index] - times) <= 0.5 / 25 + 1e-9)
    assert set(plan.model_index) == set(range(50))


def test_model_frames_for_variable_rate():
    times = np.array([0.0, 0.02, 0.1, 0.13, 0.5, 0.52, 0.6])
    plan = plan_model_frames(times, duration=0.64)
    assert plan.num_model_frames == 16
    assert list(plan.source_index[:5]) == [0, 1, 1, 2, 3]
    assert list(plan.source_index[12:]) == [3, 5, 5, 6]  # 0.48 s still shows the frame from 0.13 s
    assert list(plan.model_index) == [0, 1, 3, 3, 13, 13, 15]  # halves round up


def test_auto_encoder_takes_nvenc_only_where_it_opens_and_never_for_lossless(monkeypatch):
    from keysync.media import writer

    monkeypatch.setattr(writer, "nvenc_opens", lambda: True)
    assert [writer.choose_encoder("auto", crf) for crf in (17, 0)] == ["h264_nvenc", "libx264"]
    assert writer.choose_encoder("h264_nvenc", 17) == "h264_nvenc"
    with pytest.raises(KeySyncError, match="lossless"):
        writer.choose_encoder("h264_nvenc", 0)
    monkeypatch.setattr(writer, "nvenc_opens", lambda: False)
    assert writer.choose_encoder("auto", 17) == "libx264"
    with pytest.raises(KeySyncError, match="h264_nvenc.*does not open"):
        writer.choose_encoder("h264_nvenc", 17)
    with pytest.raises(KeySyncError, match="choose one of auto, libx264, h264_nvenc"):
        writer.choose_encoder("x265", 17)


def test_the_chosen_encoder_writes_h264_that_decodes_to_the_frames(tmp_path):
    """Here x264 (or, on a machine with an NVIDIA GPU, its hardware encoder): the output decodes to what was written."""
    from keysync.media.writer import choose_encoder

    rng = np.random.default_rng(0)
    base = cv2_smooth(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    frames = [np.roll(base, 2 * k, axis=1) for k in range(12)]
    with VideoWriter(tmp_path / "o.mp4", 96, 64, rate=25, encoder="auto") as out:
        for image in frames:
            out.write(image)
    assert out.encoder == choose_encoder("auto", 17)
    with av.open(str(tmp_path / "o.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    back = [f.image for f in read_frames(tmp_path / "o.mp4")]
    assert len(back) == 12
    mse = np.mean([(a.astype(np.float64) - b) ** 2 for a, b in zip(frames, back)])
    assert 10 * np.log10(255**2 / mse) > 35


def cv2_smooth(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(image, (0, 0), 3)


def test_the_same_frames_and_sound_always_make_the_same_file(tmp_path):
    """x264 runs cpu-independent: without it, 10 encodes of this clip in one process made 9 different files
    (its SIMD macroblock-tree code), so two runs of one dub could differ in bytes."""
    import hashlib

    from .faces_media_clips import astronaut, moving_frames, tone

    frames = list(moving_frames(astronaut(), 160, 120, 16, photo_height=110, amplitude=10))
    made = set()
    for run in range(6):
        with VideoWriter(tmp_path / "out.mp4", 160, 120, rate=25, audio=tone(0.64), overwrite=True) as writer:
            for i, image in enumerate(frames):
                writer.write(image, i / 25)
        made.add(hashlib.sha256((tmp_path / "out.mp4").read_bytes()).hexdigest())
    assert len(made) == 1
