"""SyncNet's LSE-C / LSE-D / offset against the golden tensors recorded from the reference evaluation
(joonson/syncnet_python at 6efbb1c, seeded random weights; shared/fixtures/syncnet-reference/README.md).

Bounds (absolute), with what was measured here (oneDNN convolutions on AVX2; the same with
ATEN_CPU_CAPABILITY=avx2 or default and OMP_NUM_THREADS=1 or 2, since oneDNN picks its own kernels):

- offset and arg-min exact: the two smallest mean distances are 0.019 apart, 10^3 times the errors below;
- LSE-D, LSE-C 1e-4 (the issue's bound): measured 0 and 1e-6 (1.9e-6 with the scalar kernels);
- MFCC 1e-6 (python_speech_features, float64): measured 3e-14;
- embeddings, per-offset distances, mean distances, framewise confidence 1e-4 (the README's bound):
  measured 2.5e-5, 3.9e-5, 4.8e-6 and 2.6e-5;
- CNN features 3e-4, not the README's 1e-4: the lip CNN multiplies integer weights up to 127 with raw
  pixels, so its first convolution sums to 1e5 before BatchNorm scales it back to ~1, and float32 rounds
  that sum differently per kernel: measured 8.6e-5 here (the reference's own batch-of-1 rerun, 2.4e-5), so
  1e-4 would leave 14 % of room on another CPU. Real mistakes are far above 3e-4: feeding RGB for BGR moves
  these features by 8.4, adding one grey level to every pixel (what a JPEG round trip does) by 0.37.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from keysync.errors import KeySyncError
from keysync.eval.syncnet import (
    embed_audio,
    embed_video,
    load_syncnet,
    offset_distances,
    score_sync,
    scores_from_distances,
    syncnet_mfcc,
    window_count,
)

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "syncnet-reference"
CASES = ("insync", "audio_lead5")
ATOL = 1e-4  # scores, embeddings, distances (see the module docstring)
CNN_ATOL = 3e-4

pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"golden fixtures not found at {FIXTURES}")


def _load(name: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(FIXTURES / name)


def _close(ours, theirs, what: str, atol: float = ATOL) -> None:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
    error = np.abs(ours - theirs).max()
    assert error <= atol, f"{what}: max error {error:.3g} > {atol:.3g}"


@pytest.fixture(scope="module")
def net():
    return load_syncnet(FIXTURES / "weights.safetensors")


@pytest.fixture(scope="module")
def frames():
    return _load("frames.safetensors")["frames_bgr"]


@pytest.fixture(scope="module")
def runs(net, frames):
    """Each case through our pipeline once, with the CNN outputs caught by hooks. Both cases share the
    frames, so the video side runs once (70 windows of 5 x 224 x 224: the costly part)."""
    caught: dict[str, list[torch.Tensor]] = {"lip": [], "aud": []}
    hooks = [
        net.netcnnlip.register_forward_hook(lambda m, i, o: caught["lip"].append(o.flatten(1))),
        net.netcnnaud.register_forward_hook(lambda m, i, o: caught["aud"].append(o.flatten(1))),
    ]
    try:
        count = window_count(len(frames), 48000)
        video = embed_video(net, frames, count)
        out = {}
        for case in CASES:
            golden = _load(f"case_{case}.safetensors")
            mfcc = syncnet_mfcc(golden["audio"])
            caught["aud"].clear()
            audio = embed_audio(net, mfcc, window_count(len(frames), len(golden["audio"])))
            dists = offset_distances(video, audio)
            out[case] = dict(golden=golden, mfcc=mfcc, video=video, audio=audio, scores=scores_from_distances(dists),
                             lip_cnn=torch.cat(caught["lip"]), aud_cnn=torch.cat(caught["aud"]))
        return out
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.parametrize("case", CASES)
def test_scores_match_the_reference(runs, case):
    run, golden = runs[case], runs[case]["golden"]
    scores = run["scores"]
    assert scores.offset == int(golden["offset"])
    assert int(np.argmin(scores.mean_dists)) == int(golden["minidx"])
    assert abs(scores.min_dist - float(golden["minval"])) <= ATOL
    assert abs(scores.confidence - float(golden["conf"])) <= ATOL


@pytest.mark.parametrize("case", CASES)
def test_every_intermediate_matches_the_reference(runs, case):
    run, golden = runs[case], runs[case]["golden"]
    np.testing.assert_allclose(run["mfcc"], golden["mfcc"], rtol=0, atol=1e-6)
    _close(run["lip_cnn"], golden["lip_cnn_feat"], "lip CNN features", CNN_ATOL)
    _close(run["aud_cnn"], golden["aud_cnn_feat"], "audio CNN features", CNN_ATOL)
    _close(run["video"], golden["im_feat"], "video embeddings")
    _close(run["audio"], golden["cc_feat"], "audio embeddings")
    scores = run["scores"]
    _close(scores.dists, golden["dists"], "per-offset distances")
    _close(scores.mean_dists, golden["mdist"], "mean distances")
    _close(scores.framewise_confidence, golden["fconfm"], "framewise confidence")


def test_advancing_the_audio_moves_the_offset_by_as_many_frames(runs):
    """The reference's sign convention: audio leading the video by 5 frames adds 5 to the offset."""
    assert runs["audio_lead5"]["scores"].offset - runs["insync"]["scores"].offset == 5


def test_score_sync_takes_rgb_and_float_audio(net, frames, runs):
    """The public entry point on 20 frames: RGB faces are flipped to the reference's BGR and float audio is
    scaled back to int16. Windows 0..14 depend only on frames 0..18, so their embeddings are the golden
    ones, and the distances follow from them; BGR passed as RGB would not match."""
    golden = runs["insync"]["golden"]
    audio = golden["audio"][: 20 * 640].astype(np.float32) / 32768
    scores = score_sync(net, frames[:20, :, :, ::-1], audio)
    video, sound = (torch.from_numpy(golden[k][:15]) for k in ("im_feat", "cc_feat"))
    _close(scores.dists, offset_distances(video, sound).numpy(), "distances of 15 windows")
    assert scores.dists.shape == (15, 31)


def test_too_short_a_clip_is_one_line():
    with pytest.raises(KeySyncError, match="too short for SyncNet"):
        window_count(5, 48000)
