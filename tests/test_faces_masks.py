"""Mask geometry, latent downsampling, crop transforms and paste-back, on hand-placed landmarks."""

import numpy as np
import pytest

from keysync.faces.crops import CropBox, cut_crop
from keysync.faces.masks import build_mask, build_masks, latent_mask
from keysync.faces.paste import feather, frame_weights, match_colors, paste_back


def _landmarks():
    rng = np.random.default_rng(0)
    lm = np.column_stack([rng.uniform(140, 380, 68), rng.uniform(150, 460, 68)])
    lm[0, 0], lm[16, 0] = 120.5, 390.2  # x-extent
    lm[28] = [256, 230.4]  # mask top
    lm[29], lm[33] = [256, 250], [256, 290]
    lm[31], lm[35], lm[2] = [230, 285], [282, 285], [130, 300]
    return lm


def test_box_mask_is_the_papers_rectangle():
    lm = _landmarks()
    mask = build_mask("box", lm, 512)
    rows, cols = np.nonzero(mask)
    assert rows.min() == 231 and rows.max() == 511  # from point 28 to the bottom edge
    assert cols.min() == 121 and cols.max() == 390  # across the landmarks' x-extent
    assert mask.sum() == (511 - 231 + 1) * (390 - 121 + 1)  # a filled rectangle
    assert set(np.unique(mask)) == {0.0, 1.0}


def test_heart_mouth_and_full_masks():
    lm = _landmarks()
    heart = build_mask("heart", lm, 512)
    assert heart[260, 256] == 0 and heart[260, 150] == 1  # the nose is kept, the cheek regenerated
    assert heart[249, 256] == 0 and heart[300, 256] == 1
    full = build_mask("full", lm, 512)
    assert full[231:].all() and not full[:231].any()
    mouth = build_mask("mouth", lm, 512)
    e = 0.01 * 512
    rows, cols = np.nonzero(mouth)
    assert rows.min() == int(np.ceil(230.4 - e)) and rows.max() == int(np.floor(lm[:, 1].max() + e))
    assert mouth.sum() < build_mask("box", lm, 512).sum()
    with pytest.raises(ValueError):
        build_mask("oval", lm, 512)


def test_occluder_is_removed_and_latent_mask_is_nearest():
    lm = _landmarks()
    occluder = np.zeros((512, 512), np.float32)
    occluder[400:, 200:300] = 1
    mask = build_mask("box", lm, 512, occluder=occluder)
    assert not mask[400:, 200:300].any() and mask[300, 250] == 1
    latent = latent_mask(build_masks("box", lm[None].repeat(3, 0), 512))
    assert latent.shape == (3, 64, 64)
    expected = build_mask("box", lm, 512)[::8, ::8]
    assert np.array_equal(latent[0], expected) and expected.any()
    assert set(np.unique(latent)) == {0.0, 1.0}
    assert latent_mask(np.ones((128, 128)), 8).shape == (16, 16)


@pytest.mark.parametrize("angle", [0.0, 0.3])
def test_crop_box_maps_points_both_ways_and_matches_the_pixels(angle):
    box = CropBox(cx=130.0, cy=185.0, side=300.0, angle=angle, size=128)
    pts = np.array([[0.0, 40.0], [100.5, 200.25], [279.0, 334.0]])
    assert np.allclose(box.to_frame(box.to_crop(pts)), pts)
    assert np.allclose(box.to_crop([130.0, 185.0]), [63.5, 63.5])  # centre to centre
    # a bright block lands where to_crop says
    frame = np.zeros((400, 400, 3), np.uint8)
    frame[145:155, 165:175] = 255
    crop = cut_crop(frame, box).astype(float)[..., 0]
    ys, xs = np.nonzero(crop > 0.5 * crop.max())
    assert np.allclose(box.to_crop([169.5, 149.5]), [xs.mean(), ys.mean()], atol=0.7)


def test_paste_back_touches_only_the_feathered_region_and_unmodified_crop_roundtrips():
    rng = np.random.default_rng(1)
    frame = (rng.uniform(0, 1, (360, 640, 1)) * np.linspace(40, 220, 640)[None, :, None]).astype(np.uint8).repeat(3, 2)
    frame = np.ascontiguousarray(np.clip(frame.astype(int) + 20, 0, 255).astype(np.uint8))
    box = CropBox(cx=600.0, cy=220.0, side=256.0, angle=0.2, size=512)  # reaches past the right edge
    mask = np.zeros((512, 512), np.float32)
    mask[300:, 100:400] = 1
    changed = paste_back(frame, np.full((512, 512, 3), 255, np.uint8), box, mask)
    rows, cols, alpha = frame_weights(frame.shape, box, mask)
    weights = np.zeros(frame.shape[:2], np.float32)
    weights[rows, cols] = alpha
    assert weights[:, -1].any()  # the pasted region is clipped at the frame edge, not skipped
    diff = np.any(changed != frame, axis=2)
    assert diff.any() and not diff[weights == 0].any()  # outside the feather: the input, bit for bit
    assert (changed[weights >= 0.999] == 255).all()
    same = paste_back(frame, cut_crop(frame, box), box, mask)
    assert np.array_equal(same[weights == 0], frame[weights == 0])


