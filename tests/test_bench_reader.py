"""The shipped mouth reader: small fp16 weights that read mouths of identities it never saw."""

import numpy as np

from keysync.bench.mouth_reader import WEIGHTS, LoadedReader, crop_transforms, mouth_crops
from keysync.bench.train_reader import random_mouths
from keysync.synth.render import FaceRenderer, Identity, Motion, Scene


def test_weights_ship_small_in_fp16_with_calibration():
    from safetensors.torch import load_file

    assert WEIGHTS.is_file() and WEIGHTS.stat().st_size < 2_000_000
    tensors = load_file(str(WEIGHTS))
    assert {str(t.dtype) for t in tensors.values() if t.is_floating_point()} == {"torch.float16"}
    reader = LoadedReader()
    assert 0.1 <= reader.metadata["speaking_threshold"] < 0.3
    assert "--seed" in reader.metadata["command"]


def test_crop_ignores_the_mouth_and_follows_the_head():
    rng = np.random.default_rng(0)
    ident, scene = Identity.sample(rng), Scene.sample(rng)
    pose = Motion(1).poses(1, 25)[0]
    r = FaceRenderer(ident, scene, 128, 128)
    _, closed, _ = r.render(pose, np.array([0.03, 0.45, 0.15, 0, 0]))
    _, opened, _ = r.render(pose, np.array([0.9, 0.6, 0.1, 0.5, 0.2]))
    assert np.allclose(crop_transforms(closed[None]), crop_transforms(opened[None]))
    # the mouth centre lands near the middle of the crop
    m = crop_transforms(closed[None])[0]
    centre = m[:, :2] @ closed[48:68].mean(0) + m[:, 2]
    assert np.abs(centre - 32).max() < 12


def test_reader_reads_held_out_identities():
    rng = np.random.default_rng(12345)  # not the training streams
    frames, landmarks, truth = [], [], []
    for _ in range(6):
        ident, scene = Identity.sample(rng), Scene.sample(rng)
        r = FaceRenderer(ident, scene, 192, 192)
        poses = Motion(int(rng.integers(1000))).poses(100, 25)
        for mouth in random_mouths(rng, 8):
            f, lm, _ = r.render(poses[int(rng.integers(100))], mouth)
            frames.append(f)
            landmarks.append(lm)
            truth.append(mouth)
    read = LoadedReader().read(np.stack(frames), np.stack(landmarks))
    truth = np.stack(truth)
    assert read.shape == truth.shape
    jaw_error = np.abs(read[:, 0] - truth[:, 0]).mean()
    assert jaw_error < 0.08, jaw_error
    assert np.corrcoef(read[:, 0], truth[:, 0])[0, 1] > 0.95
    assert np.abs(read - truth).mean() < 0.15
    assert mouth_crops(np.stack(frames[:2]), np.stack(landmarks[:2])).shape == (2, 64, 64, 3)
