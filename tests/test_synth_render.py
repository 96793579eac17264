"""The procedural face renderer: resolution independence, landmarks, anti-aliasing, occluders, variety."""

from dataclasses import replace

import numpy as np

from keysync.synth.render import FaceRenderer, Identity, Motion, Occluder, Pose, Scene
from keysync.synth.visemes import REST

POSE = Pose(x=0.5, y=0.45, scale=1.0, roll=5.0, yaw=8.0, eye_open=1.0, brow_raise=0.0)
OPEN = np.array([0.8, 0.6, 0.1, 0.5, 0.3], np.float32)


def _world(seed=0):
    rng = np.random.default_rng(seed)
    ident = Identity.sample(rng)
    return ident, Scene.sample(rng), rng


def test_any_resolution_gives_the_same_picture():
    ident, scene, _ = _world()
    small, lm_small, _ = FaceRenderer(ident, scene, 64, 64).render(POSE, OPEN)
    large, lm_large, _ = FaceRenderer(ident, scene, 128, 128).render(POSE, OPEN)
    assert small.shape == (64, 64, 3) and large.shape == (128, 128, 3)
    # landmarks scale with the frame (pixel centres: x_large + 0.5 = 2 (x_small + 0.5))
    assert np.abs((lm_large + 0.5) - 2 * (lm_small + 0.5)).max() < 1e-3
    halved = large.reshape(64, 2, 64, 2, 3).mean(axis=(1, 3))
    assert np.abs(halved - small.astype(float)).mean() < 3.0
    wide, lm_wide, _ = FaceRenderer(ident, scene, 96, 64).render(POSE, OPEN)
    assert wide.shape == (64, 96, 3) and lm_wide[:, 0].max() < 96


def test_landmarks_follow_the_ibug_layout_and_the_mouth():
    ident, scene, _ = _world(1)
    r = FaceRenderer(ident, scene, 128, 128)
    _, closed, _ = r.render(POSE, REST)
    _, opened, _ = r.render(POSE, OPEN)
    for lm in (closed, opened):
        assert lm.shape == (68, 2)
        assert lm[0, 0] < lm[8, 0] < lm[16, 0]  # jaw from the subject's right to left, chin in the middle
        assert lm[8, 1] > lm[57, 1] > lm[51, 1] > lm[33, 1] > lm[27, 1] > lm[19, 1]  # chin, lips, nose, brow
        assert lm[36, 0] < lm[39, 0] < lm[42, 0] < lm[45, 0]  # eye corners left to right
        assert lm[17, 0] < lm[21, 0] < lm[22, 0] < lm[26, 0]  # brows: outer, inner, inner, outer
        assert lm[48, 0] < lm[62, 0] < lm[54, 0]
    gap = lambda lm: np.linalg.norm(lm[66] - lm[62])  # noqa: E731
    assert gap(opened) > gap(closed) + 5
    assert opened[8, 1] > closed[8, 1]  # the chin drops as the jaw opens; the upper face does not move
    assert np.abs(opened[17:48] - closed[17:48]).max() < 1e-4


def test_edges_are_anti_aliased():
    ident, scene, _ = _world(2)
    scene.blobs = []
    scene.light_strength = 0.0
    frame, lm, _ = FaceRenderer(ident, scene, 128, 128).render(POSE, REST)
    # along a row through the cheeks, the face edge passes through intermediate colours
    row = frame[int(lm[2, 1])].astype(float)
    steps = np.abs(np.diff(row, axis=0)).sum(1)
    assert steps.max() < 0.9 * np.abs(row.max(0) - row.min(0)).sum()


def test_occluder_mask_is_exact_ground_truth():
    ident, scene, rng = _world(3)
    occluder = Occluder.sample(rng, 2.0, ident.skin)
    occluder.start, occluder.end = 0.0, 2.0
    r = FaceRenderer(ident, scene, 96, 96)
    with_occ, _, mask = r.render(POSE, OPEN, occluder, 1.0)
    without, _, empty = r.render(POSE, OPEN, None, 1.0)
    assert empty.sum() == 0
    assert 20 < mask.sum() < 96 * 96 * 0.6
    changed = np.abs(with_occ.astype(int) - without.astype(int)).sum(-1) > 0
    assert (changed & ~mask.astype(bool)).sum() < 0.5 * mask.sum()  # only anti-aliased rims outside the mask
    assert changed[mask.astype(bool)].mean() > 0.9
    _, _, away = r.render(POSE, OPEN, occluder, 5.0)  # after it has left
    assert away.sum() == 0


def test_identities_and_motion_vary_but_are_reproducible():
    a, sa, _ = _world(10)
    b, sb, _ = _world(11)
    fa = FaceRenderer(a, sa, 64, 64).render(POSE, REST)[0]
    fb = FaceRenderer(b, sb, 64, 64).render(POSE, REST)[0]
    assert np.abs(fa.astype(int) - fb.astype(int)).mean() > 10
    assert np.array_equal(fa, FaceRenderer(*_world(10)[:2], 64, 64).render(POSE, REST)[0])
    poses = Motion(4).poses(200, 25)
    assert poses == Motion(4).poses(200, 25)
    xs = np.array([p.x for p in poses])
    eyes = np.array([p.eye_open for p in poses])
    assert xs.std() > 0.002 and np.abs(np.diff(xs)).max() < 0.01  # moves, smoothly
    assert eyes.min() < 0.2 and (eyes > 0.99).mean() > 0.8  # blinks, mostly open


def test_jaw_drop_moves_the_chin_further_and_nothing_else():
    ident, scene, _ = _world(2)
    travel = {}
    for drop in (0.22, 0.66):
        r = FaceRenderer(replace(ident, jaw_drop=drop), scene, 128, 128)
        _, closed, _ = r.render(POSE, REST)
        _, opened, _ = r.render(POSE, OPEN)
        travel[drop] = opened[8, 1] - closed[8, 1]  # the chin's fall
        assert np.abs(opened[17:48] - closed[17:48]).max() < 1e-4  # brows, nose and eyes stay put
    assert travel[0.22] > 0.5 and 2.5 < travel[0.66] / travel[0.22] < 3.5