def test_feather_and_colour_matching():
    mask = np.zeros((128, 128), np.float32)
    mask[64:, 32:96] = 1
    alpha = feather(mask, dilate=0.05, blur=0.03)
    assert alpha[100, 64] == 1 and alpha[0, 0] == 0 and 0 < alpha[60, 64] < 1
    assert not alpha[-1].any()  # fades out before the crop's bottom edge, where the box mask ends
    original = np.full((128, 128, 3), 120, np.uint8)
    generated = np.full((128, 128, 3), 140, np.uint8)
    fixed = match_colors(generated, original, mask, alpha)
    assert np.abs(fixed.astype(int) - 120).max() <= 1


def test_upscaled_paste_is_sharper_than_bilinear():
    """A small model crop pasted onto a large face is upsampled bicubically: the crop-and-paste round trip
    keeps more of the frame than bilinear upsampling would."""
    import cv2

    rng = np.random.default_rng(3)
    frame = cv2.GaussianBlur(rng.uniform(0, 255, (300, 300, 3)).astype(np.float32), (0, 0), 4)
    frame = np.clip((frame - frame.mean()) * 8 + 128, 0, 255).astype(np.uint8)
    box = CropBox(cx=150.0, cy=150.0, side=256.0, angle=0.1, size=64)  # x4 upsampling on the way back
    crop = cut_crop(frame, box)
    mask = np.ones((64, 64), np.float32)
    pasted = paste_back(frame, crop, box, mask).astype(float)
    rows, cols, alpha = frame_weights(frame.shape, box, mask)
    inside = np.zeros(frame.shape[:2], bool)
    inside[rows, cols] = alpha >= 0.999
    bilinear = cv2.warpAffine(crop, cv2.invertAffineTransform(box.matrix), (300, 300), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(float)
    error, error_bilinear = np.abs(pasted - frame)[inside].mean(), np.abs(bilinear - frame)[inside].mean()
    assert error < 0.95 * error_bilinear, (error, error_bilinear)


def _talking_head(frames: int, jaw: np.ndarray, shift: np.ndarray, zoom: np.ndarray) -> np.ndarray:
    """(frames, 68, 2) pixel landmarks of a synthetic face whose jaw opens by ``jaw`` while the whole head
    moves by ``shift`` pixels and scales by ``zoom``."""
    from keysync.synth.render import Identity, Pose, face_points

    ident = Identity.sample(np.random.default_rng(3))
    pose = Pose(0.5, 0.5, 1.0, 0.0, 0.0, 1.0, 0.0)
    return np.stack(
        [face_points(ident, np.array([jaw[t], 0.5, 0.0, 0.0, 0.0]), pose)[:, :2] * 120 * zoom[t] + [320, 240] + shift[t] for t in range(frames)]
    )


def test_crops_follow_the_head_but_not_the_jaw():
    """The crop is placed from the nose and eye corners: a jaw that opens and closes leaves it still, so the
    visible upper face in the crop does not tell the network how the source mouth moves; a moving head
    carries it along; and its framing is still scale x the landmarks' box, centred on it."""
    from keysync.faces.crops import SKULL_POINTS, plan_crops
    from keysync.faces.tracking import TargetFace

    n = 50
    t = np.arange(n) / 25.0
    jaw = 0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t)  # slow: smoothing alone would not remove it
    still, one = np.zeros((n, 2)), np.ones(n)

    def crops(landmarks, smooth=0.2, follow="head"):
        target = TargetFace(landmarks, np.ones(n, bool), np.zeros(n, int), [0])
        return plan_crops(target, t, size=128, smooth_seconds=smooth, follow=follow)

    talking = _talking_head(n, jaw, still, one)
    boxes = crops(talking)
    geometry = np.array([[b.cx, b.cy, b.side] for b in boxes])
    assert np.ptp(geometry, axis=0).max() < 1e-6, np.ptp(geometry, axis=0)
    # the plan the small model shipped so far was trained on: each frame's box, moving with the jaw
    framed = np.array([b.cy for b in crops(talking, follow="landmarks")])
    assert np.ptp(framed) > 5 and np.corrcoef(framed, jaw)[0, 1] > 0.5
    # the framing is the landmarks' box's, scale x its larger side centred on it, at the run's median jaw
    middle = _talking_head(1, [np.median(jaw)], still, one)[0]
    lo, hi = middle.min(axis=0), middle.max(axis=0)
    assert np.allclose(geometry[0], [*(lo + hi) / 2, 1.8 * (hi - lo).max()])
    # a moving, zooming head: the nose and eye corners stay put in the crop (no smoothing: exactly)
    moving = _talking_head(n, jaw, np.column_stack([30 * np.sin(t), 10 * t]), 1 + 0.2 * t)
    in_crop = np.array([b.to_crop(lm[SKULL_POINTS]) for b, lm in zip(crops(moving, smooth=0), moving)])
    assert np.abs(in_crop - in_crop[0]).max() < 1e-6


