"""Gray footage stays gray through paste-back and ``keysync dub`` (issue 39); colour footage is unchanged."""

import cv2
import numpy as np
import pytest

from keysync.faces.crops import CropBox, cut_crop
from keysync.faces.paste import LUMA, _to_region, _weights_in_region, feather, frame_weights, is_gray, match_colors, paste_back
from keysync.media.video import read_frames
from keysync.pipeline.dub import DubOptions, KeySyncPipeline

from .faces_media_clips import astronaut, moving_frames, tone, write_clip, write_wav
from .micro import micro_model

BOX = CropBox(cx=250.0, cy=140.0, side=200.0, angle=0.15, size=128)


def _old_paste_back(frame, crop, box, mask, dilate=0.02, blur=0.02, color_match=False):
    """``paste_back`` as it was before issue 39: the reference colour frames must still match bit for bit."""
    alpha = feather(mask, dilate, blur)
    if color_match:
        crop = match_colors(crop, cut_crop(frame, box), mask, alpha)
    out = frame.copy()
    rows, cols = box.frame_bounds(*frame.shape[:2])
    weights = _weights_in_region(alpha, box, rows, cols)
    back = _to_region(crop, box, rows, cols, cv2.BORDER_REPLICATE).astype(np.float32)
    a = weights[..., None]
    roi = out[rows, cols]
    blended = roi.astype(np.float32) + a * (back - roi)
    out[rows, cols] = np.where(a > 0, np.clip(np.rint(blended), 0, 255), roi).astype(np.uint8)
    return out


def _gray(image):
    return np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)


def _mask():
    mask = np.zeros((128, 128), np.float32)
    mask[64:, 24:104] = 1
    return mask


def _spread(image):
    return image.max(axis=-1).astype(int) - image.min(axis=-1)


@pytest.mark.parametrize("color_match", [False, True])
def test_a_coloured_patch_pasted_on_a_gray_frame_stays_gray(color_match):
    photo = astronaut()
    frame = _gray(photo)
    rng = np.random.default_rng(0)
    generated = np.clip(cut_crop(photo, BOX).astype(int) + rng.integers(-60, 60, (128, 128, 3)), 0, 255).astype(np.uint8)
    out = paste_back(frame, generated, BOX, _mask(), color_match=color_match)
    assert _spread(out).max() == 0  # R == G == B everywhere
    rows, cols, alpha = frame_weights(frame.shape, BOX, _mask())
    weights = np.zeros(frame.shape[:2], np.float32)
    weights[rows, cols] = alpha
    assert np.array_equal(out[weights == 0], frame[weights == 0])
    # what is pasted is the generated pixels' BT.601 luma, i.e. what the colour paste would have encoded as Y
    old = _old_paste_back(frame, generated, BOX, _mask(), color_match=color_match).astype(np.float32)
    inside = weights >= 0.999
    assert np.abs(out[..., 0][inside] - (old @ LUMA)[inside]).max() <= 1
    assert np.abs(out[..., 0][inside].astype(int) - frame[..., 0][inside]).mean() > 10  # and it was pasted


def test_colour_and_sepia_frames_are_pasted_exactly_as_before():
    photo = astronaut()
    gray = _gray(photo).astype(np.float32)
    sepia = np.clip(gray * [1.07, 0.74, 0.43] + [20, 20, 20], 0, 255).astype(np.uint8)
    faded = np.clip(gray + 0.25 * (photo - gray), 0, 255).astype(np.uint8)  # 25 % saturation
    generated = cut_crop(photo[:, ::-1].copy(), BOX)  # some other coloured face
    for frame in (photo, sepia, faded):
        assert not is_gray(frame)
        for color_match in (False, True):
            new = paste_back(frame, generated, BOX, _mask(), color_match=color_match)
            assert np.array_equal(new, _old_paste_back(frame, generated, BOX, _mask(), color_match=color_match))


def test_gray_with_decoder_noise_still_counts_as_gray():
    rng = np.random.default_rng(1)
    frame = _gray(astronaut()).astype(int) + rng.integers(-2, 3, (512, 512, 3))  # spread <= 4
    frame[rng.random((512, 512)) < 0.005] = [200, 40, 90]  # a few stray coloured pixels
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    assert is_gray(frame) and is_gray(np.zeros((0, 3), np.uint8))
    out = paste_back(frame, np.full((128, 128, 3), [250, 0, 250], np.uint8), BOX, _mask())
    rows, cols, alpha = frame_weights(frame.shape, BOX, _mask())
    assert _spread(out[rows, cols][alpha >= 0.999]).max() == 0


def test_dubbing_a_gray_video_gives_a_gray_video(tmp_path):
    """End to end: a random-weight model paints coloured noise on the face; the output must still be gray
    after H.264 (4:2:0) encoding and decoding, allowing a few levels for chroma rounding."""
    frames = [_gray(f) for f in moving_frames(astronaut(), 256, 256, 10, photo_height=240)]
    video = write_clip(tmp_path / "gray.mp4", frames)
    assert all(_spread(f.image).max() == 0 for f in read_frames(video))  # the codec alone keeps gray gray
    audio = write_wav(tmp_path / "speech.mp4", tone(0.4))
    out = KeySyncPipeline(micro_model(audio_window=1)).dub_file(video, audio, tmp_path / "out.mp4", DubOptions(progress=False))
    dubbed = [f.image for f in read_frames(out)]
    assert len(dubbed) == 10
    coloured = [int((_spread(image) > 4).sum()) for image in dubbed]
    assert max(coloured) <= 10, coloured
    changed = [int((np.abs(a.astype(int) - b).max(axis=2) > 8).sum()) for a, b in zip(dubbed, frames)]
    assert min(changed) > 100, changed  # the face really was regenerated and pasted