def test_a_turning_head_stays_inside_its_crop():
    """Turning away narrows the face but not its height: the crop, framed on the run's median face, must
    still hold every landmark of the turned frames (the skull points' spread is measured per axis)."""
    from keysync.faces.crops import plan_crops
    from keysync.faces.tracking import TargetFace

    n = 50
    t = np.arange(n) / 25.0
    faces = _talking_head(n, 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t), np.zeros((n, 2)), np.ones(n))
    middle_x = faces[:, :, :1].mean(axis=1, keepdims=True)
    narrowing = np.linspace(1.0, 0.3, n)[:, None, None]  # as if turning to about 70 degrees
    faces[:, :, :1] = middle_x + (faces[:, :, :1] - middle_x) * narrowing
    boxes = plan_crops(TargetFace(faces, np.ones(n, bool), np.zeros(n, int), [0]), t, size=128)
    height = np.median(np.ptp(faces[:, :, 1], axis=1))  # the face's, at its median jaw
    for box, lm in zip(boxes, faces):
        assert box.side >= 1.8 * height - 1e-6  # turned or not: the face is as tall
        inside = box.to_crop(lm)
        assert inside.min() > 0.1 * 128 and inside.max() < 0.9 * 128, (inside.min(), inside.max())


def _face(open_jaw: float, shift=(0.0, 0.0)) -> np.ndarray:
    """A frontal face (68 iBUG points; nose bridge 27 to chin 8: 105 px) with the jaw dropped by ``open_jaw`` px."""
    theta = np.linspace(0, np.pi, 17)
    lm = np.zeros((68, 2))
    lm[0:17] = np.column_stack([-60 * np.cos(theta), 80 * np.sin(theta)])
    lm[0:17, 1] += open_jaw * np.sin(theta) ** 2  # the chin drops most, the ends of the jaw not at all
    lm[17:27] = np.column_stack([np.linspace(-45, 45, 10), np.full(10, -45.0)])
    lm[27:31] = np.column_stack([np.zeros(4), [-25, -15, -5, 5]])
    lm[31:36] = np.column_stack([np.linspace(-10, 10, 5), np.full(5, 15.0)])
    for eye, cx in ((slice(36, 42), -25), (slice(42, 48), 25)):
        a = np.linspace(0, 2 * np.pi, 7)[:-1]
        lm[eye] = np.column_stack([cx + 8 * np.cos(a), -25 + 3 * np.sin(a)])
    a = np.linspace(0, 2 * np.pi, 21)[:-1]
    lm[48:68] = np.column_stack([18 * np.cos(a), 42 + (4 + open_jaw / 2) * np.sin(a)])
    return lm + np.array([256.0, 220.0]) + np.asarray(shift)


def test_the_paste_line_follows_the_head_and_not_the_jaw():
    from keysync.faces.paste import JAW_MARGIN, jaw_limits
    from keysync.faces.tracking import TargetFace

    openings = [0, 12, 3, 20, 0, 7]
    shifts = [(0, 0), (4, -2), (9, 1), (2, 6), (-5, 3), (0, 0)]
    landmarks = np.stack([_face(o, s) for o, s in zip(openings, shifts)])
    present = np.ones(6, bool)
    limits = jaw_limits(TargetFace(landmarks, present, np.zeros(6, int), [0]))
    for limit, shift in zip(limits, shifts):  # the same line, carried by the head
        np.testing.assert_allclose(limit - np.asarray(shift), limits[0], atol=1e-9)
    face_height = np.median(80 + np.array(openings) - (-25))  # nose bridge 27 to chin 8
    chin_below = limits[0][8, 1] - (landmarks[:, 8, 1] - np.array(shifts)[:, 1])
    assert chin_below.min() == pytest.approx(JAW_MARGIN * face_height, rel=1e-6)  # below the widest opening
    # a new run after a cut, with the jaw closed throughout, gets its own, higher line
    cut = TargetFace(landmarks, present, np.zeros(6, int), [0, 4])
    after = jaw_limits(cut)
    assert after[4][8, 1] < limits[4][8, 1] - 10
    absent = jaw_limits(TargetFace(landmarks, np.array([1, 1, 0, 1, 1, 1], bool), np.zeros(6, int), [0]))
    assert absent[2] is None and absent[0] is not None


def test_above_line_keeps_what_lies_above_the_jaw_line():
    from keysync.faces.paste import above_line

    line = np.column_stack([np.linspace(10, 54, 17), 40 + 10 * np.sin(np.linspace(0, np.pi, 17))])
    region = above_line(line, 64)
    assert region[0, 32] == 1 and region[45, 32] == 1 and region[55, 32] == 0  # under the middle: 50
    assert region[38, 12] == 1 and region[45, 12] == 0  # near the ends the line is higher
    assert region[20, 5] == 0 and region[20, 60] == 0  # nothing beside the line
    mask = build_mask("box", _face(0) / 8, 64)
    assert (mask * region).sum() < mask.sum()
